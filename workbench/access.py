"""Who may do what with a run: the access rules of house style §2.5, as plain functions.

- A run reads as "not found" to anyone but its owner unless the owner shared it; then anyone
  holding its id may read it (a share link). An empty session id reads nothing.
- Sharing grants reading only: stopping and sharing stay with the owner.
- A session's run list shows its own runs and every CLI bundle (CLI runs are shared).
- A session may hold ``max_active_per_session`` queued + running runs; a group over the
  limit is refused whole.

The registry applies these under its lock; they take plain values, so tests call them directly.
"""

from __future__ import annotations

# "damaged": a stored run whose files could not be read (its message says which and why)
TERMINAL = ("done", "stopped", "diverged", "failed", "cancelled", "interrupted", "damaged")
ACTIVE = ("queued", "running")
CLI_OWNER = "cli"  # the owner of bundles written by ``python -m engine``


def can_read(owner: str, shared: bool, reader: str) -> bool:
    """``reader`` may see the run: its owner, or anyone once it is shared."""
    return bool(reader) and (owner == reader or bool(shared))


def can_stop(owner: str, by: str, status: str) -> bool:
    """``by`` may stop the run or task: its owner, while it is not finished."""
    return bool(by) and owner == by and status not in TERMINAL


def can_share(owner: str, by: str, kind: str) -> bool:
    """``by`` may share it: the owner, and only runs (analysis tasks stay private)."""
    return bool(by) and owner == by and kind == "run"


def is_listed(owner: str, source: str, reader: str) -> bool:
    """The run appears in ``reader``'s run list: its own runs and every CLI bundle."""
    return (bool(reader) and owner == reader) or source == "cli"


def check_submitter(owner: str) -> None:
    """Raises PermissionError when no session id is given."""
    if not owner:
        raise PermissionError("a session id is required")


def quota_error(active: int, adding: int, limit: int) -> str | None:
    """Why ``adding`` more runs exceed the per-session limit, or None when they fit."""
    if active + adding <= limit:
        return None
    return (
        f"this session has {active} active run(s); the limit is {limit} "
        f"per session: stop one or wait for it to finish"
    )

"""Who may do what with a run: the access rules of house style §2.5, as plain functions.

- A run reads as "not found" to anyone but its owner unless the owner shared it; then anyone
  holding its id may read it (a share link). An empty session id reads nothing.
- Sharing grants reading only: stopping and sharing stay with the owner.
- A session's run list shows its own runs and every CLI bundle (CLI runs are shared).
- Limits (``limit_error``): a session may hold ``max_active_per_session`` queued + running
  runs and analysis tasks, the server ``max_active_total`` of them over all sessions (the
  session id is the browser's choice, so only a server-wide limit bounds the work), and at
  most ``max_tasks_total`` analysis tasks; a group over a limit is refused whole.

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
    return stop_refusal(True, owner, by, status) is None


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
        f"this session has {active} active run(s) and task(s); the limit is {limit} "
        f"per session (max_active_per_session): stop one or wait for it to finish"
    )


def total_error(total: int, adding: int, limit: int | None) -> str | None:
    """Why ``adding`` more active runs, tasks or sweeps exceed the per-server limit, or None."""
    if limit is None or total + adding <= limit:
        return None
    return (
        f"the server has {total} active run(s), task(s) and sweep(s) from all sessions; the "
        f"limit is {limit} per server (max_active_total): wait for some to finish"
    )


def limit_error(
    adding: int, session: int, total: int, config, tasks: int | None = None
) -> str | None:
    """Why ``adding`` more active runs (or tasks, when ``tasks`` counts the server's active
    analysis tasks) exceed a limit of ``config`` (a ServerConfig), or None when they fit.
    ``session``, ``total``: active runs and tasks of the session and of the server."""
    refused = quota_error(session, adding, config.max_active_per_session)
    refused = refused or total_error(total, adding, config.max_active_total)
    if refused:
        return refused
    if tasks is not None and tasks + adding > config.max_tasks_total:
        return (
            f"the server has {tasks} analysis task(s) under way from all sessions; the limit is "
            f"{config.max_tasks_total} per server (max_tasks_total): wait for one to finish"
        )
    return None


def stop_refusal(found: bool, owner: str, by: str, status: str) -> str | None:
    """Why ``by`` may not stop the run or task (None: it may). ``found``: ``by`` may read it;
    a run that is not readable answers like a foreign one, so its existence does not leak."""
    if not found or not by or owner != by:
        return "That run is not yours: only the session that started it can stop it."
    if status in TERMINAL:
        return "That run has already finished."
    return None

"""Uploaded structures: checked by the run's own builder before they are accepted, kept per
session within stated limits, deleted after a retention period or with their session.

- ``accept`` is the upload field's whole flow: decode and size cap (``forms.check_upload``),
  then ``engine.protein.build.check_structure``, the builder a run uses (mdtraj, pdbfixer,
  OpenMM's amber14 templates), so a file that cannot be modelled is refused at the field with
  the residues or atoms named, never after Run; then storage within the session's limits
  (``RunStore.save_upload``).
- Specs, configs and the structure dropdown carry names, never server paths: a structure on
  this machine by its file name ("2JOF_native.pdb"), an upload as "<id>/<file name>".
  ``install`` makes those names resolve (engine/io.py ``use_structure_dirs``) in the server
  and in the processes it starts (sweep workers).
- The limits are server settings (workbench/config.py), gathered in ``UploadLimits``; every
  refusal and the line under the field state them.
"""

from __future__ import annotations

import dataclasses
import os
import time

from engine import SpecError
from engine import io as engine_io

from . import forms
from .runstore import RunStore, UploadRefused


@dataclasses.dataclass(frozen=True)
class UploadLimits:
    """Bounds on uploaded structures (per server process).

    max_bytes: one file's size cap.
    max_per_session: uploads one session may hold (a repeated identical file counts once).
    max_session_bytes: their total size.
    max_total_bytes: all sessions' uploads together, since a session is only a browser tab.
    retention_s: an upload is deleted this long after it was made (its runs keep their
        results; rebuilding such a run's system, e.g. a PDB export after a restart, then says
        the upload is gone).
    """

    max_bytes: int = 2_000_000
    max_per_session: int = 10
    max_session_bytes: int = 10_000_000
    max_total_bytes: int = 500_000_000
    retention_s: float = 24 * 3600.0

    def __post_init__(self):
        for name in ("max_bytes", "max_per_session", "max_session_bytes", "max_total_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.retention_s > 0:
            raise ValueError(f"retention_s must be > 0, got {self.retention_s}")

    def describe(self) -> str:
        """The limits in one line, for the UI."""
        return (
            f"at most {self.max_per_session} uploads and {_mb(self.max_session_bytes)} per "
            f"session, each kept {_duration(self.retention_s)}"
        )

    def refusal(self, count: int, used: int, total: int, adding: int) -> str | None:
        """Why an upload of ``adding`` bytes is refused to a session holding ``count`` uploads
        of ``used`` bytes when all uploads take ``total`` bytes; None when it fits."""
        if count + 1 > self.max_per_session:
            return (
                f"this session already has {count} uploads; the limit is "
                f"{self.max_per_session} per session (each is kept {_duration(self.retention_s)})"
            )
        if used + adding > self.max_session_bytes:
            return (
                f"this file ({_mb(adding)}) would bring this session's uploads to "
                f"{_mb(used + adding)}; the limit is {_mb(self.max_session_bytes)} per session"
            )
        if total + adding > self.max_total_bytes:
            return (
                f"the server's uploads are full ({_mb(total)} of {_mb(self.max_total_bytes)} "
                f"for all sessions); uploads are deleted after {_duration(self.retention_s)}"
            )
        return None


def _mb(n: int) -> str:
    return f"{n / 1e6:.3g} MB"


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def limits_of(config) -> UploadLimits:
    """The upload limits of a server configuration (workbench/config.py declares them)."""
    return UploadLimits(
        max_bytes=config.max_upload_bytes,
        max_per_session=config.uploads_per_session,
        max_session_bytes=config.upload_session_bytes,
        max_total_bytes=config.upload_total_bytes,
        retention_s=float(config.upload_retention_s),
    )


def accepted_line(limits: UploadLimits) -> str:
    """What the upload field accepts, under the field (every number a limit)."""
    from engine.protein.build import MAX_HEAVY_ATOMS

    return (
        f"Proteins of standard amino acids up to {MAX_HEAVY_ATOMS:,} heavy atoms (water, ions "
        f"and ligands are stripped); {limits.describe()}."
    )


def accept(
    contents: str | None, filename: str | None, owner: str, store: RunStore, limits: UploadLimits
) -> tuple[str, str]:
    """Check and store an upload: (token, the message to show). Raises SpecError
    ("protein.upload", message) for a file that is refused, saying why and the limits."""
    from engine.protein.build import MAX_HEAVY_ATOMS, StructureError, check_structure

    if not owner or not isinstance(owner, str):
        raise SpecError("protein.upload", "no session: reload the page")
    if not isinstance(contents, str):  # a browser sends a data URL; anything else is no file
        contents = None
    filename = filename if isinstance(filename, str) else ""
    name = os.path.basename(filename.replace("\\", "/"))[:120] or "file"
    if name.lower().endswith((".cif", ".mmcif", ".bcif", ".cif.gz")):
        raise SpecError("protein.upload", f"{name}: mmCIF is not supported, upload PDB")
    data = forms.check_upload(contents, name, limits.max_bytes)
    refused = store.upload_room(data, owner, limits)  # before the slow check
    if refused:
        raise SpecError("protein.upload", f"{name} not stored: {refused}")
    t0 = time.perf_counter()
    try:
        info = check_structure(data)
    except StructureError as err:
        raise SpecError(
            "protein.upload",
            f"{name} cannot be modelled: {err} (uploads take PDB files of proteins up to "
            f"{MAX_HEAVY_ATOMS:,} heavy atoms)",
        ) from None
    seconds = time.perf_counter() - t0
    try:
        token = store.save_upload(data, name, owner, limits)
    except UploadRefused as err:
        raise SpecError("protein.upload", f"{name} not stored: {err}") from None
    notes = "; ".join(info["notes"])
    return token, (
        f"{name}: accepted, {info['n_residues']} residues, {info['n_heavy']:,} heavy atoms "
        f"({info['n_atoms']:,} with hydrogens), checked with amber14 in {seconds:.1f} s"
        + (f". Notes: {notes}" if notes else "")
    )


def install(config) -> None:
    """Make structure names resolve for this server: its structure folders, then its uploads
    folder (engine/io.py ``use_structure_dirs``), and delete uploads past their retention;
    call once at start-up. Raises ValueError when the upload limits' variables are not
    valid, so a bad setting stops the start."""
    store = RunStore(config.run_dir)
    store.purge_uploads(limits_of(config).retention_s)
    engine_io.use_structure_dirs([*config.structure_dirs, str(store.uploads_dir)])


def structure_options(structures) -> list[tuple[str, str]]:
    """[(label, name)] of the structures offered on this machine (``jobs.list_structures``'
    [(label, path)]): the dropdown's values are names, the first folder's file wins a name."""
    out, seen = [], set()
    for label, path in structures:
        name = path if path == "villin" else os.path.basename(path)
        if name not in seen:
            seen.add(name)
            out.append((label, name))
    return out

"""Persistence of workbench runs under ``run_dir``, as run bundles written by engine/io.py.

Each run is a bundle folder ``run_dir/<run_id>/`` in the one run format of the CLI
(engine/io.py's module docstring lists the files): config.json, metrics.csv, frames.npz,
final.pdb, plus the workbench's meta.json (owner, sharing, status, timestamps) and
view.json. So ``python -m engine run --config run_dir/<run_id>/config.json`` re-runs it and
``engine.io.read_bundle`` reads it. This module decides which folder and which values; every
read and write of a run file goes through engine/io.py (temporary name + ``os.replace``).

- When a run is queued (and whenever its status or sharing changes) meta.json is written;
  config.json holds the spec and status until the run ends. A crash therefore leaves a run
  that re-indexes as "interrupted".
- When it ends, the bundle files are written, meta.json last.
- ``index`` reads only meta.json and the spec; arrays load on first access (``load``).
- Damaged files never stop the server or hide a run from its owner: ``check_meta`` validates
  every meta.json field, and a run whose meta.json is unreadable or of the wrong shape or
  types is indexed with status "damaged" and the reason as its message (the owner is read
  from the damaged text when possible, so the owner's list says why). The arrays are
  validated when read (``engine.io.read_bundle``); the registry marks a run whose arrays
  cannot be read "damaged" the same way.

Uploaded structures live in ``run_dir/uploads/<id>/<file name>`` with an ``upload.json`` record
(owner, size, time); workbench/uploads.py validates them and states their limits.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from engine import io as engine_io

from .access import ACTIVE, TERMINAL

_RUN_ID = re.compile(r"^[0-9a-f]{16}$")
_TOKEN = re.compile(r"^[0-9a-f]{32}$")
INTERRUPTED = "the server stopped while this run was active; partial results were not kept"
DAMAGED = "damaged"
_OWNER = re.compile(r'"owner"\s*:\s*"([^"\\]*)"')
_LABEL = re.compile(r'"label"\s*:\s*"([^"\\]*)"')


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _integer(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# meta.json field -> (check, what it must be); a missing field takes the registry's default
_META_FIELDS = {
    "owner": (lambda v: isinstance(v, str), "a string"),
    "shared": (lambda v: isinstance(v, bool), "true or false"),
    "status": (lambda v: v in ACTIVE + TERMINAL, "a run status"),
    "message": (lambda v: isinstance(v, str), "a string"),
    "label": (lambda v: isinstance(v, str), "a string"),
    "group": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "created": (_number, "a number (Unix seconds)"),
    "started": (lambda v: v is None or _number(v), "a number or null"),
    "finished": (lambda v: v is None or _number(v), "a number or null"),
    "version": (_integer, "an integer"),
    "seed": (lambda v: v is None or _integer(v), "an integer or null"),
    "stage_switch_step": (lambda v: v is None or _integer(v), "an integer or null"),
    "timings": (lambda v: isinstance(v, dict) and all(map(_number, v.values())), "numbers"),
    "last": (lambda v: isinstance(v, dict), "an object"),
}
_REQUIRED = ("owner", "status")


def check_meta(meta, text: str = "") -> tuple[dict, str]:
    """(meta fit for the registry, "" or why it is damaged). A damaged meta.json (not an
    object, a required field missing, a field of the wrong type) comes back as a "damaged"
    run keeping what could be read: its owner (from ``text``, the file's raw text, when it is
    not an object), label and creation time."""
    if not isinstance(meta, dict):
        owner, label = _OWNER.search(text or ""), _LABEL.search(text or "")
        base = {"owner": owner.group(1) if owner else "", "label": label.group(1) if label else ""}
        problem = "is damaged (not valid JSON)" if meta is None else "is not a JSON object"
        return _damaged(base, f"meta.json {problem}")
    for name, (ok, what) in _META_FIELDS.items():
        if name in meta and not ok(meta[name]):
            return _damaged(meta, f"meta.json: {name} is not {what}: {meta[name]!r:.40}")
    for name in _REQUIRED:
        if name not in meta:
            return _damaged(meta, f"meta.json: {name} is missing")
    return meta, ""


def _damaged(meta: dict, problem: str) -> tuple[dict, str]:
    """The readable part of a damaged meta.json: owner, label, created (if of the right
    type), status "damaged" with ``problem`` as its message."""
    keep = {}
    for name in ("owner", "label", "created"):
        ok, _ = _META_FIELDS[name]
        if name in meta and ok(meta[name]):
            keep[name] = meta[name]
    return {**keep, "status": DAMAGED, "message": problem, "version": 0}, problem


class RunFiles(NamedTuple):
    """A finished run's values, copied from its record under the registry lock.

    metrics: {column: [n] array}; frames_step [F]; frames_x: F arrays [n, 3]; x_final [n, 3];
    summary: ``RunResult.summary()`` ({} when the runner's result has none);
    system: the built System (for final.pdb) or None.
    """

    meta: dict
    spec: dict | None
    status: str
    message: str
    summary: dict
    timings: dict
    metrics: dict
    frames_step: Any
    frames_x: Any
    x_final: Any
    view: dict | None
    system: Any


class RunStore:
    """Reads and writes the run folders of one directory (created on first write)."""

    def __init__(self, run_dir: str):
        self.root = Path(run_dir)
        self._upload_lock = threading.Lock()  # a session's limit is checked and used at once

    def path(self, run_id: str) -> Path:
        """The folder of ``run_id``; refuses anything that is not a run id (never a path)."""
        if not _RUN_ID.match(run_id):  # ids come from secrets.token_hex(8)
            raise ValueError(f"not a run id: {run_id!r}")
        return self.root / run_id

    # ---- writing ---------------------------------------------------------------------------
    def save_meta(self, run_id: str, meta: dict, spec: dict | None = None) -> None:
        """Write meta.json; with ``spec``, also the pending config.json (spec and status)."""
        d = self.path(run_id)
        if spec is not None:
            engine_io.write_json(d / "config.json", engine_io.bundle_config(spec, meta["status"]))
        engine_io.write_meta(d, meta)

    def save_run(self, run_id: str, files: RunFiles) -> None:
        """Write a finished run as a bundle; meta.json goes last."""
        d = self.path(run_id)
        config = engine_io.bundle_config(
            files.spec, files.status, files.message, files.summary, files.timings, files.system
        )
        engine_io.write_bundle_data(
            d,
            config,
            files.metrics,
            files.frames_step,
            np.stack(files.frames_x) if len(files.frames_x) else np.zeros((0, 0, 3), np.float32),
            files.x_final,
            system=files.system,
            view=files.view,
        )
        engine_io.write_meta(d, files.meta)

    # ---- reading ---------------------------------------------------------------------------
    def index(self) -> list[tuple[dict, dict | None]]:
        """(meta, spec dict) of every stored run; runs left active are marked "interrupted"."""
        out = []
        for d in engine_io.run_folders(self.root):
            if not _RUN_ID.match(d.name):
                continue
            meta, problem = _read_meta(d)
            try:
                config = d / "config.json"
                spec = engine_io.read_json(config).get("spec") if config.is_file() else None
                spec = spec if isinstance(spec, dict) else None
            except (OSError, ValueError, AttributeError):
                spec = None  # a damaged config.json: the arrays' reader will say so
            meta["run_id"] = d.name
            if not problem and meta.get("status") in ACTIVE:
                meta["status"], meta["message"] = "interrupted", INTERRUPTED
                self.save_meta(d.name, meta, spec)
            out.append((meta, spec))
        return out

    def finished(self, run_id: str) -> bool:
        """True when the run's bundle files are complete (it ended while a server ran)."""
        return engine_io.is_bundle(self.path(run_id))

    def load_arrays(self, run_id: str) -> dict | None:
        """``engine.io.read_bundle`` of a stored run, or None if it never finished."""
        return read_run(self.path(run_id)) if self.finished(run_id) else None

    # ---- uploads ---------------------------------------------------------------------------
    # run_dir/uploads/<id>/<file name> and <id>/upload.json {token, owner, name, bytes, sha256,
    # created}. The browser holds the token; specs and configs carry the name "<id>/<file name>"
    # (engine/io.py resolves it in the uploads folder, see workbench/uploads.py); the id is a
    # hash of the token, so a name never reveals the token.
    @property
    def uploads_dir(self) -> Path:
        return self.root / "uploads"

    def save_upload(
        self, data: bytes, filename: str | None = None, owner: str = "", limits=None
    ) -> str:
        """Store an uploaded structure for ``owner``; returns its token (the browser never sees
        a path). The same bytes uploaded again by the same session return the same token.

        ``limits`` (workbench/uploads.py ``UploadLimits``; None: unlimited) bounds the count and
        bytes per session and the bytes of all uploads; uploads older than its retention are
        deleted first. Raises UploadRefused (a ValueError) saying which limit, stated.
        """
        with self._upload_lock:
            known, refused = self._room(data, owner, limits)
            if known:
                return known
            if refused:
                raise UploadRefused(refused)
            digest = hashlib.sha256(data).hexdigest()
            token = secrets.token_hex(16)
            folder = self.uploads_dir / upload_id(token)
            name = safe_upload_name(filename)
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{name}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, folder / name)
            record = {"token": token, "owner": owner, "name": name, "bytes": len(data),
                      "sha256": digest, "created": time.time()}  # fmt: skip
            engine_io.write_json(folder / UPLOAD_RECORD, record)
            return token

    def upload_room(self, data: bytes, owner: str, limits) -> str | None:
        """Why ``save_upload`` would refuse ``data`` now (a limit, stated), or None; a cheap
        check made before the slow validation."""
        with self._upload_lock:
            return self._room(data, owner, limits)[1]

    def _room(self, data: bytes, owner: str, limits) -> tuple[str | None, str | None]:
        """(token of the same bytes already uploaded by ``owner`` or None, refusal or None);
        purges expired uploads first. Called under the upload lock."""
        if limits is not None:
            self.purge_uploads(limits.retention_s)
        digest = hashlib.sha256(data).hexdigest()
        mine = self.uploads_of(owner)
        for up in mine:
            if up["sha256"] == digest and self.upload_path(up["token"]):
                return up["token"], None
        if limits is None:
            return None, None
        total = sum(up["bytes"] for up in self._uploads())
        used = sum(up["bytes"] for up in mine)
        return None, limits.refusal(len(mine), used, total, len(data))

    def upload_path(self, token: str | None) -> str | None:
        """The stored file of ``token``, or None (not a token, deleted, or never stored)."""
        record = self._record(token)
        if record is None:
            return None
        path = self.uploads_dir / upload_id(token) / record["name"]
        return str(path.resolve()) if path.is_file() else None

    def upload_name(self, token: str | None) -> str | None:
        """The name a spec carries for ``token``'s file ("<id>/<file name>"), or None."""
        record = self._record(token)
        if record is None or self.upload_path(token) is None:
            return None
        return f"{upload_id(token)}/{record['name']}"

    def uploads_of(self, owner: str) -> list[dict]:
        """upload.json records of ``owner``'s uploads (every field of the record)."""
        return [up for up in self._uploads() if owner and up.get("owner") == owner]

    def delete_uploads(self, owner: str) -> int:
        """Delete every upload of ``owner`` (the session ended); returns how many."""
        mine = self.uploads_of(owner)
        for up in mine:
            shutil.rmtree(self.uploads_dir / upload_id(up["token"]), ignore_errors=True)
        return len(mine)

    def purge_uploads(self, max_age_s: float, now: float | None = None) -> int:
        """Delete uploads older than ``max_age_s``, and anything else in the uploads folder
        (a folder without a readable record, a file of the earlier <token>.pdb layout) whose
        modification time is older; returns how many entries went."""
        now = time.time() if now is None else now
        gone = 0
        if not self.uploads_dir.is_dir():
            return 0
        for entry in self.uploads_dir.iterdir():
            record = _upload_record(entry) if entry.is_dir() else None
            created = record["created"] if record else engine_io.folder_mtime(entry)
            if now - created > max_age_s:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                gone += 1
        return gone

    def _record(self, token: str | None) -> dict | None:
        if not token or not _TOKEN.match(token):
            return None
        record = _upload_record(self.uploads_dir / upload_id(token))
        return record if record and record["token"] == token else None

    def _uploads(self) -> list[dict]:
        if not self.uploads_dir.is_dir():
            return []
        found = (_upload_record(f) for f in sorted(self.uploads_dir.iterdir()) if f.is_dir())
        return [r for r in found if r is not None]


UPLOAD_RECORD = "upload.json"


class UploadRefused(ValueError):
    """An upload over a limit; the message states the limit (shown next to the field)."""


def upload_id(token: str) -> str:
    """The folder and name part of an upload: 16 hex digits of the token's SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def safe_upload_name(filename: str | None) -> str:
    """The uploaded file's base name as stored and shown: letters, digits and " _.+()-"
    (others become "_"), starting with a letter, digit or "_", at most 80 characters (a
    structure name part, engine/io.py ``is_structure_name``)."""
    base = os.path.basename((filename or "").replace("\\", "/")).strip()
    name = re.sub(r"^[^A-Za-z0-9_]+", "", re.sub(r"[^A-Za-z0-9 _.+()-]", "_", base))[:80]
    return name if name and name != UPLOAD_RECORD else "structure.pdb"


def _upload_record(folder: Path) -> dict | None:
    """A folder's upload.json when it is whole and of the right shape, else None."""
    try:
        record = engine_io.read_json(folder / UPLOAD_RECORD)
    except ValueError:
        return None
    ok = (
        isinstance(record, dict)
        and isinstance(record.get("token"), str)
        and isinstance(record.get("owner"), str)
        and isinstance(record.get("name"), str)
        and "/" not in record["name"]
        and _integer(record.get("bytes"))
        and isinstance(record.get("sha256"), str)
        and _number(record.get("created"))
    )
    return record if ok else None


def _read_meta(folder: Path) -> tuple[dict, str]:
    """``check_meta`` of a run folder's meta.json, whatever state the file is in."""
    try:
        text = (folder / engine_io.META_FILE).read_text(errors="replace")
    except OSError as err:
        return _damaged({}, f"meta.json cannot be read: {err}")
    try:
        meta = json.loads(text)
    except ValueError:
        meta = None
    return check_meta(meta, text)


def read_run(path: str | Path) -> dict:
    """The registry's default reader of a finished run or CLI bundle: ``engine.io.read_bundle``
    ({"config", "metrics", "frames_step", "frames_x", "x_final", "view"})."""
    return engine_io.read_bundle(path)

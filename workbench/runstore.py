"""Persistence of workbench runs under ``run_dir`` (the only workbench module writing files).

Layout of ``run_dir/<run_id>/``:
  meta.json    owner, shared, status, message, label, group, timestamps, timings, seed,
               stage_switch_step; written when a run starts (status "running") and again
               when it ends, so a crash leaves a run that re-indexes as "interrupted".
  spec.json    the RunSpec as a dict: ``python -m engine`` / ``RunSpec.from_dict`` re-runs it.
  metrics.npz  one array per logged column (step, stage, wall_time_s, energy, ...).
  frames.npz   frames_step [F], frames_x [F, n, 3] (thinned for replay), x_final [n, 3].
  view.json    what the 3D viewer needs to draw the system (bonds or PDB topology).
Uploaded structures live in ``run_dir/uploads/<token>.pdb``.

Every file is written to a temporary name and moved into place with ``os.replace``; readers
never see half a file. Arrays load lazily (``load_arrays``), the index reads only meta.json.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
from pathlib import Path

import numpy as np

ACTIVE = ("queued", "running")
_RUN_ID = re.compile(r"^[0-9a-f]{16}$")
_TOKEN = re.compile(r"^[0-9a-f]{32}$")


class RunStore:
    """Reads and writes run folders in one directory (created on first use)."""

    def __init__(self, run_dir: str):
        self.root = Path(run_dir)

    # ---- writing ---------------------------------------------------------------------------
    def _dir(self, run_id: str) -> Path:
        if not _RUN_ID.match(run_id):  # ids come from secrets.token_hex(8); never a path
            raise ValueError(f"not a run id: {run_id!r}")
        return self.root / run_id

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def save_meta(self, run_id: str, meta: dict, spec: dict | None = None) -> None:
        """Write meta.json (and spec.json when given)."""
        d = self._dir(run_id)
        if spec is not None:
            self._write(d / "spec.json", json.dumps(spec, indent=1, default=_jsonable).encode())
        self._write(d / "meta.json", json.dumps(meta, indent=1, default=_jsonable).encode())

    def save_result(
        self,
        run_id: str,
        meta: dict,
        spec: dict,
        metrics: dict,
        frames_step,
        frames_x,
        x_final,
        view: dict | None,
    ) -> None:
        """Write a finished run; meta.json goes last, so an index never sees a partial run."""
        d = self._dir(run_id)
        buf = io.BytesIO()
        np.savez_compressed(buf, **{k: np.asarray(v) for k, v in metrics.items()})
        self._write(d / "metrics.npz", buf.getvalue())
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            frames_step=np.asarray(frames_step, np.int64),
            frames_x=np.asarray(frames_x, np.float32),
            x_final=np.asarray(x_final, np.float64),
        )
        self._write(d / "frames.npz", buf.getvalue())
        if view is not None:
            self._write(d / "view.json", json.dumps(view, default=_jsonable).encode())
        self.save_meta(run_id, meta, spec)

    # ---- reading ---------------------------------------------------------------------------
    def index(self) -> list[tuple[dict, dict | None]]:
        """(meta, spec dict) of every stored run; runs left active are marked "interrupted"."""
        out = []
        if not self.root.is_dir():
            return out
        for d in sorted(self.root.iterdir()):
            if not (_RUN_ID.match(d.name) and (d / "meta.json").is_file()):
                continue
            try:
                meta = json.loads((d / "meta.json").read_text())
                spec = (
                    json.loads((d / "spec.json").read_text())
                    if (d / "spec.json").is_file()
                    else None
                )
            except (OSError, ValueError):
                continue  # a damaged folder is skipped, not fatal for the server
            if meta.get("status") in ACTIVE:
                meta["status"] = "interrupted"
                meta["message"] = (
                    "the server stopped while this run was active; partial results were not kept"
                )
                self.save_meta(d.name, meta)
            out.append((meta, spec))
        return out

    def load_arrays(self, run_id: str) -> dict | None:
        """{"metrics", "frames_step", "frames_x", "x_final", "view"} or None if never finished."""
        d = self._dir(run_id)
        if not (d / "metrics.npz").is_file():
            return None
        with np.load(d / "metrics.npz") as z:
            metrics = {k: z[k] for k in z.files}
        with np.load(d / "frames.npz") as z:
            frames = {k: z[k] for k in z.files}
        view = json.loads((d / "view.json").read_text()) if (d / "view.json").is_file() else None
        return {"metrics": metrics, **frames, "view": view}

    # ---- uploads ---------------------------------------------------------------------------
    def save_upload(self, data: bytes) -> str:
        """Store an uploaded structure; returns its token (the browser never sees the path)."""
        token = secrets.token_hex(16)
        self._write(self.root / "uploads" / f"{token}.pdb", data)
        return token

    def upload_path(self, token: str | None) -> str | None:
        if not token or not _TOKEN.match(token):
            return None
        path = self.root / "uploads" / f"{token}.pdb"
        return str(path.resolve()) if path.is_file() else None


def _jsonable(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON-serializable: {type(obj).__name__}")

"""The live frame stream: GET /_wb/frames?runs=<id>:<since>,... -> newest coordinates.

Why not a Dash callback: a callback round trip per frame (request, renderer bookkeeping,
store update, clientside dispatch) cost more than drawing the frame and kept live 3D views
under 10 frames/s. This route is a thin read of the registry, with the same access rule as
everything else (house style §2.5): the caller's session token comes in the X-WB-Session
header, and a run it may not read answers as "gone", exactly like an unknown id.

Reply: {run_id: {"frame": n, "terminal": bool, "step": s, "xyz": [3 n floats]}} where step
and xyz are present only if the run has a frame newer than ``since``; {"gone": true} for
runs that are unknown or not readable. A newer frame whose coordinates are not all finite (a
diverged run) is skipped: "step" and ``"nonfinite": true`` instead of "xyz", so the view keeps
its last drawable frame. The reply is always strict JSON (no NaN or Infinity tokens), so one
diverged run never breaks the stream of the others on the page.
"""

from __future__ import annotations

import json

import numpy as np
from flask import Response, request

from . import jobs
from . import registry as reg

MAX_RUNS = 16  # one page shows a handful of live runs; more is not a browser


def parse_query(text: str) -> list[tuple[str, int]]:
    """ "id:since,id:since" -> [(id, since)]; malformed parts are dropped."""
    out = []
    for part in (text or "").split(",")[:MAX_RUNS]:
        run_id, _, since = part.partition(":")
        try:
            since_n = max(0, int(since or 0))
        except ValueError:
            continue
        if run_id.strip():
            out.append((run_id.strip(), since_n))
    return out


def frames_reply(registry, reader: str, wanted: list[tuple[str, int]]) -> dict:
    """Newest frame of each readable run that has one after ``since``."""
    out = {}
    for run_id, since in wanted:
        snap = registry.snapshot(run_id, reader, since_rows=1 << 62, since_frame=since)
        if snap is None or snap.kind != "run":
            out[run_id] = {"gone": True}
            continue
        entry = {"frame": snap.frame_no, "terminal": snap.terminal}
        if snap.frame_x is not None and snap.view is not None:
            entry["step"] = snap.frame_step
            if np.all(np.isfinite(snap.frame_x)):
                entry["xyz"] = jobs.view_xyz(snap.frame_x, snap.view)
            else:  # a diverged run's positions: not drawable, and NaN is not JSON
                entry["nonfinite"] = True
        out[run_id] = entry
    return out


def frames_view() -> Response:
    """Flask view of /_wb/frames (registered by workbench.server.create_app)."""
    reader = request.headers.get("X-WB-Session", "")
    body = frames_reply(reg.get(), reader, parse_query(request.args.get("runs", "")))
    return Response(
        json.dumps(body, separators=(",", ":"), allow_nan=False),
        mimetype="application/json",
        headers={"Cache-Control": "no-store"},
    )

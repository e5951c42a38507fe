"""Every component id of the workbench: constants for singletons, factories for per-run widgets.

Pattern ids are dicts with a "type" key so callbacks can use MATCH/ALL over them. Viewer host
divs get plain string ids (``viewer_dom``) because the 3Dmol JavaScript finds them with
getElementById and no callback reads or writes them.
"""

from __future__ import annotations

# ---- page state (browser holds ids only) ---------------------------------------------------
SESSION = "wb-session"  # dcc.Store(storage_type="session"): this tab's random owner token
LIVE = "wb-live"  # Store: {"group": str, "runs": [{"id", "label", "color"}], "curves": bool}
SEEN = "wb-seen"  # Store: {run_id: {"rows": n, "frame": n, "version": n}}
POLL = (
    "wb-poll"  # Store: tick counter; each increment runs poll_runs once (see assets/workbench.js)
)
POLL_ACK = "wb-poll-ack"  # dummy output of the clientside poll scheduler
WATCHDOG = "wb-watchdog"  # Interval restarting the poll chain if a poll request was lost
RUNS_TICK = "wb-runs-tick"  # slower Interval refreshing the runs list
LOCATION = "wb-location"  # dcc.Location: "?run=<id>" opens a shared run
DOWNLOAD = "wb-download"

# ---- 1 system / 3 method forms -----------------------------------------------------------
SYSTEM_TABS = "wb-system-tabs"
SYSTEM_SUMMARY = "wb-system-summary"
PROTEIN_SOURCE = "wb-protein-source"
UPLOAD = "wb-upload"
UPLOAD_MSG = "wb-upload-msg"
UPLOAD_TOKEN = "wb-upload-token"  # Store: server-side token of the last valid upload
METHODS = "wb-methods"
METHODS_MSG = "wb-methods-msg"
PRESET = "wb-preset"
PRESET_DESC = "wb-preset-desc"
RUN_BTN = "wb-run"
STOP_ALL_BTN = "wb-stop-all"
RUN_MSG = "wb-run-msg"

# ---- 2 spectrum ----------------------------------------------------------------------------
SPEC_BTN = "wb-spec-run"
SPEC_TASK = "wb-spec-task"  # Store: {"id": task id, "done": bool}
SPEC_POLL = "wb-spec-poll"
SPEC_STATUS = "wb-spec-status"
SPEC_GRAPH = "wb-spec-graph"
SPEC_CLICK = "wb-spec-click"  # radio: a click on the spectrum animates a mode or sets k
SPEC_AMP = "wb-spec-amp"
SPEC_MODE = "wb-spec-mode"  # Store: mode animation payload for the clientside animator
SPEC_MODE_INFO = "wb-spec-mode-info"
SPEC_ACK = "wb-spec-ack"
SPEC_VIEW_DOM = "wb-spec-view"
HEATMAPS = "wb-heatmaps"

# ---- 4/5 live runs ---------------------------------------------------------------------------
LIVE_CARDS = "wb-live-cards"
CURVES = "wb-curves"
THRESH_METRIC = "wb-thresh-metric"
THRESH_VALUE = "wb-thresh-value"
THRESH_MSG = "wb-thresh-msg"
SPEEDUP = "wb-speedup"

# ---- 6 runs list, replay -------------------------------------------------------------------
RUNS_TABLE = "wb-runs-table"
RUNS_DIGEST = "wb-runs-digest"  # Store: hash of the last rendered runs list (skip no-op renders)
OPEN_ID = "wb-open-id"
OPEN_BTN = "wb-open-btn"
OPEN_MSG = "wb-open-msg"
REPLAY = "wb-replay"  # Store: {"id": run id} of the run opened for replay
REPLAY_TITLE = "wb-replay-title"
REPLAY_SLIDER = "wb-replay-slider"
REPLAY_CURVES = "wb-replay-curves"
REPLAY_FRAME = "wb-replay-frame"
REPLAY_ACK = "wb-replay-ack"
REPLAY_EXPORTS = "wb-replay-exports"
REPLAY_VIEW_DOM = "wb-replay-view"
REPLAY_BOX = "wb-replay-box"
K_PICK = "wb-k-pick"  # Store: k chosen on the spectrum, applied to the CG and GNN k fields

EXPORT_FORMATS = ("pdb", "traj", "csv", "json")


# ---- pattern-id factories --------------------------------------------------------------------
def field(name: str) -> dict:
    """A form input; ``name`` is the form key (forms.FIELDS), e.g. "system.n" or "gnn.hidden"."""
    return {"type": "field", "name": name}


def field_msg(name: str) -> dict:
    return {"type": "field-msg", "name": name}


def method_params(method: str) -> dict:
    """The collapsible parameter block of one method (shown while the method is checked)."""
    return {"type": "method-params", "index": method}


def run_card(run_id: str) -> dict:
    return {"type": "run-card", "index": run_id}


def run_frame(run_id: str) -> dict:
    """Store holding the newest coordinates of a live run ({"step", "xyz", "div", ...})."""
    return {"type": "run-frame", "index": run_id}


def run_ack(run_id: str) -> dict:
    """Dummy output of the clientside frame renderer (Dash needs one)."""
    return {"type": "run-ack", "index": run_id}


def run_status(run_id: str) -> dict:
    return {"type": "run-status", "index": run_id}


def stop_btn(run_id: str) -> dict:
    return {"type": "run-stop", "index": run_id}


def fit_btn(run_id: str) -> dict:
    """Re-fit the camera of a run's 3D view (and the views linked to it)."""
    return {"type": "run-fit", "index": run_id}


def fit_ack(run_id: str) -> dict:
    return {"type": "run-fit-ack", "index": run_id}


def share_btn(run_id: str) -> dict:
    return {"type": "run-share", "index": run_id}


def share_msg(run_id: str) -> dict:
    return {"type": "run-share-msg", "index": run_id}


def open_btn(run_id: str) -> dict:
    return {"type": "run-open", "index": run_id}


def export_btn(run_id: str, fmt: str) -> dict:
    return {"type": "run-export", "index": run_id, "fmt": fmt}


def viewer_dom(run_id: str) -> str:
    """DOM id of the div hosting a run's 3Dmol viewer."""
    return f"wb-view-{run_id}"

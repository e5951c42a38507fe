"""Component ids shared by several panels, and the id table the browser's JavaScript reads.

Ids have one place each: an id used by one panel lives in that panel's ``ID`` class, at the
top of its module (``workbench/panels/<panel>.py``); a panel that reads another panel's
widget names it there (``method.ID.RUN_BTN``). This module holds only what belongs to no
single panel: the page-level singletons and the form-field factories every form panel uses.

Pattern ids are dicts with a "type" key so callbacks can use MATCH/ALL over them. Viewer host
divs get plain string ids because the 3Dmol JavaScript finds them with getElementById and no
callback reads or writes them.

``table(ns)`` lists a namespace's string ids by name; ``workbench.layout.js_ids()`` collects
every table into the ``window.WB_IDS`` object that ``assets/workbench.js`` reads, so the
JavaScript holds no id strings of its own.
"""

from __future__ import annotations

# ---- page state (browser holds ids only) ---------------------------------------------------
SESSION = "wb-session"  # dcc.Store(storage_type="session"): this tab's random owner token
LOCATION = "wb-location"  # dcc.Location: "?run=<id>" opens a shared run
DOWNLOAD = "wb-download"  # dcc.Download of every export button (live cards and replay)

EXPORT_FORMATS = ("pdb", "traj", "csv", "json")


# ---- pattern-id factories shared by panels ---------------------------------------------------
def field(name: str) -> dict:
    """A form input; ``name`` is the form key (forms.FIELDS), e.g. "system.n" or "gnn.hidden"."""
    return {"type": "field", "name": name}


def field_msg(name: str) -> dict:
    """The message slot next to a form input (also for non-FIELDS rows such as "methods")."""
    return {"type": "field-msg", "name": name}


def export_btn(run_id: str, fmt: str) -> dict:
    """A download button of a run (live card or replay); ``fmt`` in EXPORT_FORMATS."""
    return {"type": "run-export", "index": run_id, "fmt": fmt}


def table(namespace) -> dict[str, str]:
    """{NAME: id} of the upper-case string attributes of a module or ``ID`` class."""
    return {
        name: value
        for name, value in vars(namespace).items()
        if name.isupper() and isinstance(value, str)
    }

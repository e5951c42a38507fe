"""Pure views of a sweep's results: the Figure 3 scatter, parallel coordinates, the table.

Rows are engine.cluster's: key, method, seed, the varied fields, status, message,
final_energy, best_energy, wall_time_s, steps, modes_s, compile_s and final_<metric> for the
structure metrics. A *point* is one setting of the varied fields and one method; its seeds
give the error bars (mean ± sd). Clicking a point opens its best run (lowest final energy).
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from engine import RunSpec
from engine.methods import METHODS
from engine.schema import entry

TEMPLATE = "plotly_white"
STRUCTURE = (  # final structure metrics shown when the rows have them: (column, label)
    ("final_bond_ok_frac", "bonds intact"),
    ("final_loop_contact_frac", "loop contacts"),
    ("final_rmsd_ca", "CA RMSD (nm)"),
)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def points(rows: list[dict], fields: list[str]) -> list[dict]:
    """One entry per (varied values, method): n runs, n usable (not failed, finite energy),
    mean and sd of final energy and wall time, and the key of its lowest-energy run."""
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((*(r.get(f) for f in fields), r["method"]), []).append(r)
    out = []
    for key, rs in groups.items():
        ok = [r for r in rs if r["status"] != "failed" and _finite(r.get("final_energy"))]
        e = np.array([r["final_energy"] for r in ok], float)
        t = np.array([r["wall_time_s"] for r in ok], float)
        best = min(ok, key=lambda r: r["final_energy"], default=None)
        out.append({
            "values": dict(zip(fields, key[:-1], strict=True)), "method": key[-1],
            "runs": len(rs), "ok": len(ok),
            "energy": float(e.mean()) if len(e) else math.nan,
            "energy_sd": float(e.std(ddof=1)) if len(e) > 1 else 0.0,
            "time": float(t.mean()) if len(t) else math.nan,
            "time_sd": float(t.std(ddof=1)) if len(t) > 1 else 0.0,
            "best_key": best["key"] if best else None,
            "failed": sum(r["status"] == "failed" for r in rs),
            "diverged": sum(r["status"] == "diverged" for r in rs),
        })  # fmt: skip
    return out


def _point_text(p: dict) -> str:
    values = ", ".join(f"{_short(f)} = {v}" for f, v in p["values"].items())
    extra = f"; {p['failed']} failed" if p["failed"] else ""
    extra += f"; {p['diverged']} diverged" if p["diverged"] else ""
    return (
        f"{METHODS[p['method']].label}{' · ' + values if values else ''}<br>"
        f"E = {p['energy']:.6g} ± {p['energy_sd']:.2g} over {p['ok']} of {p['runs']} runs{extra}"
        f"<br>time {p['time']:.2f} ± {p['time_sd']:.2f} s · click: replay its best run"
    )


def _short(field: str) -> str:
    return entry(RunSpec, field).param.label


def waiting_figure(text: str) -> go.Figure:
    """A small figure that says what it will show once a sweep exists (never blank axes)."""
    fig = go.Figure()
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=120, margin=dict(l=10, r=10, t=10, b=10), template="plotly_white")
    return fig


def scatter_figure(rows: list[dict], fields: list[str], n_runs: int) -> go.Figure:
    """Figure 3 of the paper for this sweep: final energy against wall time, one marker per
    point (mean ± sd over seeds), one colour per method; customdata = the best run's key."""
    fig = go.Figure()
    pts = [p for p in points(rows, fields) if p["ok"]]
    for method in dict.fromkeys(p["method"] for p in pts):
        ps = [p for p in pts if p["method"] == method]
        fig.add_trace(go.Scatter(
            x=[p["time"] for p in ps], y=[p["energy"] for p in ps], mode="markers",
            name=METHODS[method].label, marker={"size": 10, "color": METHODS[method].color},
            error_y={"type": "data", "array": [p["energy_sd"] for p in ps], "thickness": 1},
            error_x={"type": "data", "array": [p["time_sd"] for p in ps], "thickness": 1},
            customdata=[p["best_key"] for p in ps],
            hovertext=[_point_text(p) for p in ps], hoverinfo="text",
        ))  # fmt: skip
    done = len(rows)
    fig.update_layout(
        template=TEMPLATE,
        height=340,
        margin={"l": 60, "r": 10, "t": 36, "b": 45},
        title={
            "text": f"final energy vs wall time (mean ± sd over seeds) · {done} of {n_runs} runs",
            "font": {"size": 13},
        },
        xaxis={"title": "wall time per run (s, slow modes included)"},
        yaxis={"title": "final energy", "exponentformat": "e"},
        legend={"orientation": "h", "y": -0.2},
        clickmode="event",
    )
    return fig


def parallel_figure(rows: list[dict], fields: list[str]) -> go.Figure:
    """Parallel coordinates: the varied fields and the method on the left, final energy, time
    and the structure metrics on the right; lines coloured by final energy."""
    ok = [r for r in rows if r["status"] != "failed" and _finite(r.get("final_energy"))]
    dims = []
    for f in [*fields, "method"]:
        values = [r.get(f) for r in ok]
        if all(_finite(v) for v in values) and values:
            log = entry(RunSpec, f).param.kind == "float" and min(values) > 0
            log = log and max(values) / min(values) >= 10
            shown = np.log10(values) if log else values
            label = f"log10 {_short(f)}" if log else _short(f)
            dims.append({"label": label, "values": shown})
        else:
            cats = list(dict.fromkeys(map(str, values)))
            names = [METHODS[c].label if f == "method" else c for c in cats]
            dims.append({
                "label": "method" if f == "method" else _short(f),
                "values": [cats.index(str(v)) for v in values],
                "tickvals": list(range(len(cats))), "ticktext": names,
            })  # fmt: skip
    dims.append({"label": "final energy", "values": [r["final_energy"] for r in ok]})
    dims.append({"label": "time (s)", "values": [r["wall_time_s"] for r in ok]})
    for col, label in STRUCTURE:
        if ok and all(_finite(r.get(col)) for r in ok):
            dims.append({"label": label, "values": [r[col] for r in ok]})
    fig = go.Figure(
        go.Parcoords(
            dimensions=dims,
            line={
                "color": [r["final_energy"] for r in ok],
                "colorscale": "Viridis",
                "reversescale": True,
                "showscale": True,
                "colorbar": {"title": "E"},
            },
        )
    )
    fig.update_layout(template=TEMPLATE, height=320, margin={"l": 60, "r": 60, "t": 40, "b": 20})
    return fig


def col_id(field: str) -> str:
    """A table column id for a field (DataTable ids must not contain dots)."""
    return field.replace(".", "__")


def table(rows: list[dict], fields: list[str]) -> tuple[list[dict], list[dict]]:
    """(columns, data) for a sortable dash_table.DataTable; each row's ``id`` is its run key."""
    cols = [("method", "method"), *((f, _short(f)) for f in fields), ("seed", "seed"),
            ("status", "status"), ("final_energy", "final E"), ("best_energy", "best E"),
            ("wall_time_s", "time s"), ("steps", "steps")]  # fmt: skip
    cols += [(c, label) for c, label in STRUCTURE if any(_finite(r.get(c)) for r in rows)]
    columns = [
        {"id": col_id(c), "name": label, "type": "text" if c in ("method", "status") else "numeric"}
        for c, label in cols
    ]
    data = []
    for r in rows:
        item = {"id": r["key"]}
        for c, _ in cols:
            v = r.get(c)
            item[col_id(c)] = (
                METHODS[v].label
                if c == "method"
                else (None if isinstance(v, float) and not math.isfinite(v) else v)
            )
        data.append(item)
    return columns, data

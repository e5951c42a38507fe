"""Cost of the live slow-mode projection (workbench/teach_views.py), and what it shows.

``python -m bench.bench_teaching [--sizes 400 1000] [--steps 20000] [--rounds 2]``

For each size: the opening demo's Bond+LJ loop (engine.presets.demo_spec, improved protocol,
fixed step budget, ``--steps``: long enough that a run spans several chart redraws) at n
atoms. Measured:

- ``modes_s``: every Hessian mode at x0 (engine.teaching.full_modes: Hessian + one
  single-threaded dense eigh of 3n x 3n), median of 2;
- ``project_ms``: one kept frame's charts as a run card computes them
  (engine.teaching.project_frames: x - x0 and the gradient at x, each onto all 3n modes),
  alone, and ``project_ms_batched`` per frame in a batch of 50 (the cards project the frames
  kept since their last chart redraw in one batch);
- GD's steps/s alone and with the live projection running beside it as in the workbench: a
  second thread computes the modes once, then every CHART_S projects the frames the run
  kept since (displacement and gradient bands, as ``one_run`` says). Runs
  alternate (alone, with, alone, with...) so load changes hit both alike; steps/s counts the
  run's logged steps over its own logged wall time (compilation excluded, as the engine logs);
- the shares of |x - x0|^2 in each band (rigid, k slowest, middle, k fastest; k = n/4 of
  the node-space modes = 3n/4 Hessian modes, as the chart) at steps 1000 and 2000, for GD
  and the GNN (seed 0).

Results: bench/results/teaching.json. Numbers on the shared machine under load are noisy;
the script records the load average before and after.

``--part views`` (results: bench/results/teaching_views.json) times the other teaching views
on the same system at each size, and records what they show:

- ``grad_ms``: one gradient of the full energy at a frame (the gradient chart, per frame);
- conditioning (engine.teaching.conditioning_report on the demo's CG and GNN specs): each
  row's seconds, kappa, kappa_bulk, |lambda| max / median / min, rank and count of negative
  eigenvalues; the wall time of the view's first part (H, CG, the GNN at step 0: what the
  view draws first) and of its second (the GNN's build and replay of stage 1 to its switch,
  and that row), as the workbench runs them;
- ``graph_s``: the propagation matrix, its strongest 4n edges and the weight histogram;
- ``landscape_s``: a 41 x 41 energy slice on the plane of modes 1 and 2 at x0.
Bounded: about 1 min at n = 400, 2 min at n = 600 and 4-5 min at n = 1000 on the loaded
2-core machine (``--sizes 400 600 1000``).
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import threading
import time

import numpy as np

from engine import build_system, make_energy, run
from engine.presets import OPENING, demo_spec
from engine.teaching import BAND_NAMES, SLOW, full_modes, project_frames, projection_basis
from workbench.config import ServerConfig

from .common import save_json

CHART_S = ServerConfig().chart_ms / 1000  # the cards' charts (and projections) redraw period
SHARES_STEPS = 2000  # the shares' runs (the lessons quote them at steps 1000 and 2000)


def _spec(method: str, n: int, steps: int):
    return demo_spec(OPENING, method).replace(**{"system.n": n, "schedule.max_steps": steps})


def _steps_per_s(result) -> float:
    m = result.metrics
    return float(m["step"][-1]) / float(m["wall_time_s"][-1])


def one_run(spec, system, project_live: bool):
    """(steps/s, shares by step, projector seconds, frames projected) of one run, with or
    without the live projection thread beside it: as the run cards do, the thread computes
    the modes once (engine.teaching.projection_basis), then at each chart redraw (every
    CHART_S) the displacement's and the gradient's bands of the frames kept since the last
    (project_frames, one batch)."""
    frames: queue.Queue = queue.Queue()
    shares: dict[int, np.ndarray] = {}
    busy = [0.0]

    def projector():
        t = time.perf_counter()
        basis = projection_basis(system, spec)
        busy[0] += time.perf_counter() - t
        ended = False
        while not ended:  # one batch per chart redraw, as the cards' poll does
            batch, deadline = [], time.perf_counter() + CHART_S
            while (wait := deadline - time.perf_counter()) > 0:
                try:
                    item = frames.get(timeout=wait)
                except queue.Empty:
                    break
                if item is None:
                    ended = True
                    break
                batch.append(item)
            if batch:
                t = time.perf_counter()
                moved, _ = project_frames(basis, system.x0, np.stack([x for _, x in batch]))
                shares.update({step: m for (step, _), m in zip(batch, moved, strict=True)})
                busy[0] += time.perf_counter() - t

    worker = threading.Thread(target=projector) if project_live else None
    if worker:
        worker.start()

    def on_progress(p):
        if worker and p.x is not None:
            frames.put((int(p.step), np.asarray(p.x, np.float64)))

    result = run(spec, on_progress=on_progress, system=system)
    if worker:
        frames.put(None)
        worker.join()
    return _steps_per_s(result), shares, busy[0], len(shares)


def bench_size(n: int, steps: int, rounds: int) -> dict:
    spec = _spec("gd", n, steps)
    system = build_system(spec.system, spec.seed)
    modes_s = []
    for _ in range(2):
        basis = projection_basis(system, spec)
        modes_s.append(basis.modes.seconds)
    x = np.asarray(system.x0, np.float64)[None] + np.random.default_rng(0).normal(size=(1, n, 3))
    project_frames(basis, system.x0, x)
    t = time.perf_counter()
    for _ in range(20):
        project_frames(basis, system.x0, x)
    project_ms = (time.perf_counter() - t) / 20 * 1e3
    xs = np.repeat(x, 50, axis=0)
    t = time.perf_counter()
    project_frames(basis, system.x0, xs)
    project_ms_batched = (time.perf_counter() - t) / 50 * 1e3
    run(spec.replace(**{"schedule.max_steps": 2 * spec.chunk_size}), system=system)  # compile
    alone, with_proj, busy, count = [], [], [], []
    for _ in range(rounds):
        alone.append(one_run(spec, system, False)[0])
        sps, _, b, c = one_run(spec, system, True)
        with_proj.append(sps)
        busy.append(b)
        count.append(c)
    out = {
        "n": n,
        "steps": steps,
        "load_before": os.getloadavg(),
        "modes_s": statistics.median(modes_s),
        "project_ms_per_frame": project_ms,  # displacement and gradient bands, one frame
        "project_ms_per_frame_batched": project_ms_batched,
        "frames_projected": count,
        "n_slow": int((basis.bands == SLOW).sum()),
        "gd_steps_per_s_alone": alone,
        "gd_steps_per_s_with_projection": with_proj,
        "projector_busy_s": busy,
        "overhead_frac": 1.0 - statistics.median(with_proj) / statistics.median(alone),
    }
    out["shares"] = {}
    for method in ("gd", "gnn"):
        s = _spec(method, n, SHARES_STEPS)
        _, shares, _, _ = one_run(s, build_system(s.system, s.seed), True)
        keys = sorted(shares)
        half = min(keys, key=lambda k: abs(k - SHARES_STEPS // 2))
        out["shares"][method] = {
            str(k): dict(zip(BAND_NAMES, _frac(shares[k]), strict=True)) for k in (half, keys[-1])
        }
    out["load_after"] = os.getloadavg()
    return out


def _frac(v) -> list[float]:
    v = np.asarray(v, np.float64)
    return [round(float(x), 4) for x in v / max(v.sum(), 1e-300)]


def bench_views(n: int) -> dict:
    """Cost (and content) of the gradient chart, conditioning, graph and landscape at n."""
    import jax
    import jax.numpy as jnp

    from engine.teaching import (
        conditioning_report,
        landscape_slice,
        propagation_matrix,
        strongest_edges,
    )
    from workbench.teach_views import HIST_BINS

    load0 = os.getloadavg()
    specs = [demo_spec(OPENING, m).replace(**{"system.n": n}) for m in ("cg", "gnn")]
    system = build_system(specs[0].system, specs[0].seed)
    model = make_energy(system, specs[0].energy)
    grad = jax.jit(jax.grad(model.energy_fn))
    x = jnp.asarray(system.x0)
    grad(x).block_until_ready()
    t = time.perf_counter()
    for _ in range(20):
        grad(x).block_until_ready()
    grad_ms = (time.perf_counter() - t) / 20 * 1e3
    t = time.perf_counter()
    rows = conditioning_report(specs, system, parts=("start",))
    start_s = time.perf_counter() - t
    t = time.perf_counter()
    rows += conditioning_report(specs, system, parts=("switch",))
    switch_s = time.perf_counter() - t
    t = time.perf_counter()
    a = propagation_matrix(specs[1], system)
    strongest_edges(a, 4 * n)
    np.histogram(a[np.triu_indices(n, 1)], bins=HIST_BINS)
    graph_s = time.perf_counter() - t
    modes = full_modes(model, system.x0)
    free = np.flatnonzero(~modes.rigid)
    t = time.perf_counter()
    landscape_slice(model, system.x0, modes.vectors[:, free[0]], modes.vectors[:, free[1]], 1, 1)
    landscape_s = time.perf_counter() - t
    return {
        "n": n,
        "load_before": load0,
        "load_after": os.getloadavg(),
        "grad_ms_per_frame": grad_ms,
        "conditioning_start_s": start_s,
        "conditioning_switch_s": switch_s,
        "conditioning_total_s": start_s + switch_s,
        "conditioning": [
            {
                "label": r.label,
                "seconds": round(r.seconds, 3),
                "kappa": r.kappa,
                "kappa_bulk": r.kappa_bulk,
                "median_abs": float(np.median(np.abs(r.values))),
                "rank": r.rank,
                "n_params": r.n_params,
                "n_negative": r.n_negative,
                "max_abs": float(np.abs(r.values).max()),
                "min_abs": float(np.abs(r.values).min()),
            }
            for r in rows
        ],
        "graph_s": graph_s,
        "landscape_s": landscape_s,
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[400])
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--part", choices=("projection", "views"), default="projection")
    args = ap.parse_args(argv)
    if args.part == "views":
        data = {"sizes": [bench_views(n) for n in args.sizes]}
        print(save_json("teaching_views", data))
        for r in data["sizes"]:
            print(r)
        return
    load0 = os.getloadavg()
    rows = [bench_size(n, args.steps, args.rounds) for n in args.sizes]
    data = {"load_before": load0, "load_after": os.getloadavg()}
    data["sizes"] = rows
    print(save_json("teaching", data))
    for r in rows:
        print({k: v for k, v in r.items() if k != "shares"})
        print(r["shares"])


if __name__ == "__main__":
    main()

"""Figure 5 at its own length (issue 14): folding Trp-cage from unfolded starts, resumable.

Curves (one per start, method, seed), AMBER ff14SB + OBC2 implicit solvent, all pairs:
  gd, cg, gnn-h10, gnn-h100, gnn-h300, gnn-h500   400,000 optimizer steps (or the plateau rule)
  md                                              OpenMM Langevin MD, 298 K, 1/ps, 2 fs,
                                                  800,000 steps (1.6 ns), HBond constraints
Starts: ../shared/data/pdb/2JOF_unfolded.pdb ("unfolded") and 2JOF_unfolded_T1000.pdb
("t1000"); the reference for the CA-RMSD is 2JOF_native.pdb (same atoms, same order).
The specs are engine.presets.fold_spec's (the workbench's fold preset): protein_spec's
optimizers (Adam, lr 4e-4, elementwise clip 0.01, CG and GNN anchored at x0 on the 120
lowest Hessian modes at x0) with, for these long runs: stopping rule "none", CG/GNN stage 1
for a fixed STAGE1_STEPS, the GNN with 2 graph layers (method.md: 2 for proteins) at hidden
10/100/300/500. GD and CG start from one fixed
structure with no randomness, so their seeds repeat one computation: they run
``--det-seeds`` seeds (default 1); the GNNs and MD run ``--seeds`` seeds (default 3).

Plateau rule (engine curves only; ``plateau``): checked at every segment end from step
PLATEAU_WINDOW on: the run ends "plateau" when over the last PLATEAU_WINDOW steps the best
energy fell by less than PLATEAU_DE kJ/mol AND the CA-RMSD to native stayed within a band
of PLATEAU_DRMSD nm. MD always runs its 800,000 steps (it samples, it does not converge).

Resumable: a curve advances in segments of SEGMENT steps; after each, its rows and segment
record go to bench/results/fold/<curve>.json and its state (engine: positions and the
stage-2 Adam state; MD: positions and velocities) to bench/results/fold/<curve>.npz, so a
later session (or another machine: each segment records which) continues where it stopped.
A CG/GNN curve's first segment runs to the switch, so checkpoints are always stage 2.
MD restarts draw a new Langevin random stream per segment (seed, segment index): the
trajectory is one valid Langevin trajectory, not bit-identical to an uninterrupted one.
Wall times exclude compilation and Context setup (as engine.run); CG/GNN curves are charged
their slow modes once (their second call, Hessian compilation excluded, as bench_protein).
Order: the unfinished curve with the least wall time so far goes next, so all curves reach
comparable wall times (the Figure-5 comparison) whenever a session stops.

Run (nice 19 on a shared machine):
  .venv/bin/python -m bench.bench_fold --measure            # per-step cost, projected total
  .venv/bin/python -m bench.bench_fold --budget-minutes 30  # advance curves for 30 minutes
  .venv/bin/python -m bench.bench_fold --report             # fold.json, fold.png
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import time
from pathlib import Path

import numpy as np

from engine import presets

from .common import RESULTS, machine

DATA = Path(os.environ.get("SLOWMODE_PDB_DIR", "/work/shared/data/pdb"))
NATIVE = "2JOF_native.pdb"
STARTS = {"unfolded": "2JOF_unfolded.pdb", "t1000": "2JOF_unfolded_T1000.pdb"}
HIDDEN = (10, 100, 300, 500)
METHODS = ("gd", "cg", *(f"gnn-h{h}" for h in HIDDEN), "md")
DETERMINISTIC = ("gd", "cg")
ENGINE_STEPS = 400_000
MD_STEPS = 800_000
CHUNK = presets.FOLD_CHUNK  # optimizer steps per jitted chunk
LOG_EVERY = 1000  # steps between logged rows (energy, CA-RMSD)
SEGMENT = 10_000  # steps between checkpoints
STAGE1_STEPS = presets.FOLD_STAGE1_STEPS  # CG/GNN stage 1 (fixed), then Adam on positions
GNN_LAYERS = presets.FOLD_GNN_LAYERS
PLATEAU_WINDOW = 100_000  # steps
PLATEAU_DE = 1.0  # kJ/mol
PLATEAU_DRMSD = 0.02  # nm
OUT = RESULTS / "fold"
COST = RESULTS / "fold_cost.json"
MODES_CACHE = Path("/tmp/bench_fold_modes")  # slow modes per start (recomputed per machine)


# ---- the curves ----------------------------------------------------------------------------
def key_of(start: str, method: str, seed: int) -> str:
    return f"{start}_{method}_s{seed}"


def blank_record(start: str, method: str, seed: int) -> dict:
    """The record of a curve not started yet (its first segment fills it in)."""
    return {"key": key_of(start, method, seed), "start": start, "method": method, "seed": seed}


def budget_of(method: str) -> int:
    return MD_STEPS if method == "md" else ENGINE_STEPS


def system_config(start: str):
    from engine import SystemConfig

    return SystemConfig(
        kind="protein",
        pdb=str(DATA / NATIVE),
        start=str(DATA / STARTS[start]),
        model="amber-obc2",
    )


def make_spec(start: str, method: str, seed: int):
    """The RunSpec of one curve: engine.presets.fold_spec (the workbench's fold preset) on
    ``start`` with the native as reference; MD's is the "openmm-md" spec."""
    from engine.presets import fold_spec

    base = "gnn" if method.startswith("gnn") else ("openmm-md" if method == "md" else method)
    hidden = int(method[5:]) if method.startswith("gnn") else 100
    return fold_spec(
        base, seed, pdb=str(DATA / NATIVE), start=str(DATA / STARTS[start]), hidden=hidden,
        max_steps=budget_of(method),
    ).replace(method_label=method, frame_every=10**7)  # fmt: skip


def plan(starts, methods, seeds: int, det_seeds: int) -> list[tuple[str, str, int]]:
    """(start, method, seed) of every curve, seed 0 of every start and method first."""
    out = [
        (st, m, s)
        for s in range(seeds)
        for st in starts
        for m in methods
        if s < (det_seeds if m in DETERMINISTIC else seeds)
    ]
    return sorted(out, key=lambda c: (c[2], list(starts).index(c[0]), list(methods).index(c[1])))


def plateau(steps, energies, rmsds, *, window=PLATEAU_WINDOW, de=PLATEAU_DE, drmsd=PLATEAU_DRMSD):
    """The plateau rule's verdict on logged rows (steps ascending): a message when over the
    last ``window`` steps the best energy fell by less than ``de`` and the CA-RMSD stayed in
    a band narrower than ``drmsd``; None otherwise (also before ``window`` steps)."""
    steps, e, r = (np.asarray(a, float) for a in (steps, energies, rmsds))
    if len(steps) < 2 or steps[-1] - steps[0] < window:
        return None
    inside = steps >= steps[-1] - window
    before = e[~inside]
    best_before = min(before.min(), e[inside][0]) if len(before) else e[inside][0]
    gain = best_before - e.min()
    band = r[inside].max() - r[inside].min()
    if gain < de and band < drmsd:
        return (
            f"plateau at step {int(steps[-1])}: best energy fell {gain:.3g} kJ/mol "
            f"(< {de:g}) and CA-RMSD stayed within {band:.3g} nm (< {drmsd:g}) over the last "
            f"{window:,} steps"
        )
    return None


def load_curve(key: str) -> dict | None:
    path = OUT / f"{key}.json"
    return json.loads(path.read_text()) if path.exists() else None


def save_curve(curve: dict, state: dict | None) -> None:
    """The curve's record, then its checkpoint (written to a temporary name first, so an
    interrupted write never leaves a record pointing at a half-written state)."""
    OUT.mkdir(parents=True, exist_ok=True)
    if state is not None:
        tmp = OUT / f"{curve['key']}.tmp.npz"
        np.savez_compressed(tmp, **state)
        tmp.replace(OUT / f"{curve['key']}.npz")
    tmp = OUT / f"{curve['key']}.json.tmp"
    tmp.write_text(json.dumps(curve, indent=1) + "\n")
    tmp.replace(OUT / f"{curve['key']}.json")


def finished(curve: dict | None) -> bool:
    return curve is not None and curve["status"] != "running"


def where_run() -> dict:
    """What a segment ran on: the code's commit, load average, the JAX backend and devices,
    the date."""
    import jax

    from .common import cpu_model, source_commit

    return {
        "commit": source_commit(),
        "cpu": cpu_model(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "cpu_count": os.cpu_count(),
        "loadavg": list(os.getloadavg()),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }


# ---- engine curves (GD, CG, GNN) -------------------------------------------------------------
class EngineCurves:
    """Compiled run parts per (start, method), kept for the whole process: a resumed curve in
    stage 2 reuses the start's compiled GD stage (same energy, same Adam)."""

    def __init__(self):
        self.systems, self.modes, self.parts = {}, {}, {}

    def system(self, start: str):
        from engine import build_system

        if start not in self.systems:
            self.systems[start] = build_system(system_config(start), 0)
        return self.systems[start]

    def slow_modes(self, start: str, spec):
        """The start's 120 slow modes: second call of two (Hessian compilation excluded)."""
        from engine import make_energy
        from engine.run import compute_modes

        if start in self.modes:
            return self.modes[start]
        system = self.system(start)
        path = MODES_CACHE / f"{start}_k{spec.reparam.n_modes}.pkl"
        if path.exists():
            modes = pickle.loads(path.read_bytes())
        else:
            model = make_energy(system, spec.energy)
            compute_modes(spec, system, model)
            modes = compute_modes(spec, system, model)
            MODES_CACHE.mkdir(parents=True, exist_ok=True)
            path.write_bytes(pickle.dumps(modes))
        self.modes[start] = modes
        return modes

    def stage2_parts(self, start: str):
        """(parts, step-0 state) of plain Adam on positions: every curve's stage 2."""
        from engine.run import init_run

        key = (start, "stage2")
        if key not in self.parts:
            spec = make_spec(start, "gd", 0)
            t = time.perf_counter()
            parts, state, first = init_run(spec, self.system(start))
            self.parts[key] = (parts, state, first, time.perf_counter() - t)
        return self.parts[key]

    def new_curve(self, start: str, method: str, seed: int):
        """(curve record, parts, state) of a curve at step 0, stage-1 parts compiled."""
        from engine.protein.measures import protein_metrics
        from engine.run import init_run

        spec = make_spec(start, method, seed)
        system = self.system(start)
        modes = self.slow_modes(start, spec) if spec.reparam.needs_modes else None
        if spec.reparam.kind == "none":  # GD: the start's compiled stage 2
            parts, state, first, setup_s = self.stage2_parts(start)
        else:
            t = time.perf_counter()
            parts, state, first = init_run(spec, system, modes)
            setup_s = time.perf_counter() - t
        metrics = protein_metrics(first.x, system)
        curve = {
            "key": key_of(start, method, seed),
            "start": start,
            "start_file": STARTS[start],
            "method": method,
            "seed": seed,
            "budget_steps": budget_of(method),
            "spec": spec.to_dict(),
            "status": "running",
            "message": "",
            "step": 0,
            "stage": state.schedule.stage,
            "switch_step": None,
            "modes_s": parts.timings["modes_s"],
            "init_s": parts.timings["init_s"],
            "wall_s": parts.timings["modes_s"] + parts.timings["init_s"],
            "e_start": first.energy,
            "rows": {"step": [0], "stage": [first.stage], "wall_time_s": [0.0],
                     "energy": [first.energy], "rmsd_ca": [metrics["rmsd_ca"]],
                     "q": [metrics.get("fraction_native_contacts", math.nan)]},
            "segments": [],
            "setup_s": [setup_s],
        }  # fmt: skip
        curve["rows"]["wall_time_s"][0] = curve["wall_s"]
        return curve, parts, state

    def segment(self, curve: dict, state_file: dict | None) -> dict:
        """Advance an engine curve by one segment (to the switch for a CG/GNN curve's first);
        returns its checkpoint arrays."""
        import jax
        import jax.numpy as jnp

        from engine.protein.measures import protein_metrics
        from engine.run import advance, apply_policy

        start, method, seed = curve["start"], curve["method"], curve["seed"]
        if state_file is None:
            curve_new, parts, state = self.new_curve(start, method, seed)
            curve.update(curve_new)
        else:
            parts, state0, _, setup_s = self.stage2_parts(start)
            curve["setup_s"].append(setup_s)
            x = jnp.asarray(state_file["x"], parts.dtype)
            leaves, tree = jax.tree_util.tree_flatten(parts.stages[2].tx.init(x))
            saved = [jnp.asarray(state_file[f"opt_{i}"]) for i in range(len(leaves))]
            opt_state = jax.tree_util.tree_unflatten(tree, saved)
            schedule = state0.schedule._replace(
                stage=2, stage_start=curve["switch_step"] or 0, switch_step=curve["switch_step"],
                e_start=curve["e_start"],
            )  # fmt: skip
            state = state0._replace(params=x, opt_state=opt_state, x=x, step=curve["step"],
                                    schedule=schedule)  # fmt: skip
        system = parts.system
        end = curve["step"] + SEGMENT
        if state.schedule.stage == 1:
            end = max(end, STAGE1_STEPS)  # checkpoints are stage 2 (small)
        end = min(end, curve["budget_steps"])
        rows, seg_start, where = curve["rows"], curve["step"], where_run()
        t0 = time.perf_counter()
        while state.step < end and state.schedule.status == "running":
            state, obs = advance(parts, state)
            state = apply_policy(parts, state, obs)
            if state.schedule.switch_step is not None and curve["switch_step"] is None:
                curve["switch_step"] = state.schedule.switch_step
            if state.step % LOG_EVERY == 0 or state.schedule.status != "running":
                m = protein_metrics(obs.x, system)
                rows["step"].append(state.step)
                rows["stage"].append(obs.stage)
                rows["wall_time_s"].append(curve["wall_s"] + time.perf_counter() - t0)
                rows["energy"].append(obs.energy)
                rows["rmsd_ca"].append(m["rmsd_ca"])
                rows["q"].append(m.get("fraction_native_contacts", math.nan))
        seconds = time.perf_counter() - t0
        curve["wall_s"] += seconds
        curve["step"], curve["stage"] = state.step, state.schedule.stage
        steps = state.step - seg_start
        curve["segments"].append({
            "from": seg_start, "to": state.step, "seconds": seconds,
            "ms_per_step": 1000 * seconds / max(steps, 1), **where,
            "loadavg_end": list(os.getloadavg()),
        })  # fmt: skip
        if state.schedule.status != "running":
            curve["status"], curve["message"] = state.schedule.status, state.schedule.message
        else:
            verdict = plateau(rows["step"], rows["energy"], rows["rmsd_ca"])
            if verdict:
                curve["status"], curve["message"] = "plateau", verdict
        assert state.schedule.stage == 2, "checkpoints hold stage-2 states only"
        leaves = jax.tree_util.tree_leaves(state.opt_state)
        out = {"x": np.asarray(state.x)}
        out.update({f"opt_{i}": np.asarray(v) for i, v in enumerate(leaves)})
        return out


# ---- OpenMM MD curves -------------------------------------------------------------------------
class MDCurves:
    def __init__(self, engine: EngineCurves):
        self.engine = engine
        self.systems = {}

    def context(self, start: str, seed: int):
        """(Context, integrator, platform name, setup seconds) with a Langevin random stream
        seeded by ``seed`` (OpenMM reads the seed when the Context is made, so one per
        segment; the HBond-constrained System is made once per start)."""
        import openmm

        from engine.protein.baseline import (
            MD_FRICTION,
            MD_TEMPERATURE,
            MD_TIMESTEP,
            best_platform,
            md_system,
        )

        t = time.perf_counter()
        if start not in self.systems:
            omm = self.engine.system(start).payload["openmm_system"]
            self.systems[start] = md_system(omm)
        integrator = openmm.LangevinMiddleIntegrator(MD_TEMPERATURE, MD_FRICTION, MD_TIMESTEP)
        integrator.setRandomNumberSeed(seed)
        platform = best_platform()
        context = openmm.Context(self.systems[start], integrator, platform)
        return context, integrator, platform.getName(), time.perf_counter() - t

    def segment(self, curve: dict, state_file: dict | None) -> dict:
        from engine.protein.baseline import MD_FRICTION, MD_TEMPERATURE, MD_TIMESTEP, gb_force_name
        from engine.protein.measures import protein_metrics

        start, seed = curve["start"], curve["seed"]
        system = self.engine.system(start)
        n_seg = len(curve.get("segments", []))
        # a new random stream per (seed, segment); 0 would mean "pick one at random"
        context, integrator, platform, setup_s = self.context(start, seed * 100_003 + n_seg + 1)
        if state_file is None:
            context.setPositions(np.asarray(system.x0, np.float64))
            context.applyConstraints(1e-6)
            context.setVelocitiesToTemperature(MD_TEMPERATURE, seed + 1)
            x, e = self._observe(context)
            m = protein_metrics(x, system)
            curve.update({
                "key": key_of(start, "md", seed), "start": start, "start_file": STARTS[start],
                "method": "md", "seed": seed, "budget_steps": MD_STEPS,
                "md": {"temperature_K": MD_TEMPERATURE, "timestep_ps": MD_TIMESTEP,
                       "friction_per_ps": MD_FRICTION, "constraints": "HBonds",
                       "platform": platform},
                "status": "running", "message": "", "step": 0, "stage": 2, "switch_step": None,
                "modes_s": 0.0, "init_s": 0.0, "wall_s": 0.0, "e_start": e,
                "rows": {"step": [0], "stage": [2], "wall_time_s": [0.0], "energy": [e],
                         "rmsd_ca": [m["rmsd_ca"]],
                         "q": [m.get("fraction_native_contacts", math.nan)]},
                "segments": [], "setup_s": [],
            })  # fmt: skip
        else:
            context.setPositions(state_file["x"])
            context.setVelocities(state_file["v"])
        curve["setup_s"].append(setup_s)
        rows, seg_start, where = curve["rows"], curve["step"], where_run()
        where["openmm_platform"] = platform
        # segments without it ran obc2.xml's CustomGBForce
        where["gb_force"] = gb_force_name(self.systems[start])
        end = min(curve["step"] + SEGMENT, MD_STEPS)
        step, t0 = curve["step"], time.perf_counter()
        while step < end:
            k = min(LOG_EVERY, end - step)
            integrator.step(k)
            step += k
            x, e = self._observe(context)
            m = protein_metrics(x, system)
            rows["step"].append(step)
            rows["stage"].append(2)
            rows["wall_time_s"].append(curve["wall_s"] + time.perf_counter() - t0)
            rows["energy"].append(e)
            rows["rmsd_ca"].append(m["rmsd_ca"])
            rows["q"].append(m.get("fraction_native_contacts", math.nan))
            if not math.isfinite(e):
                curve["status"], curve["message"] = "diverged", f"energy {e} at step {step}"
                break
        seconds = time.perf_counter() - t0
        curve["wall_s"] += seconds
        curve["step"] = step
        curve["segments"].append({
            "from": seg_start, "to": step, "seconds": seconds,
            "ms_per_step": 1000 * seconds / max(step - seg_start, 1), **where,
            "loadavg_end": list(os.getloadavg()),
        })  # fmt: skip
        if step >= MD_STEPS and curve["status"] == "running":
            curve["status"] = "done"
            curve["message"] = (
                f"{MD_STEPS:,} Langevin steps at {MD_TEMPERATURE:g} K "
                f"({MD_STEPS * MD_TIMESTEP / 1000:g} ns)"
            )
        state = context.getState(getPositions=True, getVelocities=True)
        return {
            "x": np.asarray(state.getPositions(asNumpy=True)._value, np.float64),
            "v": np.asarray(state.getVelocities(asNumpy=True)._value, np.float64),
        }

    @staticmethod
    def _observe(context):
        s = context.getState(getEnergy=True, getPositions=True)
        x = np.asarray(s.getPositions(asNumpy=True)._value, np.float64)
        return x, float(s.getPotentialEnergy()._value)


# ---- the session loop --------------------------------------------------------------------------
def segment_estimate_s(curve: dict | None, method: str) -> float:
    """Seconds the next segment is expected to take (its last segment's pace; a fresh
    curve: the measured per-step cost, else a guess that never starts past the budget)."""
    if curve and curve["segments"]:
        return SEGMENT * curve["segments"][-1]["ms_per_step"] / 1000
    cost = json.loads(COST.read_text())["ms_per_step"] if COST.exists() else {}
    c = cost.get(method, {})
    if method == "md":
        return SEGMENT * c.get("md", 20.0) / 1000 + 30.0  # + Context setup
    stage1 = min(SEGMENT, STAGE1_STEPS) if "stage1" in c else 0
    ms1, ms2 = c.get("stage1", 0.0), c.get("stage2", 10.0)
    return (stage1 * ms1 + (SEGMENT - stage1) * ms2) / 1000 + 60.0  # + compiling, modes


def collect(args) -> None:
    curves = plan(args.starts, args.methods, args.seeds, args.det_seeds)
    engine = EngineCurves()
    md = MDCurves(engine)
    t_start = time.perf_counter()
    deadline = t_start + 60 * args.budget_minutes
    while True:
        records = {c: load_curve(key_of(*c)) for c in curves}
        todo = [c for c in curves if not finished(records[c])]
        if not todo:
            print("all selected curves are finished", flush=True)
            return
        # the least wall time so far goes next (ties: plan order)
        c = min(todo, key=lambda c: (records[c] or {}).get("wall_s", 0.0))
        left = deadline - time.perf_counter()
        if segment_estimate_s(records[c], c[1]) > left:
            print(f"budget: {left:.0f} s left, next segment of {key_of(*c)} would not fit; "
                  "stopping", flush=True)  # fmt: skip
            return
        curve = records[c] or blank_record(*c)
        npz = OUT / f"{curve['key']}.npz"
        state_file = dict(np.load(npz)) if records[c] and npz.exists() else None
        runner = md if c[1] == "md" else engine
        state = runner.segment(curve, state_file)
        save_curve(curve, state)
        seg = curve["segments"][-1]
        r = curve["rows"]
        print(
            f"{curve['key']:22s} step {curve['step']:>7,}/{curve['budget_steps']:,} "
            f"E={r['energy'][-1]:9.1f} CA-RMSD={r['rmsd_ca'][-1]:.3f} nm "
            f"wall {curve['wall_s']:7.1f} s ({seg['ms_per_step']:.2f} ms/step, load "
            f"{seg['loadavg'][0]:.1f}) {curve['status']}",
            flush=True,
        )


# ---- per-step cost and the projection ---------------------------------------------------------
def measure(args) -> dict:
    """ms per step of every method on the first start (stage 1 and stage 2 apart; MD), after
    compilation, and the projected total time of the whole plan at that pace."""
    from engine.run import advance, init_run

    start = args.starts[0]
    engine = EngineCurves()
    out, load = {}, [list(os.getloadavg())]
    n_chunks = args.measure_chunks

    def pace(parts, state):
        state, _ = advance(parts, state)  # warm
        t = time.perf_counter()
        for _ in range(n_chunks):
            state, obs = advance(parts, state)
        return 1000 * (time.perf_counter() - t) / (n_chunks * CHUNK)

    for method in [m for m in args.methods if m != "md"]:
        spec = make_spec(start, method, 0)
        if method == "gd":
            parts, state, _, _ = engine.stage2_parts(start)
            out[method] = {"stage2": pace(parts, state)}
        else:
            modes = engine.slow_modes(start, spec)
            parts, state, _ = init_run(spec, engine.system(start), modes)
            out[method] = {"stage1": pace(parts, state), "modes_s": modes.seconds}
            out[method]["stage2"] = out.get("gd", {}).get("stage2") or pace(
                *engine.stage2_parts(start)[:2]
            )
        load.append(list(os.getloadavg()))
        print(method, {k: round(v, 3) for k, v in out[method].items()}, flush=True)
    if "md" in args.methods:
        context, integrator, platform, _ = MDCurves(engine).context(start, 1)
        system = engine.system(start)
        context.setPositions(np.asarray(system.x0, np.float64))
        context.applyConstraints(1e-6)
        context.setVelocitiesToTemperature(298.0, 1)
        integrator.step(100)
        t = time.perf_counter()
        integrator.step(n_chunks * CHUNK)
        context.getState(getEnergy=True)
        out["md"] = {"md": 1000 * (time.perf_counter() - t) / (n_chunks * CHUNK),
                     "platform": platform}  # fmt: skip
        load.append(list(os.getloadavg()))
        print("md", out["md"], flush=True)
    projection = project(out, args)
    data = {
        "machine": machine(),
        "loadavg_during": load,
        "start": start,
        "steps_timed": n_chunks * CHUNK,
        "ms_per_step": out,
        "projection": projection,
        "note": "measured under the load given (2 shared cores, nice 19): a lower bound on "
        "speed when others run, an idle machine is faster",
    }
    COST.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(projection, indent=1))
    return data


def project(cost: dict, args) -> dict:
    """Projected seconds per curve and in total for the whole plan: both starts, the
    methods and seeds of ``args`` (whatever start the cost was measured on)."""
    per_curve = {}
    for method, c in cost.items():
        if method == "md":
            per_curve[method] = MD_STEPS * c["md"] / 1000
        elif "stage1" in c:
            per_curve[method] = (
                c["modes_s"]
                + STAGE1_STEPS * c["stage1"] / 1000
                + (ENGINE_STEPS - STAGE1_STEPS) * c["stage2"] / 1000
            )
        else:
            per_curve[method] = ENGINE_STEPS * c["stage2"] / 1000
    curves = plan(list(STARTS), args.methods, args.seeds, args.det_seeds)
    total = sum(per_curve[m] for _, m, _ in curves if m in per_curve)
    return {
        "seconds_per_curve": per_curve,
        "curves": len(curves),
        "total_s": total,
        "total_h": total / 3600,
        "plateau_rule_can_shorten": True,
    }


# ---- report: fold.json and the figure -------------------------------------------------------
COLORS = {"gd": "#d62728", "cg": "#2ca02c", "gnn-h10": "#9ecae1", "gnn-h100": "#4292c6",
          "gnn-h300": "#2171b5", "gnn-h500": "#08306b", "md": "#000000"}  # fmt: skip


def at_wall_time(curve: dict, seconds: float, column: str) -> float:
    """``column`` of the last row logged at or before ``seconds`` of wall time (nan if the
    curve has not run that long). Before its first row (a CG/GNN curve's is logged after its
    slow modes) the curve still stands at its start, row 0."""
    t = np.asarray(curve["rows"]["wall_time_s"])
    if not len(t) or t[-1] < seconds:
        return math.nan
    return float(curve["rows"][column][max(np.searchsorted(t, seconds, "right") - 1, 0)])


def report() -> dict:
    """fold.json, fold.png and the Figure-5 tables in docs/benchmarks-protein.md."""
    from .common import replace_marked, save_json

    curves = [json.loads(p.read_text()) for p in sorted(OUT.glob("*.json"))]
    data = summarize(curves)
    save_json("fold", data)
    plot(curves, data["partial"])
    if DOC_PATH.exists() and f"<!-- {DOC_MARK}:start -->" in DOC_PATH.read_text():
        replace_marked(DOC_PATH, DOC_MARK, doc_tables(data))
    return data


def machine_of(segment: dict) -> str:
    """Where a segment ran: JAX backend[/OpenMM platform and its OBC2 kernel][ on CPU model]
    (the CPU model is recorded since session 12; the kernel since session 13, before which MD
    ran obc2.xml's CustomGBForce)."""
    out = segment["backend"]
    if "openmm_platform" in segment:
        out += f"/{segment['openmm_platform']} {segment.get('gb_force', 'CustomGBForce')}"
    return out + (f" on {segment['cpu']}" if segment.get("cpu") else "")


def summarize(curves: list[dict]) -> dict:
    """The summary of curve records: one row per curve, partial when any is still running."""
    table = []
    md = {(c["start"], c["seed"]): c for c in curves if c["method"] == "md"}
    for c in curves:
        r = c["rows"]
        row = {
            "curve": c["key"], "start": c["start"], "method": c["method"], "seed": c["seed"],
            "status": c["status"], "message": c["message"], "steps": c["step"],
            "budget_steps": c["budget_steps"], "fraction_done": c["step"] / c["budget_steps"],
            "wall_s": c["wall_s"], "modes_s": c["modes_s"],
            "rmsd_ca_start": r["rmsd_ca"][0], "rmsd_ca_end": r["rmsd_ca"][-1],
            "rmsd_ca_min": min(r["rmsd_ca"]), "energy_start": r["energy"][0],
            "energy_end": r["energy"][-1], "energy_min": min(r["energy"]),
            "q_end": r["q"][-1],
            "machines": sorted({machine_of(s) for s in c["segments"]}),
            "commits": sorted({s.get("commit") or "not recorded" for s in c["segments"]}),
            "loadavg_mean": float(np.mean([s["loadavg"][0] for s in c["segments"]]))
            if c["segments"] else math.nan,
            "ms_per_step_last": c["segments"][-1]["ms_per_step"] if c["segments"] else math.nan,
        }  # fmt: skip
        ref = md.get((c["start"], c["seed"])) or md.get((c["start"], 0))
        if c["method"] != "md" and ref:
            row["md_rmsd_ca_at_same_wall"] = at_wall_time(ref, c["wall_s"], "rmsd_ca")
            row["md_energy_at_same_wall"] = at_wall_time(ref, c["wall_s"], "energy")
        table.append(row)
    partial = any(c["status"] == "running" for c in curves)
    data = {
        "partial": partial,
        "by_method": by_method(table),
        "race": race(curves),
        "what": "Figure 5 (issue 14): CA-RMSD to 2JOF_native and AMBER14+OBC2 energy against "
        "step and wall time; see bench/bench_fold.py's docstring for the protocol",
        "settings": {"engine_steps": ENGINE_STEPS, "md_steps": MD_STEPS, "chunk": CHUNK,
                     "log_every": LOG_EVERY, "segment": SEGMENT, "stage1_steps": STAGE1_STEPS,
                     "gnn_layers": GNN_LAYERS, "hidden": HIDDEN,
                     "plateau": {"window_steps": PLATEAU_WINDOW, "de_kj_mol": PLATEAU_DE,
                                 "drmsd_nm": PLATEAU_DRMSD}},
        "cost": json.loads(COST.read_text()) if COST.exists() else None,
        "table": table,
        "continue_with": "nice -n 19 .venv/bin/python -m bench.bench_fold --budget-minutes N "
        "&& .venv/bin/python -m bench.bench_fold --report",
    }  # fmt: skip
    return data


def by_method(table: list[dict]) -> list[dict]:
    """Per start and method, over its seeds: end CA-RMSD, wall time, energy, and MD's CA-RMSD
    at each seed's wall time (mean, min, max); "finished" counts seeds done or on a plateau."""
    out = []
    for start in STARTS:
        for m in METHODS:
            rows = [r for r in table if r["start"] == start and r["method"] == m]
            if not rows:
                continue
            entry = {"start": start, "method": m, "seeds": len(rows),
                     "finished": sum(r["status"] != "running" for r in rows)}  # fmt: skip
            for col in ("rmsd_ca_end", "rmsd_ca_min", "wall_s", "steps", "energy_end",
                        "md_rmsd_ca_at_same_wall"):  # fmt: skip
                stat = spread([r.get(col, math.nan) for r in rows])
                if stat:
                    entry[col] = stat
            out.append(entry)
    return out


def spread(values) -> dict:
    """Mean, min and max of the values that are not NaN ({} when none is)."""
    v = np.asarray(values, float)
    v = v[~np.isnan(v)]
    if not len(v):
        return {}
    return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())}


RACE_WALLS_S = (30, 100, 300, 1000, 1500, 3000, 8000)  # the race's checkpoints (s of wall time)


def race(curves: list[dict]) -> list[dict]:
    """Figure 5's question read at fixed wall times: per start and method, the CA-RMSD at
    each of RACE_WALLS_S over the seeds that have run that long or have ended (mean, min,
    max, seeds): a curve that ended (budget or plateau) stays where it ended, and a running
    one is compared only where it has run."""

    def held(curve: dict, seconds: float) -> float:
        value = at_wall_time(curve, seconds, "rmsd_ca")
        if math.isnan(value) and curve.get("status", "running") != "running":
            return curve["rows"]["rmsd_ca"][-1]
        return value

    out = []
    for start in STARTS:
        for m in METHODS:
            mine = [c for c in curves if c["start"] == start and c["method"] == m]
            if not mine:
                continue
            at = {}
            for w in RACE_WALLS_S:
                ran = [held(c, w) for c in mine]
                ran = [x for x in ran if not math.isnan(x)]
                if ran:
                    at[str(w)] = {"seeds": len(ran), **spread(ran)}
            out.append({"start": start, "method": m, "seeds": len(mine), "rmsd_ca_at_wall": at})
    return out


DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "benchmarks-protein.md"
DOC_MARK = "fold"


def doc_tables(data: dict) -> str:
    """The per-step cost and per-curve tables of docs/benchmarks-protein.md (Figure 5)."""
    out = []
    cost = data.get("cost")
    if cost:
        load = ", ".join(f"{v[0]:.1f}" for v in cost["loadavg_during"])
        out += [
            f"Per-step cost (`--measure`, start {cost['start']}, {cost['steps_timed']} steps "
            f"each after compilation; 1-min load average during it: {load} on "
            f"{cost['machine']['cpu_count']} cores, nice 19; backend "
            f"{', '.join(cost['machine']['devices'])}):",
            "",
            "| method | stage 1 ms/step | stage 2 ms/step | slow modes s | projected s per curve |",
            "|---|---|---|---|---|",
        ]
        per = cost["projection"]["seconds_per_curve"]
        for m, c in cost["ms_per_step"].items():
            s1 = f"{c['stage1']:.2f}" if "stage1" in c else "–"
            s2 = f"{c['stage2']:.2f}" if "stage2" in c else f"{c['md']:.2f} (MD)"
            modes = f"{c['modes_s']:.1f}" if "modes_s" in c else "–"
            out.append(f"| {m} | {s1} | {s2} | {modes} | {per[m]:,.0f} |")
        p = cost["projection"]
        out += ["", f"Projected total for the plan ({p['curves']} curves): {p['total_s']:,.0f} s "
                f"= {p['total_h']:.1f} h of one process at that pace (the plateau rule can "
                "only shorten it).", ""]  # fmt: skip
    out += [
        "Per method over its seeds (mean [min, max]; MD's CA-RMSD is read at each seed's own wall "
        "time, from the MD run of the same seed):",
        "",
        "| start | method | seeds (finished) | steps | wall s | CA-RMSD end nm | "
        "lowest on the way | E end kJ/mol | MD CA-RMSD at same wall |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def span(v, fmt):  # a {mean, min, max} statistic, or None
        if v is None:
            return "–"
        if v["min"] == v["max"]:
            return format(v["mean"], fmt)
        return f"{format(v['mean'], fmt)} [{format(v['min'], fmt)}, {format(v['max'], fmt)}]"

    for e in data["by_method"]:
        out.append(
            f"| {e['start']} | {e['method']} | {e['seeds']} ({e['finished']}) | "
            f"{span(e.get('steps'), ',.0f')} | {span(e.get('wall_s'), ',.0f')} | "
            f"{span(e.get('rmsd_ca_end'), '.3f')} | {span(e.get('rmsd_ca_min'), '.3f')} | "
            f"{span(e.get('energy_end'), '.0f')} | "
            f"{span(e.get('md_rmsd_ca_at_same_wall'), '.3f')} |"
        )
    out += [
        "",
        "The race at fixed wall times: CA-RMSD to native (nm), mean [min, max] over the seeds "
        "that have run that long or have ended, an ended curve standing where it ended (their "
        "number after ×; – where none has):",
        "",
        "| start | method | " + " | ".join(f"{w:,} s" for w in RACE_WALLS_S) + " |",
        "|---|---|" + "---|" * len(RACE_WALLS_S),
    ]
    for e in data["race"]:
        cells = []
        for w in RACE_WALLS_S:
            v = e["rmsd_ca_at_wall"].get(str(w))
            cells.append("–" if v is None else f"{span(v, '.3f')} ×{v['seeds']}")
        out.append(f"| {e['start']} | {e['method']} | " + " | ".join(cells) + " |")
    out += [
        "",
        "| curve | status | steps done / budget | wall s | machine | load | CA-RMSD nm "
        "start → now (min) | E kJ/mol start → now (min) | Q now | MD CA-RMSD at same wall |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(data["table"], key=lambda r: (r["start"], r["seed"], r["method"])):
        md = r.get("md_rmsd_ca_at_same_wall")
        md_s = "–" if md is None else ("not reached" if md != md else f"{md:.3f}")
        out.append(
            f"| {r['curve']} | {r['status']} | {r['steps']:,} / {r['budget_steps']:,} | "
            f"{r['wall_s']:.0f} | {'+'.join(r['machines'])} | {r['loadavg_mean']:.1f} | "
            f"{r['rmsd_ca_start']:.3f} → {r['rmsd_ca_end']:.3f} ({r['rmsd_ca_min']:.3f}) | "
            f"{r['energy_start']:.0f} → {r['energy_end']:.0f} ({r['energy_min']:.0f}) | "
            f"{r['q_end']:.2f} | {md_s} |"
        )
    return "\n".join(out)


MINIMIZERS = tuple(m for m in METHODS if m != "md")
WALL_FROM_S = 10.0  # wall-time axes start here: before it nothing has moved (modes, stage 1)


def on_grid(curves: list[dict], x: str, y: str, grid: np.ndarray) -> np.ndarray:
    """Each curve's ``y`` interpolated onto ``grid`` of ``x`` [curves, grid], NaN outside the
    x range it has run (a partial curve does not extend its last value)."""
    out = np.full((len(curves), len(grid)), np.nan)
    for k, c in enumerate(curves):
        xs, ys = np.asarray(c["rows"][x], float), np.asarray(c["rows"][y], float)
        inside = (grid >= xs[0]) & (grid <= xs[-1])
        out[k, inside] = np.interp(grid[inside], xs, ys)
    return out


def seed_band(curves: list[dict], x: str, y: str, grid: np.ndarray):
    """Mean over the seeds where every seed has run, and the seeds' min-max band there."""
    ys = on_grid(curves, x, y, grid)
    full = ~np.isnan(ys).any(axis=0)
    mean, lo, hi = (np.where(full, f(np.where(np.isnan(ys), 0, ys), axis=0), np.nan)
                    for f in (np.mean, np.min, np.max))  # fmt: skip
    return mean, lo, hi


def plot(curves: list[dict], partial: bool) -> None:
    """fold.png. Per start, row 1: CA-RMSD and energy against step and wall time (log), each
    method's mean over its seeds with the seeds' min-max band; row 2: one panel per
    minimizer, its seeds against the MD seeds' band, CA-RMSD against wall time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    starts = [s for s in STARTS if any(c["start"] == s for c in curves)]
    if not starts:
        return
    ncol = len(MINIMIZERS)
    fig, axes = plt.subplots(2 * len(starts), ncol, figsize=(3.3 * ncol, 7.6 * len(starts)),
                             squeeze=False)  # fmt: skip
    for i, start in enumerate(starts):
        mine = [c for c in curves if c["start"] == start]
        groups = {m: [c for c in mine if c["method"] == m] for m in METHODS}
        groups = {m: cs for m, cs in groups.items() if cs}
        top = axes[2 * i]
        for ax in top[4:]:
            ax.axis("off")
        t_max = max(max(c["rows"]["wall_time_s"]) for c in mine)
        grids = {"step": np.arange(0, max(c["step"] for c in mine) + 1, LOG_EVERY, dtype=float),
                 "wall_time_s": np.geomspace(WALL_FROM_S, t_max, 600)}  # fmt: skip
        panels = [("step", "rmsd_ca"), ("wall_time_s", "rmsd_ca"),
                  ("step", "energy"), ("wall_time_s", "energy")]  # fmt: skip
        for ax, (x, y) in zip(top, panels, strict=False):
            for m, cs in groups.items():
                mean, lo, hi = seed_band(cs, x, y, grids[x])
                label = f"{m} ({len(cs)} seed{'s' if len(cs) > 1 else ''})"
                ax.plot(grids[x], mean, color=COLORS[m], lw=1.4, label=label)
                if len(cs) > 1:
                    ax.fill_between(grids[x], lo, hi, color=COLORS[m], alpha=0.15, lw=0)
            ax.set_xlabel("step" if x == "step" else "wall time (s, log)")
            ax.set_ylabel("CA-RMSD to native (nm)" if y == "rmsd_ca" else "energy (kJ/mol)")
            if x == "wall_time_s":
                ax.set_xscale("log")
                ax.set_xlim(left=WALL_FROM_S)
            else:
                ax.xaxis.set_major_formatter(lambda v, _: f"{v / 1000:g}k")
            ax.set_title(f"{STARTS[start]}: {'CA-RMSD' if y == 'rmsd_ca' else 'energy'}",
                         fontsize=9)  # fmt: skip
            if y == "energy":
                # the start (+884 kJ/mol) and CG's stage 1 would squash the rest
                late = [e for c in mine for s, e in zip(c["rows"]["step"], c["rows"]["energy"],
                        strict=True) if s > STAGE1_STEPS]  # fmt: skip
                if late:
                    ax.set_ylim(min(late) - 40, max(late) + 40)
                ax.set_title(f"{STARTS[start]}: energy after step {STAGE1_STEPS:,}", fontsize=9)
            ax.grid(alpha=0.3)
        handles, labels = top[0].get_legend_handles_labels()
        top[4].legend(
            handles,
            labels,
            loc="center left",
            fontsize=8,
            title="mean of the seeds where all have run;\nband: the seeds' min-max",
        )
        md = groups.get("md", [])
        for ax, m in zip(axes[2 * i + 1], MINIMIZERS, strict=True):
            if md:
                _, lo, hi = seed_band(md, "wall_time_s", "rmsd_ca", grids["wall_time_s"])
                ax.fill_between(grids["wall_time_s"], lo, hi, color="k", alpha=0.15, lw=0,
                                label=f"MD 298 K, {len(md)} seeds: min-max")  # fmt: skip
            for c in groups.get(m, []):
                r = c["rows"]
                ax.plot(
                    r["wall_time_s"],
                    r["rmsd_ca"],
                    color=COLORS[m],
                    lw=1.0,
                    label=f"seed {c['seed']}: {c['step']:,} steps, {c['status']}",
                )
            ax.set_xscale("log")
            ax.set_xlim(left=WALL_FROM_S)
            ax.set_title(f"{m}: CA-RMSD against wall time", fontsize=9)
            ax.set_xlabel("wall time (s, log)")
            ax.set_ylabel("CA-RMSD to native (nm)")
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=6)
            else:
                ax.text(0.5, 0.5, "not started yet", ha="center", transform=ax.transAxes)
    for ax in axes.flat:
        if ax.get_xscale() == "log":  # minor labels collide on a short range (one decade)
            ax.xaxis.set_minor_formatter(NullFormatter())
    title = "Figure 5: Trp-cage, GD / CG / GNN (hidden 10-500) vs OpenMM MD 298 K (black)"
    if partial:
        title += "  —  PARTIAL: curves still running (see fold.json fraction_done)"
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(RESULTS / "fold.png", dpi=80)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--starts", default="unfolded,t1000")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--det-seeds", type=int, default=1)
    p.add_argument("--budget-minutes", type=float, default=30.0)
    p.add_argument("--measure", action="store_true", help="per-step cost and projected total")
    p.add_argument("--measure-chunks", type=int, default=10)
    p.add_argument("--report", action="store_true", help="write fold.json and fold.png only")
    args = p.parse_args(argv)
    args.starts = [s for s in args.starts.split(",") if s]
    args.methods = [m for m in args.methods.split(",") if m]
    for s in args.starts:
        if s not in STARTS:
            p.error(f"--starts: {s!r} is not one of {', '.join(STARTS)}")
    for m in args.methods:
        if m not in METHODS:
            p.error(f"--methods: {m!r} is not one of {', '.join(METHODS)}")
    if not 0 < args.budget_minutes <= 24 * 60:
        p.error("--budget-minutes must be in (0, 1440]")
    if args.measure:
        measure(args)
    elif args.report:
        report()
    else:
        collect(args)
        report()


if __name__ == "__main__":
    main()

"""Command line: ``python -m engine {run,compare,modes}``.

Bad arguments print one line naming the argument and the accepted range and exit with 2.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

from . import analysis, io
from .config import (
    PROPAGATIONS,
    EnergyConfig,
    ModesConfig,
    OptimConfig,
    ReparamConfig,
    RunSpec,
    ScheduleConfig,
    SpecError,
    SystemConfig,
)
from .presets import METHOD_KIND, PRESETS, improved_spec, paper_spec

METHODS = ("gd", "cg", "gnn", "openmm-min", "openmm-md")
SYSTEMS = ("bond-lj-loop", "lj-loop", "protein")

# spec field -> CLI flag, so that validation errors name what the user typed
FLAGS = {
    "system.kind": "--system",
    "system.n": "--n",
    "system.loop_stride": "--loop-stride",
    "system.loop_strength": "--loop-strength",
    "system.init_scale": "--init-scale",
    "system.pdb": "--pdb",
    "system.start": "--start",
    "system.model": "--model",
    "energy.lj_eps": "--lj-eps",
    "energy.soft_core": "--soft-core",
    "energy.repulsion": "--repulsion",
    "energy.cutoff": "--cutoff",
    "energy.dtype": "--dtype",
    "modes.method": "--modes",
    "modes.at": "--modes-at",
    "modes.solver": "--solver",
    "reparam.n_modes": "--k",
    "reparam.hidden": "--hidden",
    "reparam.n_layers": "--layers",
    "reparam.activation": "--activation",
    "reparam.propagation": "--propagation",
    "reparam.residual": "--residual",
    "reparam.anchor": "--anchor",
    "optim.name": "--optimizer",
    "optim.learning_rate": "--lr",
    "optim.stage1_lr": "--stage1-lr",
    "optim.clip": "--clip",
    "optim.clip_value": "--clip-value",
    "schedule.max_steps": "--steps",
    "schedule.stopping": "--stopping",
    "schedule.patience": "--patience",
    "schedule.min_delta": "--min-delta",
    "schedule.switch": "--switch",
    "seed": "--seed",
    "chunk_size": "--chunk",
    "frame_every": "--frame-every",
}


class UsageError(Exception):
    """One-line usage error; exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + message; we want one clear line
        raise UsageError(message)


def _positive_int(name):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        return value

    return parse


def _add_spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--system", choices=SYSTEMS, default="lj-loop")
    p.add_argument(
        "--n", type=_positive_int("--n"), default=400, help="beads in a loop system (50-4000)"
    )
    p.add_argument("--seed", type=_positive_int("--seed"), default=0)
    p.add_argument(
        "--steps", type=_positive_int("--steps"), default=20000, help="total step budget"
    )
    p.add_argument(
        "--paper", action="store_true", help="the reference protocol and best hyperparameters"
    )
    p.add_argument(
        "--improved", action="store_true", help="paper hyperparameters on the fixed energy"
    )
    p.add_argument("--config", help="config.json of a bundle (or a spec JSON) to re-run")
    p.add_argument("--loop-stride", type=int, default=10)
    p.add_argument("--loop-strength", type=float, default=0.1)
    p.add_argument("--init-scale", type=float, default=1.0)
    p.add_argument("--pdb", help="protein: file path, 4-letter PDB id, or 'villin'")
    p.add_argument("--sequence", help="protein: one-letter sequence")
    p.add_argument(
        "--start", default="native", help="protein start: native, extended, random or a PDB path"
    )
    p.add_argument(
        "--model", default="amber-obc2", help="protein energy model: amber-obc2 or residue"
    )
    p.add_argument("--lj-eps", type=float, default=1e-2)
    p.add_argument("--soft-core", choices=("reference", "monotone"), default="reference")
    p.add_argument(
        "--repulsion", choices=("all-pairs", "random-subset", "cutoff"), default="all-pairs"
    )
    p.add_argument("--cutoff", type=float, default=3.0)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--modes", choices=("block-laplacian", "hessian"), default="block-laplacian")
    p.add_argument("--modes-at", choices=("samples", "x0", "minimum"), default="samples")
    p.add_argument("--solver", choices=("auto", "dense", "iterative"), default="auto")
    p.add_argument("--k", type=int, default=None, help="number of slow modes (default n/4)")
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--activation", choices=("tanh", "relu", "leaky_relu", "silu"), default="tanh")
    p.add_argument("--propagation", choices=PROPAGATIONS, default="psi")
    p.add_argument("--residual", choices=("none", "concat"), default="none")
    p.add_argument("--fit-x0", action="store_true", help="fit the GNN to x0 before optimizing")
    p.add_argument(
        "--anchor",
        choices=("none", "x0"),
        default="none",
        help="x0: displacement form x = x0 + f(params) - f(params0), starts exactly at x0",
    )
    p.add_argument("--optimizer", choices=("adam", "sgd", "fire"), default="adam")
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--stage1-lr", type=float, default=None)
    p.add_argument(
        "--clip",
        choices=("elementwise", "global-norm", "max-displacement", "none"),
        default="elementwise",
    )
    p.add_argument("--clip-value", type=float, default=0.1)
    p.add_argument("--stopping", choices=("reference", "relative", "none"), default="reference")
    p.add_argument("--patience", type=int, default=20)
    p.add_argument("--min-delta", type=float, default=1e-6)
    p.add_argument("--switch", choices=("early-stop", "fixed", "never"), default="early-stop")
    p.add_argument("--chunk", type=int, default=20, help="steps per jitted chunk (= log interval)")
    p.add_argument("--frame-every", type=int, default=100)
    p.add_argument("--trajectory", action="store_true", help="also write trajectory.pdb")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m engine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p_run = sub.add_parser("run", help="run one method and write a bundle")
    _add_spec_args(p_run)
    p_run.add_argument("--method", choices=METHODS, default="gd")
    p_run.add_argument("--out", required=True, help="bundle directory")
    p_cmp = sub.add_parser("compare", help="run several methods from the same start and seed")
    _add_spec_args(p_cmp)
    p_cmp.add_argument(
        "--methods", default="gd,cg,gnn", help="comma-separated: gd,cg,gnn[,openmm-min,...]"
    )
    p_cmp.add_argument(
        "--preset", choices=sorted(PRESETS), help="compare the specs of a named preset"
    )
    p_cmp.add_argument(
        "--reach",
        type=float,
        default=None,
        help="energy threshold for time-to-reach (default: GD's final energy)",
    )
    p_cmp.add_argument("--out", required=True, help="directory for one bundle per method + summary")
    p_modes = sub.add_parser(
        "modes", help="print the lowest K slow-mode eigenvalues and the time taken"
    )
    _add_spec_args(p_modes)
    p_modes.add_argument("--K", "--k-modes", dest="n_modes", type=int, default=20)
    return parser


def spec_from_args(args, method: str) -> RunSpec:
    """Build and validate the RunSpec for ``method`` from parsed arguments."""
    if args.config:
        data = io.read_json(args.config)
        spec = RunSpec.from_dict(data.get("spec", data))
        return spec.replace(method_label=spec.method_label)
    label = method
    if method not in METHOD_KIND:  # OpenMM baselines: the spec describes system and logging only
        method = "gd"
    if args.paper or args.improved:
        if args.system == "protein":
            raise SpecError("--paper", "applies to loop systems only")
        make = improved_spec if args.improved else paper_spec
        return make(args.system, args.n, method, args.seed, max_steps=args.steps)
    return RunSpec(
        system=SystemConfig(
            kind=args.system,
            n=args.n,
            loop_stride=args.loop_stride,
            loop_strength=args.loop_strength,
            init_scale=args.init_scale,
            pdb=args.pdb,
            sequence=args.sequence,
            start=args.start,
            model=args.model,
        ),
        energy=EnergyConfig(
            lj_eps=args.lj_eps,
            soft_core=args.soft_core,
            repulsion=args.repulsion,
            cutoff=args.cutoff,
            dtype=args.dtype,
        ),
        modes=ModesConfig(method=args.modes, at=args.modes_at, solver=args.solver),
        reparam=ReparamConfig(
            kind=METHOD_KIND[method],
            n_modes=args.k,
            hidden=args.hidden,
            n_layers=args.layers,
            activation=args.activation,
            propagation=args.propagation,
            residual=args.residual,
            fit_to_x0=args.fit_x0,
            anchor=args.anchor,
        ),
        optim=OptimConfig(
            name=args.optimizer,
            learning_rate=args.lr,
            stage1_lr=args.stage1_lr,
            clip=args.clip,
            clip_value=args.clip_value,
        ),
        schedule=ScheduleConfig(
            max_steps=args.steps,
            stage1_max_steps=max(1, args.steps // 2),
            stopping=args.stopping,
            patience=args.patience,
            min_delta=args.min_delta,
            switch=args.switch,
        ),
        seed=args.seed,
        chunk_size=args.chunk,
        frame_every=args.frame_every,
        method_label=label,
    )


class _ProgressBar:
    """tqdm bar over the step budget, with energy and stage in the postfix."""

    def __init__(self, total: int, label: str, quiet: bool):
        from tqdm import tqdm

        self.bar = (
            None
            if quiet
            else tqdm(total=total, desc=label, unit="step", file=sys.stderr, leave=True)
        )
        self.last = 0

    def __call__(self, progress) -> None:
        if self.bar is None:
            return
        self.bar.update(max(0, min(progress.step, self.bar.total) - self.last))
        self.last = min(progress.step, self.bar.total)
        self.bar.set_postfix(E=f"{progress.energy:.5g}", stage=progress.stage, refresh=False)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _run_one(spec: RunSpec, method: str, out, args, *, system=None, modes=None):
    from .run import run
    from .systems import build_system

    system = system or build_system(spec.system, spec.seed)  # input errors before any progress bar
    bar = _ProgressBar(spec.schedule.max_steps, method, args.quiet)
    try:
        if method.startswith("openmm"):
            from .protein.baseline import run_openmm_result

            result = run_openmm_result(spec, method, on_progress=bar, system=system)
        else:
            result = run(spec, on_progress=bar, system=system, modes=modes)
    finally:
        bar.close()
    io.write_bundle(result, out, trajectory=args.trajectory)
    return result


def cmd_run(args) -> int:
    spec = spec_from_args(args, args.method)
    result = _run_one(spec, args.method, args.out, args)
    s = result.summary()
    print(
        f"{args.method}: {result.status} ({result.message}); final energy {s['final_energy']:.6g} "
        f"{result.system.energy_unit}, {s['steps']} steps, {s['wall_time_s']:.2f} s -> {args.out}"
    )
    return 0


def summary_table(results: dict, reach: float | None) -> tuple[list[dict], float]:
    """One row per method: final/best energy, time, steps, time and steps to reach ``reach``.

    The default threshold is ``analysis.default_threshold``: GD's final energy plus 1 % of its
    magnitude, else the worst finite final energy among the methods.
    """
    finals = {m: analysis.final_value(r.metrics["energy"]) for m, r in results.items()}
    if reach is None:
        reach = analysis.default_threshold(finals, base="gd")
    rows = []
    for method, result in results.items():
        s = result.summary()
        m = result.metrics
        hit = (
            None
            if reach is None
            else analysis.first_reach(m["energy"], reach, m["step"], m["wall_time_s"])
        )
        t_reach, s_reach = (math.nan, math.nan) if hit is None else (hit.time_s, hit.step)
        rows.append(
            {
                "method": method,
                "status": result.status,
                "final_energy": s["final_energy"],
                "best_energy": s["best_energy"],
                "wall_time_s": s["wall_time_s"],
                "steps": s["steps"],
                "modes_s": s["modes_s"],
                "time_to_reach_s": t_reach,
                "steps_to_reach": s_reach,
            }
        )
    return rows, reach


def cmd_compare(args) -> int:
    from pathlib import Path

    from .run import compute_modes
    from .systems import build_system, make_energy

    if args.preset:
        specs = {s.label: s.replace(seed=args.seed) for s in PRESETS[args.preset][1]}
    else:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        bad = [m for m in methods if m not in METHODS]
        if bad or not methods:
            raise UsageError(
                "argument --methods: each must be one of "
                f"{', '.join(METHODS)}; got {args.methods!r}"
            )
        specs = {m: spec_from_args(args, m) for m in methods}
    first = next(iter(specs.values()))
    system = build_system(first.system, first.seed)  # one start shared by every method
    results = {}
    shared_modes = {}
    for method, spec in specs.items():
        modes = None
        if spec.reparam.needs_modes:
            key = (spec.modes, spec.energy)
            if (
                key not in shared_modes
            ):  # CG and GNN share one mode computation, each is charged its time
                big = spec.replace(
                    **{
                        "reparam.n_modes": max(
                            (s.reparam.n_modes or 0)
                            for s in specs.values()
                            if s.modes == spec.modes
                        )
                        or None
                    }
                )
                shared_modes[key] = compute_modes(big, system, make_energy(system, spec.energy))
            modes = _slice_modes(shared_modes[key], spec, system.n_atoms)
        results[method] = _run_one(
            spec, method, Path(args.out) / method, args, system=system, modes=modes
        )
    rows, reach = summary_table(results, args.reach)
    header = [
        "method",
        "status",
        "final_energy",
        "best_energy",
        "wall_time_s",
        "steps",
        "modes_s",
        "time_to_reach_s",
        "steps_to_reach",
    ]
    csv_lines = [",".join(header)] + [",".join(str(r[h]) for h in header) for r in rows]
    io.write_text(Path(args.out) / "summary.csv", "\n".join(csv_lines) + "\n")
    unit = system.energy_unit
    md = [
        "Threshold for time-to-reach: "
        + (f"E <= {reach:.6g} {unit}" if reach is not None else "none (no finite final energy)"),
        "",
        "| method | status | final E | best E | time (s) | steps | modes (s) | "
        "time to reach (s) | steps to reach |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['method']} | {r['status']} | {r['final_energy']:.6g} | {r['best_energy']:.6g} | "
            f"{r['wall_time_s']:.2f} | {r['steps']} | {r['modes_s']:.2f} | "
            f"{r['time_to_reach_s']:.2f} | "
            f"{r['steps_to_reach']:.0f} |"
        )
    io.write_text(Path(args.out) / "summary.md", "\n".join(md) + "\n")
    print("\n".join(md))
    return 0


def _slice_modes(modes, spec: RunSpec, n_atoms: int):
    from .run import default_n_modes, first_modes

    k = default_n_modes(spec, n_atoms)
    if k > modes.vectors.shape[1]:
        return None  # recomputed by run() with its own k
    return first_modes(modes, k)


def cmd_modes(args) -> int:
    from .modes import slow_modes
    from .systems import build_system, make_energy

    spec = spec_from_args(args, "gd")
    system = build_system(spec.system, spec.seed)
    model = make_energy(system, spec.energy)
    n_dof = system.n_atoms * (3 if spec.modes.method == "hessian" else 1)
    if not 1 <= args.n_modes <= n_dof:
        raise UsageError(
            f"argument --K: must be in [1, {n_dof}] for this system, got {args.n_modes}"
        )
    t = time.perf_counter()
    modes = slow_modes(system, model, spec.modes, args.n_modes, seed=spec.seed)
    elapsed = time.perf_counter() - t
    print(
        f"{system.name}: lowest {args.n_modes} modes ({modes.method}, {modes.space} space) "
        f"in {elapsed:.3f} s"
    )
    for i, (value, rigid) in enumerate(zip(modes.values, modes.rigid, strict=False)):
        print(f"{i:4d} {value: .6e}{'  rigid-body' if rigid else ''}")
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return {"run": cmd_run, "compare": cmd_compare, "modes": cmd_modes}[args.command](args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except SpecError as e:
        flag = FLAGS.get(e.field, e.field)
        print(f"error: {flag}: {str(e)[len(e.field) + 1 :]}", file=sys.stderr)
        return 2
    except ValueError as e:  # invalid input found while building (e.g. a bad structure file)
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

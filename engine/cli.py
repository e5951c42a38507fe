"""Command line: ``python -m engine {run,compare,modes}``.

Bad arguments print one line naming the argument and the accepted range and exit with 2.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

from . import analysis, io, methods, schema
from .config import RunSpec, SpecError
from .presets import PRESETS, improved_spec, paper_spec

# Every declared spec parameter is a flag (engine/schema.py): the same name, bounds, default
# and help as the workbench form. "--lr" is optim.learning_rate, and so on.
SPEC_PARAMS = [e for e in schema.params(RunSpec) if e.param.flag != ""]


def flag_of(entry: schema.Entry) -> str:
    """The CLI flag of a spec parameter: its declared flag or its field name with dashes."""
    return "--" + (entry.param.flag or entry.path.rsplit(".", 1)[-1].replace("_", "-"))


# spec field -> CLI flag, so that validation errors name what the user typed
FLAGS = {e.path: flag_of(e) for e in SPEC_PARAMS}


class UsageError(Exception):
    """One-line usage error; exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + message; we want one clear line
        raise UsageError(message)


def _flag_help(entry: schema.Entry) -> str:
    p = entry.param
    accepted = p.interval() or (", ".join(map(str, p.values)) if p.kind == "choice" else "")
    default = p.blank if entry.default is None and p.blank else entry.default
    unit = f" {p.unit}" if p.unit else ""
    return f"{p.label}{unit}: {p.help} Accepted: {accepted or p.kind}; default: {default}."


def _add_spec_args(p: argparse.ArgumentParser) -> None:
    for e in SPEC_PARAMS:
        help_text = _flag_help(e).replace("%", "%%")
        if e.param.kind == "bool":
            action = argparse.BooleanOptionalAction
            p.add_argument(flag_of(e), dest=e.path, action=action, default=None, help=help_text)
        else:
            metavar = {"int": "N", "float": "X", "text": "TEXT"}.get(e.param.kind, "CHOICE")
            p.add_argument(flag_of(e), dest=e.path, default=None, metavar=metavar, help=help_text)
    p.add_argument(
        "--paper", action="store_true", help="the reference protocol and best hyperparameters"
    )
    p.add_argument(
        "--improved", action="store_true", help="paper hyperparameters on the fixed energy"
    )
    p.add_argument("--config", help="config.json of a bundle (or a spec JSON) to re-run")
    p.add_argument("--trajectory", action="store_true", help="also write trajectory.pdb")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m engine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p_run = sub.add_parser("run", help="run one method and write a bundle")
    _add_spec_args(p_run)
    p_run.add_argument("--method", choices=tuple(methods.METHODS), default="gd")
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
    _add_sweep_parser(sub)
    return parser


def _add_sweep_parser(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a sweep (fields x methods x seeds) on Dask: embedded or --scheduler",
        description="The base spec is --base (a bundle's config.json or a spec JSON) and any "
        "spec flag; each --vary FIELD=v1,v2 or FIELD=lo:hi:lin|log|random:count adds an axis.",
    )
    _add_spec_args(p)
    p.add_argument("--base", dest="config", help="same as --config: the base spec's JSON")
    p.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="FIELD=VALUES",
        help="a declared spec field and its values (repeatable)",
    )
    p.add_argument("--methods", default="gd,cg,gnn", help="comma-separated methods")
    p.add_argument("--seeds", default="0", help="0-4 or 0,3,7: each seed its own x0")
    p.add_argument("--out", required=True, help="sweep directory (resumable)")
    p.add_argument(
        "--scheduler",
        help="an existing Dask scheduler, tcp://HOST:PORT (or $SLOWMODE_SCHEDULER); "
        "default: an embedded LocalCluster",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="embedded cluster: process workers (default: one per core)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the run count and estimate")


def given_values(args) -> dict:
    """The spec parameters set on the command line, parsed and checked by the schema
    (SpecError names the field; ``main`` turns it into the flag)."""
    out = {}
    for e in SPEC_PARAMS:
        raw = getattr(args, e.path, None)
        if raw is not None:
            out[e.path] = raw if e.param.kind == "bool" else e.param.parse(e.path, raw)
    return out


def _config_spec(path: str) -> dict:
    """The spec dict of a ``--config`` file: a bundle's config.json ({"spec": {...}}) or a
    bare spec; UsageError when it holds anything else."""
    data = io.read_json(path)
    name = Path(path).name
    if not isinstance(data, dict):
        raise UsageError(f"--config: {name} holds a {type(data).__name__}, not a JSON object")
    spec = data.get("spec", data)
    if not isinstance(spec, dict):
        what = "null" if spec is None else f"a {type(spec).__name__}, not a JSON object"
        raise UsageError(f"--config: {name}: spec is {what}")
    return spec


def check_out(out: str) -> None:
    """Refuse an output folder that is empty or cannot be written, before any work: the
    nearest existing folder on its path must take a new file (nothing is created)."""
    import tempfile

    if not out.strip():
        raise UsageError("--out: an output folder is required (got an empty name)")
    path = Path(out).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists() or p == p.parent)
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is not a folder")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise UsageError(f"--out: cannot write {out}: {err}") from None


def spec_from_args(args, method: str) -> RunSpec:
    """Build and validate the RunSpec for ``method`` from parsed arguments: the base (a
    bundle's config, a paper protocol, or the method's defaults) with every given flag on top."""
    given = given_values(args)
    if args.config:
        base = RunSpec.from_dict(_config_spec(args.config))
    elif args.paper or args.improved:
        default = RunSpec()
        kind = given.get("system.kind", default.system.kind)
        if kind == "protein":
            raise SpecError("--paper", "applies to loop systems only")
        make = improved_spec if args.improved else paper_spec
        base = make(
            kind,
            given.get("system.n", default.system.n),
            method,
            given.get("seed", default.seed),
            max_steps=given.get("schedule.max_steps", default.schedule.max_steps),
        )
    else:
        base = methods.get(method).spec()
    d = base.to_dict()
    for path, value in given.items():
        *parents, leaf = path.split(".")
        node = d
        for part in parents:
            node = node[part]
        node[leaf] = value
    return RunSpec.from_dict(d)


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
    from .systems import build_system

    system = system or build_system(spec.system, spec.seed)  # input errors before any progress bar
    bar = _ProgressBar(spec.schedule.max_steps, method, args.quiet)
    try:
        result = methods.execute(spec, on_progress=bar, system=system, modes=modes)
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


SUMMARY_COLUMNS = (
    "method", "status", "final_energy", "best_energy", "wall_time_s", "steps", "modes_s",
    "time_to_reach_s", "steps_to_reach",
)  # fmt: skip


def compare_specs(args) -> dict[str, RunSpec]:
    """{method: spec} of a ``compare``: a preset's specs, or one per ``--methods`` entry."""
    if args.preset:
        seed = given_values(args).get("seed", RunSpec().seed)
        return {s.label: s.replace(seed=seed) for s in PRESETS[args.preset][1]}
    keys = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not keys or any(m not in methods.METHODS for m in keys):
        raise UsageError(
            f"argument --methods: each must be one of {', '.join(methods.METHODS)}; "
            f"got {args.methods!r}"
        )
    return {m: spec_from_args(args, m) for m in keys}


def shared_modes(specs: dict[str, RunSpec], system) -> dict[str, object]:
    """{method: slow modes}: CG and GNN with the same mode settings share one computation
    (the largest k among them); each run is still charged its full time."""
    from .run import compute_modes
    from .systems import make_energy

    computed, out = {}, {}
    for method, spec in specs.items():
        if not spec.reparam.needs_modes:
            continue
        key = (spec.modes, spec.energy)
        if key not in computed:
            k = max((s.reparam.n_modes or 0) for s in specs.values() if s.modes == spec.modes)
            big = spec.replace(**{"reparam.n_modes": k or None})
            computed[key] = compute_modes(big, system, make_energy(system, spec.energy))
        out[method] = _slice_modes(computed[key], spec, system.n_atoms)
    return out


def summary_markdown(rows: list[dict], reach: float | None, unit: str) -> list[str]:
    """The compare summary as markdown lines (threshold first, then one row per method)."""
    level = f"E <= {reach:.6g} {unit}" if reach is not None else "none (no finite final energy)"
    md = [
        f"Threshold for time-to-reach: {level}",
        "",
        "| method | status | final E | best E | time (s) | steps | modes (s) | "
        "time to reach (s) | steps to reach |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['method']} | {r['status']} | {r['final_energy']:.6g} | {r['best_energy']:.6g} | "
            f"{r['wall_time_s']:.2f} | {r['steps']} | {r['modes_s']:.2f} | "
            f"{r['time_to_reach_s']:.2f} | {r['steps_to_reach']:.0f} |"
        )
    return md


def cmd_compare(args) -> int:
    from pathlib import Path

    from .systems import build_system

    specs = compare_specs(args)
    first = next(iter(specs.values()))
    system = build_system(first.system, first.seed)  # one start shared by every method
    modes = shared_modes(specs, system)
    results = {
        m: _run_one(spec, m, Path(args.out) / m, args, system=system, modes=modes.get(m))
        for m, spec in specs.items()
    }
    rows, reach = summary_table(results, args.reach)
    csv = [",".join(SUMMARY_COLUMNS)] + [",".join(str(r[h]) for h in SUMMARY_COLUMNS) for r in rows]
    io.write_text(Path(args.out) / "summary.csv", "\n".join(csv) + "\n")
    md = summary_markdown(rows, reach, system.energy_unit)
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


def sweep_from_args(args):
    """The SweepSpec of ``python -m engine sweep`` arguments (base spec, axes, methods, seeds)."""
    from .sweeps import SweepSpec, parse_seeds, parse_vary

    base = spec_from_args(args, "gd").replace(method_label=None)
    keys = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    bad = [m for m in keys if m not in methods.METHODS]
    if bad or not keys:
        raise UsageError(
            f"argument --methods: each must be one of {', '.join(methods.METHODS)}; "
            f"got {args.methods!r}"
        )
    axes = tuple(parse_vary(v) for v in args.vary)
    name = Path(args.out).name or "sweep"
    return SweepSpec(base, axes, keys, parse_seeds(args.seeds), name)


class _SweepBar:
    """tqdm bar over the sweep's runs: done, failed, diverged, running, ETA."""

    def __init__(self, total: int, workers: int, quiet: bool):
        from tqdm import tqdm

        self.workers = workers
        self.bar = None if quiet else tqdm(total=total, desc="sweep", unit="run", file=sys.stderr)

    def __call__(self, row: dict, counts: dict) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        self.bar.set_postfix(
            failed=counts.get("failed", 0),
            diverged=counts.get("diverged", 0),
            running=min(self.workers, counts.get("pending", 0)),
            refresh=False,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def sweep_summary(sweep, rows: list[dict]) -> list[str]:
    """Markdown: per point and method, final energy mean ± sd over seeds, time, failures."""
    import numpy as np

    fields = [a.field for a in sweep.axes]
    head = "| " + " | ".join([*fields, "method", "runs", "final E (mean ± sd)", "time s", "failed"])
    lines = [head + " |", "|" + "---|" * (len(fields) + 5)]
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((*(r.get(f) for f in fields), r["method"]), []).append(r)
    for key, rs in groups.items():
        e = np.array([r["final_energy"] for r in rs if r["status"] != "failed"], float)
        t = np.array([r["wall_time_s"] for r in rs if r["status"] != "failed"], float)
        sd = f"{e.std(ddof=1):.3g}" if len(e) > 1 else "—"
        energy = f"{e.mean():.6g} ± {sd}" if len(e) else "—"
        time_s = f"{t.mean():.2f}" if len(t) else "—"
        failed = sum(r["status"] == "failed" for r in rs)
        cells = [*map(str, key), str(len(rs)), energy, time_s, str(failed)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def cmd_sweep(args) -> int:
    from .cluster import SCHEDULER_ENV, run_sweep
    from .sweeps import estimate_seconds

    sweep = sweep_from_args(args)
    remote = args.scheduler or os.environ.get(SCHEDULER_ENV)
    workers = args.workers or (os.cpu_count() or 1)
    estimate = estimate_seconds(sweep, 1 if remote else workers)
    where = f"scheduler {remote}" if remote else f"an embedded cluster of {workers} workers"
    print(
        f"sweep {sweep.name}: {sweep.n_runs} runs ({len(sweep.methods)} methods x "
        f"{len(sweep.seeds)} seeds x {sweep.n_runs // (len(sweep.methods) * len(sweep.seeds))} "
        f"points) on {where}; estimated {estimate / 60:.1f} min at the full step budgets"
        + (" (on 1 worker)" if remote else ""),
        file=sys.stderr,
    )
    if args.dry_run:
        return 0
    bar = _SweepBar(sweep.n_runs, workers, args.quiet)
    try:
        outcome = run_sweep(
            sweep, args.out, scheduler=args.scheduler, n_workers=args.workers, on_row=bar
        )
    finally:
        bar.close()
    md = sweep_summary(sweep, outcome.rows)
    io.write_text(Path(args.out) / "summary.md", "\n".join(md) + "\n")
    print("\n".join(md))
    print(f"{outcome.status}: {outcome.ran} runs executed, {len(outcome.rows) - outcome.ran} "
          f"read back from {args.out}", file=sys.stderr)  # fmt: skip
    return 0


CACHE_ENV = "SLOWMODE_JAX_CACHE"  # persistent compilation cache folder; "off" disables it


def compilation_cache_dir(env=None) -> str | None:
    """The CLI's persistent JAX compilation cache: $SLOWMODE_JAX_CACHE, else
    $XDG_CACHE_HOME/slowmode/jax (default ~/.cache/slowmode/jax); None when set to "off" or
    "" (no cache)."""
    import os

    env = os.environ if env is None else env
    value = env.get(CACHE_ENV)
    if value is not None:
        return None if value.strip() in ("", "off", "0", "none") else value
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "slowmode", "jax")


def main(argv=None) -> int:
    """The command line. Run as a program (``argv`` None: ``python -m engine``) it first turns
    on JAX's persistent compilation cache (``compilation_cache_dir``); called with an
    ``argv`` list (tests, scripts) it leaves the process's JAX configuration alone."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if getattr(args, "out", None) is not None:
            check_out(args.out)
        cache = compilation_cache_dir() if argv is None else None
        if cache:
            from .run import use_compilation_cache

            use_compilation_cache(cache)
        command = {"run": cmd_run, "compare": cmd_compare, "modes": cmd_modes, "sweep": cmd_sweep}
        return command[args.command](args)
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

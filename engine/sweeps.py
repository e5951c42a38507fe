"""Sweeps: many runs that vary declared spec fields, methods and seeds, executed on Dask.

A ``SweepSpec`` (frozen, JSON-serializable) is a base ``RunSpec``, axes, methods and seeds:

  - an ``Axis`` varies one field that the schema declares (engine/config.py): a list of
    values, ``lo:hi`` spaced ``lin`` or ``log`` with a count, or ``random`` samples
    (log-uniform when the range is positive and spans a decade or more, seeded by the sweep);
    every value is checked against the field's declared bounds, with the schema's messages;
  - each method of ``engine.methods`` turns the base into its own spec; each seed is its own
    x0 (as the Figure 3 benchmark does).

``expand(sweep)`` gives one ``SweepRun`` per (point, method, seed), with a stable key (the run's
folder name: the same spec always gets the same key, so a rerun skips what is finished).
``run_sweep`` executes the runs on a Dask cluster (``engine.cluster``), one task per run,
results streaming back as runs finish; ``sweep(spec)`` is the short Python API.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from typing import Any

import numpy as np

from . import methods, schema
from .config import RunSpec, SpecError

SCALES = ("list", "lin", "log", "random")
MAX_RUNS = 5000  # a sweep larger than this is almost certainly a typo in a count
FINISHED = ("done", "diverged")  # a rerun skips these; failed and stopped runs run again


@dataclasses.dataclass(frozen=True)
class Axis:
    """One varied field.

    field: dotted RunSpec path of a declared parameter ("optim.learning_rate").
    scale: "list" (``values``), "lin" / "log" (``count`` values from lo to hi), or "random"
        (``count`` samples in [lo, hi], log-uniform when lo > 0 and hi / lo >= 10).
    """

    field: str
    scale: str = "list"
    values: tuple = ()
    lo: float | None = None
    hi: float | None = None
    count: int | None = None

    def __post_init__(self):
        name = f"axis {self.field}"
        try:
            param = schema.entry(RunSpec, self.field).param
        except KeyError:
            raise SpecError(name, "is not a declared run-spec field") from None
        if self.scale not in SCALES:
            raise SpecError(name, f"scale must be one of {', '.join(SCALES)}; got {self.scale!r}")
        if self.scale == "list":
            if not self.values:
                raise SpecError(name, "needs at least one value")
            for v in self.values:
                param.check(name, v)
            return
        if param.kind not in ("int", "float"):
            raise SpecError(name, f"a {self.scale} range needs a numeric field, not {param.kind}")
        if not isinstance(self.count, int) or not 1 <= self.count <= MAX_RUNS:
            raise SpecError(
                name, f"count must be an integer in [1, {MAX_RUNS}], got {self.count!r}"
            )
        for v in (self.lo, self.hi):
            param.check(name, v)
        if self.lo > self.hi:
            raise SpecError(name, f"needs lo <= hi, got {self.lo} > {self.hi}")
        if self.scale == "log" and self.lo <= 0:
            raise SpecError(name, f"a log range needs lo > 0, got {self.lo}")

    def expand(self, seed: int = 0) -> tuple:
        """The axis's values (ints for integer fields, duplicates removed, order kept)."""
        if self.scale == "list":
            return tuple(self.values)
        if self.scale == "lin":
            raw = np.linspace(self.lo, self.hi, self.count)
        elif self.scale == "log":
            raw = np.geomspace(self.lo, self.hi, self.count)
        else:
            u = np.random.default_rng([seed, _stable_int(self.field)]).random(self.count)
            if self.lo > 0 and self.hi / self.lo >= 10:
                raw = self.lo * (self.hi / self.lo) ** u
            else:
                raw = self.lo + (self.hi - self.lo) * u
        integer = schema.entry(RunSpec, self.field).param.kind == "int"
        vals = [int(round(v)) if integer else float(f"{v:.6g}") for v in raw]
        return tuple(dict.fromkeys(vals))


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A base spec, the axes it varies, the methods and the seeds. Same spec, same runs.

    ``per_method`` holds settings that differ per method beyond the method's own changes (the
    paper's best learning rate and k per method); ``from_method_specs`` derives it.
    """

    base: RunSpec = RunSpec()
    axes: tuple[Axis, ...] = ()
    methods: tuple[str, ...] = ("gd", "cg", "gnn")
    seeds: tuple[int, ...] = (0,)
    name: str = "sweep"
    per_method: tuple = ()  # ((method, ((path, value), ...)), ...): a method's own settings

    def __post_init__(self):
        if not self.methods:
            raise SpecError("sweep.methods", "needs at least one method")
        for m in self.methods:
            methods.get(m)
        if not self.seeds:
            raise SpecError("sweep.seeds", "needs at least one seed")
        for s in self.seeds:
            schema.entry(RunSpec, "seed").param.check("sweep.seeds", s)
        fields = [a.field for a in self.axes]
        if len(set(fields)) != len(fields):
            raise SpecError("sweep.axes", f"vary each field once; got {fields}")
        if self.n_runs > MAX_RUNS:
            raise SpecError("sweep", f"has {self.n_runs} runs; at most {MAX_RUNS}")

    @classmethod
    def from_method_specs(cls, specs: dict, **kw) -> SweepSpec:
        """A sweep over complete per-method specs (a protocol such as engine.presets'
        paper_spec): the first spec is the base, each method keeps its differences."""
        first = next(iter(specs.values())).replace(method_label=None)
        per_method = []
        for m, spec in specs.items():
            made = _flat(methods.get(m).spec(first).to_dict())
            diff = tuple((k, v) for k, v in _flat(spec.to_dict()).items() if made.get(k) != v)
            per_method.append((m, diff))
        return cls(base=first, methods=tuple(specs), per_method=tuple(per_method), **kw)

    def method_spec(self, method: str) -> RunSpec:
        """The base made into ``method``'s run, with its per-method settings."""
        d = methods.get(method).spec(self.base).to_dict()
        for path, value in dict(self.per_method).get(method, ()):
            _set_path(d, path, value)
        return RunSpec.from_dict(d)

    @property
    def n_runs(self) -> int:
        points = math.prod(len(a.expand(self.seeds[0])) for a in self.axes)
        return points * len(self.methods) * len(self.seeds)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "base": self.base.to_dict(),
            "axes": [dataclasses.asdict(a) for a in self.axes],
            "methods": list(self.methods),
            "seeds": list(self.seeds),
            "per_method": {m: dict(changes) for m, changes in self.per_method},
        }

    @classmethod
    def from_dict(cls, d: dict) -> SweepSpec:
        """Inverse of ``to_dict``; unknown keys raise SpecError naming them."""
        unknown = set(d) - {"name", "base", "axes", "methods", "seeds", "per_method"}
        if unknown:
            raise SpecError("sweep", f"unknown keys {sorted(unknown)}")
        axes = []
        for a in d.get("axes", ()):
            a = dict(a)
            a["values"] = tuple(a.get("values", ()))
            axes.append(Axis(**a))
        return cls(
            base=RunSpec.from_dict(d.get("base", {})),
            axes=tuple(axes),
            methods=tuple(d.get("methods", ("gd", "cg", "gnn"))),
            seeds=tuple(d.get("seeds", (0,))),
            name=d.get("name", "sweep"),
            per_method=tuple(
                (m, tuple(changes.items())) for m, changes in d.get("per_method", {}).items()
            ),
        )


@dataclasses.dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its folder key, spec, varied values, method and seed."""

    key: str
    spec: RunSpec
    point: dict
    method: str
    seed: int


def parse_vary(text: str) -> Axis:
    """``FIELD=v1,v2,...``, ``FIELD=lo:hi:lin|log:count`` or ``FIELD=lo:hi:random:count``."""
    field, sep, rest = text.partition("=")
    field = field.strip()
    if not sep or not rest.strip():
        raise SpecError(
            "--vary", f"must be FIELD=v1,v2 or FIELD=lo:hi:lin|log|random:count; got {text!r}"
        )
    try:
        param = schema.entry(RunSpec, field).param
    except KeyError:
        raise SpecError("--vary", f"{field!r} is not a declared run-spec field") from None
    if ":" in rest:
        parts = rest.split(":")
        if len(parts) != 4 or parts[2] not in ("lin", "log", "random"):
            raise SpecError("--vary", f"a range is lo:hi:lin|log|random:count; got {rest!r}")
        lo, hi = (param.parse(field, p) for p in parts[:2])
        try:
            count = int(parts[3])
        except ValueError:
            raise SpecError("--vary", f"count must be an integer, got {parts[3]!r}") from None
        return Axis(field, parts[2], lo=lo, hi=hi, count=count)
    return Axis(field, "list", values=tuple(param.parse(field, v) for v in rest.split(",")))


def parse_seeds(text: str) -> tuple[int, ...]:
    """``0-4`` (inclusive) or ``0,3,7``."""
    m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text)
    try:
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise ValueError
            return tuple(range(lo, hi + 1))
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise SpecError("--seeds", f"must be like 0-4 or 0,3,7; got {text!r}") from None


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def _set_path(d: dict, path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        d = d[part]
    d[leaf] = value


def run_key(spec: RunSpec, method: str, seed: int) -> str:
    """A stable folder name: method, seed and a hash of the whole spec."""
    digest = hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode()).hexdigest()
    return f"{method}_s{seed}_{digest[:10]}"


def expand(sweep: SweepSpec) -> list[SweepRun]:
    """Every run of the sweep, points outermost, then methods, then seeds. A combination that
    the engine refuses raises SpecError naming the varied field and the point."""
    grids = [a.expand(sweep.seeds[0]) for a in sweep.axes]
    runs = []
    for values in _product(grids):
        point = {a.field: v for a, v in zip(sweep.axes, values, strict=True)}
        for m in sweep.methods:
            d = sweep.method_spec(m).to_dict()
            for path, v in point.items():
                _set_path(d, path, v)
            for seed in sweep.seeds:
                d["seed"] = seed
                try:
                    spec = RunSpec.from_dict(d)
                except SpecError as err:
                    raise SpecError(
                        err.field, f"{str(err)[len(err.field) + 1 :]} (at {point})"
                    ) from None
                runs.append(SweepRun(run_key(spec, m, seed), spec, dict(point), m, seed))
    return runs


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _product(grids: list[tuple]) -> list[tuple]:
    out = [()]
    for g in grids:
        out = [o + (v,) for o in out for v in g]
    return out


# Measured per-step costs on the project's 2-core CPU (docs/benchmarks.md, "Optimizer per-step
# overhead", idle machine): one jitted energy+gradient of the n = 1000 all-pairs loop, and the
# step/evaluation ratios of GD, CG and the GNN. All-pairs cost grows with the pairs, n².
EVAL_S_N1000 = 5.9e-3
STEP_RATIO = {"none": 0.92, "linear": 0.92 * 1.08, "gnn": 0.92 * 1.19}
PROTEIN_STEP_S = 2.2e-3  # all-atom Trp-cage (284 atoms), docs/benchmarks-protein.md, ms/step
COMPILE_S = 3.0  # first chunk of a new shape (excluded from run wall times, paid per worker)


def estimate_step_seconds(spec: RunSpec) -> float:
    """Seconds per optimizer step of ``spec`` on this machine kind (see the constants)."""
    if spec.system.kind == "protein":
        return PROTEIN_STEP_S
    n = spec.system.n
    pairs = (n / 1000) ** 2 if spec.energy.repulsion == "all-pairs" else n * math.log(n) / 6908
    return EVAL_S_N1000 * max(pairs, 0.02) * STEP_RATIO[spec.reparam.kind]


def estimate_seconds(sweep: SweepSpec, n_workers: int = 1) -> float:
    """Wall seconds for the whole sweep at its step budgets (an upper bound: early stopping
    ends runs sooner), spread over ``n_workers`` single-threaded workers."""
    total = sum(estimate_step_seconds(r.spec) * r.spec.schedule.max_steps for r in expand(sweep))
    return total / max(1, n_workers) + COMPILE_S * len(set(sweep.methods))

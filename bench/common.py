"""Helpers shared by the benchmark scripts: timing, results files, environment facts."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import jax

RESULTS = Path(__file__).resolve().parent / "results"


def timeit(fn, *, repeat: int = 7, number: int = 1) -> float:
    """Median seconds of ``number`` calls of fn() (which must block until done), after warm-up."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t) / number)
    return statistics.median(times)


def timeit_interleaved(fns: dict, *, rounds: int = 7) -> dict:
    """Median seconds per call of each fn, timed round-robin so load changes hit all alike."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def source_commit() -> str | None:
    """The commit the benchmark's code came from, with "+dirty" when engine/ or bench/*.py
    differ from it, so a result says which engine made it; None outside a git checkout."""
    root = Path(__file__).resolve().parent.parent

    def git(*args) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    try:
        head = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--", "engine", "bench/*.py")
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def cpu_model() -> str:
    """The CPU's model name and widest vector extension: XLA compiles for the host's, so a
    chaotic run (a blow-up) can end at a different step on another CPU."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    # one "key : value" per line; every CPU lists the same model and flags
    fields = dict(ln.split(":", 1) for ln in info.splitlines() if ":" in ln)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    name, flags = fields.get("model name", "unknown"), fields.get("flags", "").split()
    vector = next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), "")
    return f"{name} ({vector})" if vector else name


def machine() -> dict:
    return {
        "commit": source_commit(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "jax": jax.__version__,
        "devices": [str(d) for d in jax.devices()],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


DOCS = Path(__file__).resolve().parent.parent / "docs"


def replace_marked(path: Path, name: str, text: str) -> None:
    """Rewrite the block between <!-- name:start --> and <!-- name:end --> in a docs file."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    doc = path.read_text()
    if start not in doc or end not in doc:
        raise ValueError(f"{path} has no {start} ... {end} block")
    head, rest = doc.split(start, 1)
    tail = rest.split(end, 1)[1]
    path.write_text(f"{head}{start}\n{text.rstrip()}\n{end}{tail}")


def save_json(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **data}, indent=2, default=float) + "\n")
    return path

"""A fake engine runner for the workbench tests: no JAX, fully controlled from the test.

``FakeEngine.runner`` has the registry's runner signature. Each run reports a view, then the
engine's ``phases`` (``on_phase``; it waits at the one named ``hold`` until ``proceed`` is set,
honouring a stop there unless that phase is ``uninterruptible``: "building" or "compiling" by
default, as in the engine), then
"running" and one progress row per ``step()`` of the test (or freely with ``auto=True``) until
released, stopped or told to diverge/fail. Results look like ``engine.RunResult`` where the
registry reads them.
"""

from __future__ import annotations

import threading
import time
import types
import weakref

import numpy as np

from engine.types import Progress

N_ATOMS = 6


def fake_view(n: int = N_ATOMS) -> dict:
    return {"kind": "loop", "n": n, "scale": 1.0, "x0": [0.0] * (3 * n), "bonds": [0, 1, 1, 2]}


class FakeRun:
    def __init__(self, spec):
        self.spec = spec
        self.started = threading.Event()
        self.release = threading.Event()  # finish with status "done"
        self.tokens = threading.Semaphore(0)  # one token = one progress row
        self.outcome = "done"
        self.on_phase = lambda phase, detail="": None
        self.holding = threading.Event()  # it waits at the held phase
        self.proceed = threading.Event()  # leave the held phase


_ENGINES: weakref.WeakSet = weakref.WeakSet()


def release_all() -> None:
    """Let every fake run of every engine finish (proceed past a held phase, end its rows), so
    no worker thread outlives its test: the interpreter joins pool threads at exit."""
    for engine in list(_ENGINES):
        for run in list(engine.runs):
            run.proceed.set()
            run.release.set()


class FakeEngine:
    """Runner whose runs wait for the test; ``auto`` runs emit rows on their own."""

    def __init__(
        self,
        auto: bool = False,
        delay: float = 0.0,
        n_rows: int = 5,
        system=None,
        outcome="done",
        phases: tuple = (),
        hold: str | None = None,
        uninterruptible: tuple = ("building", "compiling"),
    ):
        self.auto, self.delay, self.n_rows, self.outcome = auto, delay, n_rows, outcome
        self.system = system
        self.phases, self.hold, self.uninterruptible = phases, hold, uninterruptible
        self.runs: list[FakeRun] = []
        _ENGINES.add(self)
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0

    def runner(self, spec, on_progress, should_stop, on_system, on_phase=None):
        run = FakeRun(spec)
        run.outcome = self.outcome
        if on_phase is not None:
            run.on_phase = on_phase
        with self.lock:
            self.runs.append(run)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            return self._run(run, on_progress, should_stop, on_system)
        finally:
            with self.lock:
                self.active -= 1

    def _run(self, run, on_progress, should_stop, on_system):
        view = fake_view(self.system.n_atoms if self.system is not None else N_ATOMS)
        on_system(self.system, view)
        run.started.set()
        n = view["n"]
        rows, x = [], np.zeros((n, 3))
        status, message, step = "done", "budget reached", 0
        if self._phases(run, should_stop):
            status, message = "stopped", "stopped by request before the first step"
        else:
            run.on_phase("running", "")
        while status == "done":
            if should_stop():
                status, message = "stopped", f"stopped by request at step {step}"
                break
            if run.outcome == "fail":
                raise RuntimeError("fake engine exploded")
            if self.auto:
                if len(rows) >= self.n_rows:
                    break
                time.sleep(self.delay)
            elif not run.tokens.acquire(timeout=0.01):
                if run.release.is_set():
                    break
                continue
            energy = 1.0 / (1 + step) if run.outcome != "diverge" or len(rows) < 2 else float("nan")
            x = x + 0.1
            row = {
                "step": step,
                "stage": 1 if step < 40 and run.spec.reparam.kind != "none" else 2,
                "wall_time_s": 0.01 * (1 + len(rows)),
                "energy": energy,
                "grad_norm": 1.0,
            }
            switched = len(rows) > 0 and rows[-1]["stage"] == 1 and row["stage"] == 2
            rows.append(row)
            on_progress(Progress([row], x.copy(), rows[-2]["step"] if switched else None))
            step += 20
            if not np.isfinite(energy):
                status, message = "diverged", f"energy {energy} at step {row['step']} is not finite"
                break
        metrics = {
            k: np.asarray([r[k] for r in rows])
            for k in ("step", "stage", "wall_time_s", "energy", "grad_norm")
        }
        switch = next(
            (
                int(r["step"])
                for r, nxt in zip(rows[:-1], rows[1:], strict=True)
                if r["stage"] == 1 and nxt["stage"] == 2
            ),
            None,
        )
        return types.SimpleNamespace(
            spec=run.spec,
            status=status,
            message=message,
            metrics=metrics,
            frames_step=np.asarray([r["step"] for r in rows] or [0]),
            frames_x=np.stack([np.full((n, 3), 0.1 * (i + 1)) for i in range(len(rows))] or [x]),
            x_final=x,
            system=self.system,
            timings={"total_s": 0.1},
            stage_switch_step=switch,
        )

    def _phases(self, run, should_stop) -> bool:
        """Report the phases, waiting at the held one; True when stopped there."""
        for phase, detail in self.phases:
            run.on_phase(phase, detail)
            if phase != self.hold:
                continue
            run.holding.set()
            while not run.proceed.wait(0.005):
                if phase not in self.uninterruptible and should_stop():
                    return True
            if should_stop():
                return True
        return False

    def wait_started(self, count: int, timeout: float = 5.0) -> None:
        t = time.time()
        while time.time() - t < timeout:
            with self.lock:
                if sum(r.started.is_set() for r in self.runs) >= count:
                    return
            time.sleep(0.005)
        raise AssertionError(f"{count} fake runs did not start within {timeout} s")


def wait_for(predicate, timeout: float = 5.0, what: str = "condition"):
    t = time.time()
    while time.time() - t < timeout:
        value = predicate()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")

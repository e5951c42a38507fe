"""Engine-facing work for the workbench: runs, spectra, viewer payloads and exports.

Everything here may be slow or import the engine; nothing here touches Dash. The registry
calls ``run_engine`` on its pool threads; callbacks call the small payload helpers.

Viewer payloads ("views") are plain JSON: {"kind", "n", "bonds" | "pdb", "scale", "x0"}.
Coordinates cross to the browser in Angstrom-like display units: proteins (nm) are scaled
by 10, loops (reduced units, bond length 1) are drawn as is; both rounded to 3 decimals
so a frame of 1000 beads is ~25 kB of JSON.
"""

from __future__ import annotations

import functools
import json
import os
import re
import threading
import time
import traceback

import numpy as np

import engine
from engine import io as engine_io
from engine import methods

SPECTRUM_MAX_MODES = 1500  # spectra show at most this many modes (dense solvers above ~n=1500)
# A loop with more beads is drawn as every k-th bead: more is not readable in a 3D view, and
# frames of 3n numbers ~20 times a second would flood the browser (n = 20,000: ~0.5 MB each).
VIEW_MAX_BEADS = 4000


@functools.lru_cache(maxsize=16)
def build_system(system_cfg, seed: int):
    """engine.build_system, cached: the spectrum, runs and exports of one config share it."""
    return engine.build_system(system_cfg, seed)


def display_scale(system) -> float:
    return 10.0 if system.length_unit == "nm" else 1.0


def flat(x: np.ndarray, scale: float = 1.0) -> list[float]:
    """[n, 3] -> flat list rounded to 3 decimals (display units)."""
    return np.round(np.asarray(x, np.float64) * scale, 3).ravel().tolist()


def view_xyz(x: np.ndarray, view: dict) -> list[float]:
    """Positions [n, 3] as a ``system_view`` draws them: its beads only, display units."""
    return flat(np.asarray(x)[:: view.get("every", 1)], view.get("scale", 1.0))


def system_view(system) -> dict:
    """What the browser needs to draw ``system`` once; frames then carry coordinates only."""
    scale = display_scale(system)
    view = {
        "kind": system.kind,
        "n": system.n_atoms,
        "scale": scale,
        "x0": flat(system.x0, scale),
        "name": system.name,
    }
    if system.kind == "protein":
        # PDB text carries residues and atom names for the cartoon; 3Dmol assigns bonds once
        view["pdb"] = engine_io.pdb_text(system, system.x0)
        view["coarse"] = (system.meta or {}).get("model") == "residue"  # CA beads only
    elif system.n_atoms > VIEW_MAX_BEADS:
        # every k-th bead, joined along the chain; a link then spans k bonds, so stretched
        # bonds cannot be told apart (stretch 0) and the view says what it shows
        every = -(-system.n_atoms // VIEW_MAX_BEADS)
        shown = len(range(0, system.n_atoms, every))
        chain = np.stack([np.arange(shown - 1), np.arange(1, shown)], axis=1)
        view.update(n=shown, n_atoms=system.n_atoms, every=every, stretch=0)
        view.update(x0=view_xyz(system.x0, view), bonds=chain.ravel().tolist())
    else:
        view["bonds"] = np.asarray(system.bonds, np.int64).ravel().tolist()
    return view


def run_engine(
    spec, on_progress, should_stop, on_system, on_phase=None, on_frame=None, frame_s=0.05
):
    """The registry's runner: report "building", build (cached), report the view, run the
    spec's method (which reports "modes", "compiling", "running", and passes positions
    between logged rows to ``on_frame`` about every ``frame_s`` seconds). A stop asked while
    building raises ``engine.types.Stopped("building")`` once the build returns."""
    from engine.types import Stopped

    phase = on_phase if on_phase is not None else (lambda name, detail="": None)
    phase("building", "")
    system = build_system(spec.system, spec.seed)
    on_system(system, system_view(system))
    if should_stop():
        raise Stopped("building", "stopped by request while building the system")
    return methods.execute(
        spec,
        on_progress=on_progress,
        should_stop=should_stop,
        system=system,
        on_phase=on_phase,
        on_frame=on_frame,
        frame_s=frame_s,
    )


def spectrum_modes(system, energy_cfg, modes_cfg, seed: int):
    """Slow modes over the whole displayed range (all of them for n_dof <= SPECTRUM_MAX_MODES)."""
    n_dof = system.n_atoms * (3 if modes_cfg.method == "hessian" else 1)
    model = engine.make_energy(system, energy_cfg)
    return engine.slow_modes(system, model, modes_cfg, min(n_dof, SPECTRUM_MAX_MODES), seed=seed)


def spectrum_payload(spec, report) -> dict:
    """The spectrum of ``spec``'s system and what the panel draws with it (slow: engine work)."""
    report("building the system")
    system = build_system(spec.system, spec.seed)
    report(f"computing the Hessian spectrum ({spec.modes.method}, at {spec.modes.at})")
    modes = spectrum_modes(system, spec.energy, spec.modes, spec.seed)
    report("drawing the structure and the residue heatmaps")
    return {
        "values": np.asarray(modes.values, np.float64),
        "rigid": np.asarray(modes.rigid, bool),
        "vectors": np.asarray(modes.vectors, np.float32),
        "space": modes.space,
        "method": modes.method,
        "seconds": float(modes.seconds),
        "view": system_view(system),
        "x": np.asarray(system.x0, np.float64),
        "scale": display_scale(system),
        "heatmaps": residue_heatmaps(system),
    }


# ---- spectrum tasks: bounded waits on shared computations -------------------------------------
# Why: the registry runs analysis tasks one at a time on a single thread. A spectrum that took
# minutes (a cold build and compile on a loaded machine) held that thread, and a retry queued
# behind the very computation it repeated ("queued · 0.0 s" for 92 s, then done in 0.05 s from
# the warm caches). Now the engine work runs on its own daemon thread, shared by every task
# that asks for the same spectrum, and the task thread only waits for it: in slices, so a stop
# request (a newer spectrum of the session, see panels/spectrum.py) or SPECTRUM_TIMEOUT_S frees
# the task thread at once. An abandoned computation finishes in the background; a retry of
# the same spec joins it instead of queueing behind it or starting over. Abandoned computations
# still use the CPU, so at most ``computation_limit`` of them run at once (the server sets it to
# its task_workers): a task that would start one more waits, saying so.
SPECTRUM_TIMEOUT_S = 300.0  # a task gives up waiting after this (the computation continues)
SPECTRUM_WAIT_SLICE_S = 0.1  # how often a waiting task checks stop requests and its deadline


class SharedComputation:
    """One engine computation on a daemon thread; ``phase`` is its latest progress text."""

    def __init__(self, key, fn):
        self.key, self.phase = key, "starting"
        self.payload, self.error = None, None
        self.done = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(fn,), name="wb-spectrum", daemon=True
        )

    def _run(self, fn) -> None:
        try:
            self.payload = fn(self._report)
        except BaseException:  # noqa: B036 - handed to the waiting task, never lost
            self.error = traceback.format_exc()
        finally:
            with _COMPUTING_LOCK:
                if _COMPUTING.get(self.key) is self:
                    del _COMPUTING[self.key]
            self.done.set()

    def _report(self, text: str) -> None:
        self.phase = text


_COMPUTING: dict = {}  # key -> SharedComputation under way
_COMPUTING_LOCK = threading.Lock()
_LIMIT = {"computations": 2}  # spectrum computations under way at once (set_computation_limit)


def set_computation_limit(n: int) -> None:
    """At most ``n`` spectrum computations under way at once, abandoned ones included (the
    server's task_workers)."""
    _LIMIT["computations"] = max(1, int(n))


def computing() -> int:
    """Spectrum computations under way now."""
    with _COMPUTING_LOCK:
        return len(_COMPUTING)


def shared_computation(key, fn) -> tuple[SharedComputation | None, bool]:
    """(the computation of ``key`` under way or a new one running ``fn(report)``, joined?);
    (None, False) when the limit of computations under way is reached."""
    with _COMPUTING_LOCK:
        comp = _COMPUTING.get(key)
        if comp is not None:
            return comp, True
        if len(_COMPUTING) >= _LIMIT["computations"]:
            return None, False
        comp = _COMPUTING[key] = SharedComputation(key, fn)
    comp._thread.start()
    return comp, False


def spectrum_key(spec) -> tuple:
    """What a spectrum depends on (two specs with the same key share one computation)."""
    return (spec.system, spec.seed, spec.energy, spec.modes)


def spectrum_task(spec, *, timeout_s: float | None = None, compute=None):
    """A registry task computing the spectrum of ``spec``'s system; returns its payload.

    The task reports the computation's phase as it changes, returns None at once when asked
    to stop (the registry marks it "stopped"), and raises TimeoutError after ``timeout_s``
    (default SPECTRUM_TIMEOUT_S). ``compute(spec, report) -> payload`` replaces the engine in
    tests (default ``spectrum_payload``).
    """
    limit = SPECTRUM_TIMEOUT_S if timeout_s is None else timeout_s
    work = compute or spectrum_payload

    def task(report, should_stop):
        if should_stop():  # stopped while queued: nothing started
            return None
        start = time.monotonic()
        while True:
            comp, joined = shared_computation(spectrum_key(spec), lambda rep: work(spec, rep))
            if comp is not None:
                break
            n = _LIMIT["computations"]
            report(
                f"waiting: {n} spectrum computation(s) under way on this server, the limit is "
                f"{n} (task_workers)"
            )
            if should_stop():
                return None
            if time.monotonic() - start > limit:
                raise TimeoutError(f"no free spectrum computation slot after {limit:.0f} s")
            time.sleep(SPECTRUM_WAIT_SLICE_S)
        shown = None
        while not comp.done.wait(SPECTRUM_WAIT_SLICE_S):
            if comp.phase != shown:
                shown = comp.phase
                report(f"{shown} (joined the same computation under way)" if joined else shown)
            if should_stop():
                return None
            if time.monotonic() - start > limit:
                raise TimeoutError(
                    f"no spectrum after {limit:.0f} s (last: {comp.phase}); it goes on in the "
                    "background, and Compute spectrum again picks it up"
                )
        if comp.error is not None:
            raise RuntimeError(comp.error.strip().splitlines()[-1])
        return comp.payload

    return task


def residue_heatmaps(system) -> dict | None:
    """{title: [n_res, n_res] matrix} of a residue-level protein model, else None.

    The engine defines the VdW / H-bond / hydrophobic matrices for the residue model only.
    """
    if system.kind != "protein" or (system.meta or {}).get("model", "residue") != "residue":
        return None
    from engine.protein.energy import residue_matrices

    try:
        mats = residue_matrices(system)
    except ValueError:  # an all-atom system: no residue matrices
        return None
    # the paper's Fig. 7 matrices; the engine also returns their parameter matrices
    shown = {"vdw": "Van der Waals", "hbond": "hydrogen bond", "hydrophobic": "hydrophobic"}
    return {shown[k]: np.asarray(v, np.float64) for k, v in mats.items() if k in shown}


def mode_displacement(payload: dict, index: int) -> np.ndarray:
    """Displacement [n, 3] of mode ``index``, largest bead displacement = 1 display unit.

    Cartesian modes are reshaped. Node-space modes (one ψ shared by x, y and z) move every
    bead along the structure's long axis with amplitude ψ(i): the direction is a choice made
    for display, the relative amplitudes are the mode's.
    """
    v = np.asarray(payload["vectors"][:, index], np.float64)
    x = np.asarray(payload["x"], np.float64)
    if payload["space"] == "cartesian":
        d = v.reshape(-1, 3)
    else:
        centred = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        d = v[:, None] * vt[0][None, :]
    peak = np.max(np.linalg.norm(d, axis=1))
    return d / peak if peak > 0 else d


# ---- structures on this machine and CLI bundles ---------------------------------------------
def list_structures(dirs) -> list[tuple[str, str]]:
    """[(label, absolute path)] of *.pdb files in ``dirs``, plus the bundled villin."""
    out = [("villin headpiece HP35 (bundled with OpenMM)", "villin")]
    for d in dirs:
        if os.path.isdir(d):
            for name in sorted(os.listdir(d)):
                if name.lower().endswith(".pdb"):
                    out.append((name, os.path.abspath(os.path.join(d, name))))
    return out


def find_bundles(dirs, max_depth: int = 2) -> list[tuple[str, dict]]:
    """[(folder, config.json)] of CLI bundles under ``dirs`` (``engine.io.find_bundles``:
    folders owned by a workbench session, those with a meta.json, are not listed)."""
    return engine_io.find_bundles(dirs, max_depth)


def read_bundle(path: str) -> dict:
    """Registry bundle_reader for stored runs and CLI bundles alike: ``engine.io.read_bundle``,
    plus a view rebuilt from the spec when the folder has no view.json (CLI bundles)."""
    data = engine_io.read_bundle(path)
    if data.get("view") is None:
        spec = engine.RunSpec.from_dict(data["config"]["spec"])
        data["view"] = system_view(build_system(spec.system, spec.seed))
    return data


# ---- uploads keep their file name -----------------------------------------------------------
UPLOAD_NAME_SUFFIX = ".name"  # beside run_dir/uploads/<token>.pdb: the uploaded file's name


def name_upload(path: str | None, filename: str | None) -> None:
    """Remember the name an uploaded structure had on the user's machine (its base name, at
    most 80 characters) beside the server's token path, for run names and exports."""
    name = os.path.basename((filename or "").replace("\\", "/")).strip()[:80]
    if path and name:
        with open(path + UPLOAD_NAME_SUFFIX, "w", encoding="utf-8") as fh:
            fh.write(name)


def structure_name(path: str | None) -> str:
    """The name to show for a structure path: an upload's own file name, else the base name."""
    if not path:
        return ""
    try:
        with open(path + UPLOAD_NAME_SUFFIX, encoding="utf-8") as fh:
            return fh.read().strip() or os.path.basename(path)
    except OSError:
        return os.path.basename(path)


# ---- exports ---------------------------------------------------------------------------------
def file_stem(text: str) -> str:
    """A file-name part of ``text``: lower case, runs of other characters as one "-"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "run"


def export_file(data: dict, fmt: str, stem: str | None = None) -> tuple[str, str]:
    """(filename, text) of an export: final PDB, trajectory PDB, curves CSV or config JSON.

    ``stem`` names the files (panels/runs.py ``export_stem``: system, method and start time,
    "lj-loop-n400_gnn_20261130-140231"); default the run's label. A diverged run whose
    positions are not finite exports its last finite frame ("..._last-finite-step<N>.pdb")
    or its finite frames ("..._trajectory_finite-frames.pdb"), with a REMARK line saying so.
    """
    label = stem or f"{data['label']}"
    if fmt == "csv":
        return f"{label}_curves.csv", engine_io.metrics_csv(data["metrics"])
    if fmt == "json":
        config = {"spec": data["spec"], "status": data["status"]}
        return f"{label}_config.json", json.dumps(config, indent=2)
    system = data["system"]
    if system is None:
        spec = engine.RunSpec.from_dict(data["spec"])
        system = build_system(spec.system, spec.seed)
    if fmt == "pdb":
        x = np.asarray(data["x_final"], np.float64)
        if np.all(np.isfinite(x)):
            return f"{label}_final.pdb", engine_io.pdb_text(system, x)
        step, x = _last_finite(data.get("frames") or [], system)
        remark = (
            f"REMARK   1 DIVERGED RUN: FINAL POSITIONS NOT FINITE; LAST FINITE FRAME, STEP {step}"
        )
        text = engine_io.pdb_text(system, x)
        return f"{label}_last-finite-step{step}.pdb", f"{remark}\n{text}"
    if fmt == "traj":
        frames = [(s, np.asarray(x, np.float64)) for s, x in data["frames"]]
        finite = [(s, x) for s, x in frames if np.all(np.isfinite(x))]
        if len(finite) == len(frames):
            stack = np.stack([x for _, x in frames])
            return f"{label}_trajectory.pdb", engine_io.pdb_text(system, stack)
        dropped = [s for s, x in frames if not np.all(np.isfinite(x))]
        finite = finite or [_last_finite([], system)]
        remark = (
            f"REMARK   1 DIVERGED RUN: {len(dropped)} FRAME(S) WITH NON-FINITE POSITIONS LEFT "
            f"OUT (FIRST AT STEP {dropped[0]}); LAST FRAME IS STEP {finite[-1][0]}"
        )
        text = engine_io.pdb_text(system, np.stack([x for _, x in finite]))
        return f"{label}_trajectory_finite-frames.pdb", f"{remark}\n{text}"
    raise ValueError(f"unknown export format {fmt!r}")


def _last_finite(frames: list, system) -> tuple[int, np.ndarray]:
    """(step, x [n, 3]) of the newest frame whose positions are all finite; the start
    positions (step 0) when there is none."""
    for step, x in reversed(frames):
        x = np.asarray(x, np.float64)
        if np.all(np.isfinite(x)):
            return int(step), x
    return 0, np.asarray(system.x0, np.float64)

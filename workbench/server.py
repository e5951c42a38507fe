"""Build the Dash app and its registry (one process, many threads; house style §2.11).

``create_app(config)`` installs a fresh RunRegistry (re-indexing ``config.run_dir``) and returns
the Dash app, whose page is the panels composed by ``layout.build`` and whose JavaScript reads
the panels' ids from ``window.WB_IDS`` (``layout.js_ids``). Dash registers ``@callback``
functions (the panels', on import) with the first app that serves a request in a process, so
there is one app per process: the server, a browser test, or the UI benchmark.

Every request passes the guards of workbench/guards.py first: the Host header must name this
server (DNS rebinding), the body must fit ``max_request_bytes`` (413 naming the limit), and a
callback's widget values must have the shapes the page's widgets send (400 naming the field).

With the real engine (no ``runner`` given), ``create_app`` also turns on JAX's persistent
compilation cache (``config.compile_cache_path``, default ``<run_dir>/.jax-cache``) and, when
``config.warm_up``, starts ``warm_up``: a background thread that compiles the kernels of the
first Run click on the opening demo (``START_PRESET``), logged to the "workbench" logger, so
that click finds them compiled (or, after a restart, in the cache).
"""

from __future__ import annotations

import logging
import os
import threading
import time

import dash

from . import frames, guards, jobs, layout, sweeps, uploads
from . import registry as reg
from .config import ServerConfig
from .panels import PageContext
from .registry import RunRegistry

START_PRESET = "demo-bondlj-n600"  # engine.presets.OPENING_PRESET, chosen by bench/bench_demo.py
ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets")


def create_app(config: ServerConfig, runner=None) -> dash.Dash:
    """The workbench app; ``runner`` replaces the engine (tests)."""
    vendor = os.path.join(ASSETS, "vendor", "3Dmol-min.js")
    if not os.path.isfile(vendor):
        raise FileNotFoundError(
            f"{vendor} is missing: run `make setup` (it fetches 3Dmol.js from npm)"
        )
    if runner is None:
        if config.compile_cache_path:
            from engine.run import use_compilation_cache

            use_compilation_cache(config.compile_cache_path)
        if config.warm_up:
            warm_up(START_PRESET)
    uploads.install(config)  # structure names in specs resolve in its folders and uploads
    jobs.set_computation_limit(config.task_workers)
    registry = RunRegistry(config, runner or jobs.run_engine, bundle_reader=jobs.read_bundle)
    registry.index_bundles(jobs.find_bundles(config.bundle_dirs))
    reg.install(registry)
    manager = sweeps.SweepManager(
        os.path.join(config.run_dir, "sweeps"),
        scheduler=config.scheduler,
        n_workers=config.sweep_workers,
        max_running=config.max_running_sweeps,
        limit=config.max_active_per_session,
        max_total=config.max_active_total,
        max_active=registry.active_counts,
    )
    registry.outside_active = manager.active_counts  # one limit over runs, tasks and sweeps
    sweeps.install(manager)
    app = dash.Dash(
        __name__,
        assets_folder=ASSETS,
        title="Slow-mode workbench",
        serve_locally=True,  # every script and style from this server, never a CDN
        update_title=None,
    )
    ctx = PageContext(
        structures=tuple(jobs.list_structures(config.structure_dirs)),
        presets=_presets(),
        upload_limits=uploads.limits_of(config),
        start_preset=START_PRESET,
    )
    app.layout = lambda: layout.build(ctx)  # a function: a fresh session token per page load
    app.index_string = layout.index_string(app.index_string, layout.js_ids())
    # at least twice the upload cap (ServerConfig checks), so an upload somewhat over the cap
    # still reaches upload_structure, which answers with the cap next to the field
    app.server.config["MAX_CONTENT_LENGTH"] = config.max_request_bytes
    app.server.register_error_handler(413, guards.too_large(config))
    app.server.before_request(guards.callback_guard(layout.build(ctx), config))
    app.server.wsgi_app = guards.HostAndSizeGuard(app.server.wsgi_app, config)
    app.server.add_url_rule("/_wb/frames", "wb_frames", frames.frames_view)
    return app


LOG = logging.getLogger("workbench")


def start_specs(preset: str) -> list:
    """The specs of the first Run click on the page opened with ``preset``: its settings as
    the form shows them (forms.start_values, blank k/chunk/patience) for every form method the
    preset or the default checkboxes name; the preset's own specs when the form cannot
    express them (a protein preset)."""
    from engine import methods as engine_methods

    from . import forms

    specs = _presets()[preset][1]
    kind = "protein" if specs[0].system.kind == "protein" else "loop"
    keys = [engine_methods.method_of(s) for s in specs] + list(forms.DEFAULT_METHODS)
    keys = [k for k in dict.fromkeys(keys) if k in forms.FORM_METHODS]
    keys = [k for k in keys if specs[0].system.kind in engine_methods.METHODS[k].systems]
    if kind == "loop":
        try:
            return forms.parse_run_form(forms.start_values(specs), "loop", keys)
        except Exception:  # fall back to the preset as it is
            LOG.info("warm-up: the form cannot express %s; warming its specs", preset)
    return [s for s in specs if engine_methods.get(engine_methods.method_of(s)).runner == "engine"]


def warm_up(preset: str, log: logging.Logger = LOG) -> threading.Thread:
    """Compile the kernels of ``preset``'s first Run click on a daemon thread, one spec at a
    time (``engine.run.init_run``: system, slow modes, every stage's chunk, the step-0
    energy), with the persistent cache filling as it goes. Returns the started thread;
    failures are logged, never raised."""

    def work() -> None:
        from engine.run import init_run

        t0 = time.perf_counter()
        try:
            specs = start_specs(preset)
        except Exception as err:  # a warm-up never takes the server down
            log.warning("warm-up of %s failed: %s", preset, err)
            return
        log.info("warm-up: compiling %d run(s) of %s in the background", len(specs), preset)
        for spec in specs:
            t = time.perf_counter()
            try:
                init_run(spec, jobs.build_system(spec.system, spec.seed))
            except Exception as err:
                log.warning("warm-up: %s failed: %s", spec.label, err)
                continue
            log.info("warm-up: %s ready in %.1f s", spec.label, time.perf_counter() - t)
        log.info("warm-up of %s done in %.1f s", preset, time.perf_counter() - t0)

    thread = threading.Thread(target=work, name="wb-warm-up", daemon=True)
    thread.start()
    return thread


def _presets() -> dict:
    from engine.presets import PRESETS

    return PRESETS

"""Build the Dash app and its registry (one process, many threads; house style §2.11).

``create_app(config)`` installs a fresh RunRegistry (re-indexing ``config.run_dir``) and returns
the Dash app, whose page is the panels composed by ``layout.build`` and whose JavaScript reads
the panels' ids from ``window.WB_IDS`` (``layout.js_ids``). Dash registers ``@callback``
functions (the panels', on import) with the first app that serves a request in a process, so
there is one app per process: the server, a browser test, or the UI benchmark.
"""

from __future__ import annotations

import os

import dash

from . import frames, jobs, layout
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
    registry = RunRegistry(config, runner or jobs.run_engine, bundle_reader=jobs.read_bundle)
    registry.index_bundles(jobs.find_bundles(config.bundle_dirs))
    reg.install(registry)
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
        max_upload_bytes=config.max_upload_bytes,
        start_preset=START_PRESET,
    )
    app.layout = lambda: layout.build(ctx)  # a function: a fresh session token per page load
    app.index_string = layout.index_string(app.index_string, layout.js_ids())
    # large enough that an oversized upload still reaches upload_structure, which answers with
    # the cap next to the field instead of a bare HTTP 413
    app.server.config["MAX_CONTENT_LENGTH"] = max(64 * 2**20, 4 * config.max_upload_bytes)
    app.server.add_url_rule("/_wb/frames", "wb_frames", frames.frames_view)
    return app


def _presets() -> dict:
    from engine.presets import PRESETS

    return PRESETS

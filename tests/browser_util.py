"""Helpers for the real-browser tests and the UI benchmark: a workbench server on a free
loopback port in a thread, and headless Debian Chromium driven by Playwright with every
non-loopback request blocked and recorded.

Blocking uses Chromium itself (a proxy at a dead loopback port for everything that is not
loopback; Chromium never proxies loopback), not Playwright request interception: interception
runs a Python handler per request, which stalls the page whenever the test thread is not
inside a Playwright call and would distort the frame-rate measurement. Every request is still
seen by a passive listener, so attempted non-loopback requests are recorded and asserted on.

Waits are on conditions, never fixed sleeps: ``wait_until`` hands a JavaScript predicate to
Playwright's ``wait_for_function`` (polled in the page) and names what it waited for when it
times out.

Several apps in one process: Dash gives the panels' ``@callback`` registrations (made once,
when the panels are imported) to the first app that serves a request and empties its global
lists, so a second app in the same pytest run (test_browser.py, then test_browser_live.py)
would serve a page whose callbacks do not exist. ``ServerThread`` copies the registrations
before the first app takes them and puts them back for each later one.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import socket
import threading
from urllib.parse import urlparse

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--proxy-server=http://127.0.0.1:9",
]
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}

# Every browser wait's bound is stretched this much. The bounds are written for an idle machine;
# CI runs the browser tests beside a second test worker on 2 cores, where a first page load
# (plotly parsed, every panel rendered: ~5 s idle) and a callback's round trip took 3-4x as
# long. A wait ends as soon as its condition holds, so a pass costs no more.
PATIENCE = 3


def workbench_config(run_dir, **overrides):
    """A test server's ServerConfig: runs under ``run_dir``, no bundle or structure folders,
    2 run workers, the session's JAX compilation cache (conftest) and no warm-up of the
    opening demo unless asked (``warm_up=True``: tests that run that demo)."""
    from workbench.config import ServerConfig

    defaults = {
        "run_dir": str(run_dir), "bundle_dirs": (), "structure_dirs": (), "workers": 2,
        "compile_cache_dir": os.environ.get("SLOWMODE_JAX_CACHE"), "warm_up": False,
    }  # fmt: skip
    return ServerConfig(**{**defaults, **overrides})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_DASH_GLOBALS = (
    "GLOBAL_CALLBACK_LIST",
    "GLOBAL_CALLBACK_MAP",
    "GLOBAL_INLINE_SCRIPTS",
    "GLOBAL_API_PATHS",
)
_dash_registrations: dict | None = None  # copies of dash._callback's globals, once


def share_dash_callbacks() -> None:
    """Make the ``@callback`` registrations available to the next app served in this process:
    the first call copies them (no app has served yet, so none has taken them); later calls
    put them back once an app has taken them."""
    global _dash_registrations
    from dash import _callback

    if _dash_registrations is None:
        _dash_registrations = {n: copy.copy(getattr(_callback, n)) for n in _DASH_GLOBALS}
        return
    if _callback.GLOBAL_CALLBACK_MAP or _callback.GLOBAL_CALLBACK_LIST:
        return  # not taken yet
    for name in _DASH_GLOBALS:
        live, saved = getattr(_callback, name), _dash_registrations[name]
        if isinstance(live, dict):
            live.update({k: copy.copy(v) for k, v in saved.items()})
        else:
            live.extend(copy.copy(v) for v in saved)


class ServerThread:
    """Serve a Dash app with werkzeug (threaded) until ``stop()``."""

    def __init__(self, app, port: int | None = None):
        import logging

        from werkzeug.serving import make_server

        share_dash_callbacks()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per poll request
        self.port = port or free_port()
        self.server = make_server("127.0.0.1", self.port, app.server, threaded=True)
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="wb-test-server", daemon=True
        )
        self.url = f"http://127.0.0.1:{self.port}/"

    def start(self) -> ServerThread:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)


def launch_browser(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def offline_context(browser, attempted: list[str], **options):
    """A new browser context (``options`` as Playwright's ``new_context``) whose actions wait
    up to PATIENCE x Playwright's 30 s default, with every non-loopback request recorded in
    ``attempted`` (see guard_offline)."""
    context = browser.new_context(**options)
    context.set_default_timeout(PATIENCE * 30_000)
    guard_offline(context, attempted)
    return context


def guard_offline(context, attempted: list[str]) -> None:
    """Record every request that tries to leave the loopback interface (the proxy flag makes
    it fail)."""

    def record(request):
        host = urlparse(request.url).hostname or ""
        if not request.url.startswith(("data:", "blob:")) and host not in LOOPBACK:
            attempted.append(request.url)

    context.on("request", record)


def chromium_missing() -> str | None:
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is missing (install Debian's chromium: `make browser`)"
    return None


def wait_until(page, predicate_js: str, timeout_s: float, what: str, arg=None):
    """The truthy value of the JavaScript ``predicate_js`` (a function of ``arg``) once it is
    truthy, polled in the page every 100 ms; AssertionError naming ``what`` after
    PATIENCE x timeout_s."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    bound = PATIENCE * timeout_s
    try:
        handle = page.wait_for_function(predicate_js, arg=arg, polling=100, timeout=bound * 1000)
    except PlaywrightTimeout:
        raise AssertionError(f"timed out after {bound} s waiting for {what}") from None
    return handle.json_value()


# Resolves when the page's DOM next changes, or after 1 s for state outside the DOM (the 3D
# views' window.wbStats): poll_until re-reads its condition then, not on a fixed period.
_NEXT_CHANGE_JS = """() => new Promise(done => {
    const seen = new MutationObserver(() => { seen.disconnect(); clearTimeout(cap); done(); });
    const cap = setTimeout(() => { seen.disconnect(); done(); }, 1000);
    seen.observe(document, {subtree: true, childList: true, attributes: true,
                            characterData: true});
})"""


def poll_until(page, predicate, timeout_s: float, what: str):
    """The truthy value of the Python ``predicate()`` once it is truthy, re-read whenever the
    page changes (Playwright handles the page's events in between); AssertionError naming
    ``what`` after PATIENCE x timeout_s. For conditions read through Playwright calls; a
    JavaScript condition is cheaper with wait_until."""
    import time

    bound = PATIENCE * timeout_s
    end = time.monotonic() + bound
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        page.evaluate(_NEXT_CHANGE_JS)
    raise AssertionError(f"timed out after {bound} s waiting for {what}")


def click_plot_point(page, graph: str, index: int, timeout_s: float = 30) -> None:
    """Click point ``index`` of the first trace of the plotly graph ``graph`` (a selector).

    Plotly turns a click into ``clickData`` only for the point it is hovering, and a graph
    that has just appeared may still move (its container is shown, then autosized). So the
    mouse rests on the point until plotly shows that point's hover label, the point is
    re-measured, and the click lands where the label was raised; otherwise it tries again
    (for up to PATIENCE x timeout_s)."""
    import time

    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    point = page.locator(f"{graph} .scatterlayer .trace").first.locator(".points path").nth(index)
    hover = f"document.querySelector({json.dumps(graph + ' .hoverlayer .hovertext')})"
    timeout_s *= PATIENCE
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        point.wait_for(state="visible", timeout=max(1, deadline - time.monotonic()) * 1000)
        box = point.bounding_box()
        if box is None:  # redrawn between the two calls
            continue
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x, y)
        try:
            page.wait_for_function(hover, polling=100, timeout=2_000)
        except PlaywrightTimeout:
            page.mouse.move(0, 0)
            continue
        if point.bounding_box() == box:
            page.mouse.down()
            page.mouse.up()
            return
        page.mouse.move(0, 0)
    raise AssertionError(f"timed out after {timeout_s} s hovering point {index} of {graph}")


def text_of(selector: str) -> str:
    """JavaScript expression: the inner text of ``selector`` ("" when absent)."""
    return f"((document.querySelector({json.dumps(selector)}) || {{}}).innerText || '')"


@contextlib.contextmanager
def open_workbench(config, viewport=(1500, 1300), ready: str = "#wb-run"):
    """A page of the workbench served for ``config`` on a loopback thread, in headless
    Chromium: page errors collect in ``page.errors``, every non-loopback request is blocked and
    recorded in ``page.attempted`` (none may happen). The server, its sweeps and its registry
    are shut down afterwards."""
    from playwright.sync_api import sync_playwright

    from workbench import registry as reg
    from workbench import sweeps
    from workbench.server import create_app

    srv = ServerThread(create_app(config)).start()
    attempted: list[str] = []
    try:
        with sync_playwright() as p:
            browser = launch_browser(p)
            context = offline_context(
                browser, attempted, viewport={"width": viewport[0], "height": viewport[1]}
            )
            page = context.new_page()
            page.errors = []
            page.on("pageerror", lambda e: page.errors.append(str(e)))
            page.goto(srv.url)
            page.wait_for_selector(ready)
            page.attempted = attempted
            yield page
            browser.close()
    finally:
        srv.stop()
        sweeps.get().shutdown()
        reg.get().shutdown()
    assert not attempted, attempted

"""Workbench UI measurements (not a test): start-up to first paint, click-to-motion on the
opening demo (cold and warm compilation cache), live 3D frames per second with two and four
methods at n=400 and n=1000, and the time from Stop to "stopped" in every phase of a run.

    python -m bench.bench_ui                      # everything, writes bench/results/ui.json
    python -m bench.bench_ui --screenshots docs/screenshots
    python -m bench.bench_ui --quick              # smallest settings: checks the script runs
    python -m bench.bench_ui --only click stop    # some parts (click, live, stop, synthetic,
                                                  # pacer, profile)

What is measured (headless Debian Chromium through Playwright, software WebGL):

1. Start-up: ``python app.py`` is spawned; "server" is when it answers HTTP, "first paint" is
   the page's first-contentful-paint, "ready" is when the Run button exists (the layout has
   rendered); all in seconds from the spawn. The browser is started beforehand, as a user's
   browser would already be open.
2. Run click -> first live frame: clicking Run (GD and GNN side by side, pure LJ loop) until
   both 3D views have drawn a frame from the running engine (JAX compilation and, for the
   GNN, the slow modes included).
3. Frames per second, end to end: frames received by each 3D view per second (the
   /_wb/frames stream, fetched by a Web Worker) and frames drawn (the newest on each
   animation frame), over a window, with the real engine, next to the frames the engine
   published in that window (the stream's frame counter: one per logged row plus the live
   frames within chunks, engine/run.py FramePacer), its rows and steps per second: no view
   can show frames not yet computed. ``--engine-nice`` sets the server's engine priority.
4. UI capacity: the same with a synthetic engine that produces frames faster than 10 per
   second, so the number is the workbench's delivery and drawing rate alone.
5. Click-to-motion on the opening demo (``workbench.server.START_PRESET``, the form as a page
   opens it): from the Run click until every 3D view has drawn a frame past step 0. "cold":
   a fresh run directory, so an empty compilation cache (the server's start-up warm-up runs
   meanwhile, as it would for a user); "warm_second": Run again on the same server;
   "warm_restart": a new server on the same run directory (the cache on disk; clicked after
   the warm-up has finished, ``warm_restart_at_once`` without waiting). Each records when
   each phase first showed in a status line.
6. Stop latency per phase: from the click on a card's Stop (dispatched in the page, without
   Playwright's actionability wait) to its status line reading
   "stopped" (or "cancelled" for a queued run), for a run seen queued (four methods on two
   workers), building the system, computing slow modes (GNN, n=``--stop-modes-n``),
   compiling (GD at a size not compiled before) and running. A phase too short to catch
   in the status line (building a loop takes milliseconds) is reported as not observed.
7. What live frames within chunks cost the engine ("pacer"): steps/s of GD and the GNN at
   n=1000 with whole chunks and in 50 ms pieces, alternated in one process.
8. Where the page's main thread goes during a live GD + GNN run ("profile"): a Chrome CPU
   profile (DevTools protocol, ``Profiler``) over ``--window`` seconds at each ``--sizes``,
   its samples sorted by the code on their stack: the 3D frames (assets/workbench.js),
   Plotly charts, the Dash renderer and React otherwise, the browser's own work outside
   JavaScript ("(program)": style, layout, paint), garbage collection, and idle.
Targets (idle 2-core machine): warm click-to-motion <= 5 s, cold <= 20 s, stop <= 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import types
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # browser_util: Chromium flags, offline guard

from browser_util import (  # noqa: E402
    click_plot_point,
    free_port,
    launch_browser,
    offline_context,
    poll_until,
)

from workbench.forms import auto_chunk  # noqa: E402
from workbench.server import START_PRESET  # noqa: E402


def field(name: str) -> str:
    key = json.dumps({"name": name, "type": "field"}, sort_keys=True, separators=(",", ":"))
    return f"[id='{key}']"


def spawn(
    port: int,
    run_dir: str,
    synthetic_rate: float | None = None,
    warm_up: bool = True,
    log_path: str | None = None,
    workers: int | None = None,
    engine_nice: int | None = None,
) -> subprocess.Popen:
    args = [
        sys.executable,
        "app.py",
        "--port",
        str(port),
        "--run-dir",
        run_dir,
        "--bundle-dir",
        run_dir,
    ]
    if workers:  # as many engine threads as live runs measured side by side
        args += ["--workers", str(workers)]
    if engine_nice is not None:
        args += ["--engine-nice", str(engine_nice)]
    if not warm_up:
        args.append("--no-warm-up")
    if synthetic_rate:
        args = [
            sys.executable,
            "-m",
            "bench.bench_ui",
            "--serve",
            str(port),
            "--run-dir",
            run_dir,
            "--rate",
            str(synthetic_rate),
            "--serve-workers",
            str(workers or 2),
        ]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=log)


def wait_http(url: str, timeout: float = 120.0) -> float:
    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return time.time()
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def stats(page) -> dict:
    return page.evaluate("JSON.parse(JSON.stringify(window.wbStats || {}))")


def set_field(page, name: str, value: str) -> None:
    page.fill(field(name), value)
    page.press(field(name), "Tab")


def prepare_long_runs(page) -> None:
    """Runs that keep going until stopped (the measurement window must not see them end)."""
    page.locator("summary", has_text="Schedule and stopping").click()
    set_field(page, "schedule.max_steps", "1000000")
    set_field(page, "schedule.patience", "10000")
    page.locator("summary", has_text="Schedule and stopping").click()


def demo_shot(page, shots: str, limit: float = 150.0) -> None:
    """The form as a page opens it (the paper's Fig. 2 settings): Run, wait for both runs to
    end (or ``limit`` seconds), take the live screenshot, stop whatever still runs."""
    page.click("#wb-run")
    page.wait_for_selector(".wb-card >> nth=1", timeout=30_000)
    end = time.time() + limit
    while time.time() < end:
        texts = page.locator(".wb-status").all_inner_texts()
        if all(("done" in t or "stopped" in t) for t in texts):
            break
        page.wait_for_timeout(1000)
    page.wait_for_timeout(1500)
    page.screenshot(path=os.path.join(shots, "03-live.png"), full_page=True)
    page.click("#wb-stop-all")
    page.wait_for_timeout(1500)


def set_methods(page, keys: list[str]) -> None:
    """Check exactly the methods ``keys`` in the "run side by side" checklist."""
    boxes = page.locator("#wb-methods input[type=checkbox]")
    for i in range(boxes.count()):
        box = boxes.nth(i)
        if box.get_attribute("value") in keys:
            box.check()
        else:
            box.uncheck()
    page.wait_for_timeout(300)


def viewer_ids(page) -> list[str]:
    return page.eval_on_selector_all(".wb-card .wb-viewer", "els => els.map(e => e.id)")


def status_texts(page) -> list[str]:
    return page.locator(".wb-card .wb-status").all_inner_texts()


def is_terminal(text: str) -> bool:
    return any(w in text for w in ("stopped", "cancelled", "done", "diverged", "failed"))


PHASE_WORDS = {  # what each phase's status line says (workbench.figures.status_text)
    "queued": "in the queue",  # not the card's placeholder "queued" before its first poll
    "building": "building the system",
    "modes": "computing slow modes",
    "compiling": "compiling",
    "running": "running · step",
    "stopping": "stopping",
}


def click_to_motion(page, limit: float = 600.0) -> dict:
    """Click Run with the form as it is; seconds until every new 3D view drew a frame past
    step 0, and when each phase first showed in a status line (seconds from the click)."""
    old = set(viewer_ids(page))
    t_click = time.time()
    page.click("#wb-run")
    seen: dict[str, float] = {}
    end = t_click + limit
    divs: list[str] = []
    while time.time() < end:
        now = time.time() - t_click
        for text in status_texts(page):
            for phase, words in PHASE_WORDS.items():
                if words in text and phase not in seen:
                    seen[phase] = now
        divs = divs or [d for d in viewer_ids(page) if d not in old]
        s = stats(page)
        if divs and all(d in s and (s[d]["step"] or 0) > 0 for d in divs):
            return {"seconds": time.time() - t_click, "views": len(divs), "phases_seen_s": seen}
        page.wait_for_timeout(50)
    raise TimeoutError(f"no motion within {limit} s")


def stop_all(page, timeout: float = 120.0) -> None:
    page.click("#wb-stop-all")
    poll_until(page, lambda: all(is_terminal(t) for t in status_texts(page)), timeout, "stop")


def open_page(context, url: str):
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#wb-run")
    return page


def measure_click_to_motion(args, context) -> dict:
    """Click-to-motion on the opening demo: cold cache, second run, restarted server."""
    out: dict = {}
    with tempfile.TemporaryDirectory() as run_dir:
        log_path = os.path.join(run_dir, "server.log")
        for label in ("cold", "warm_restart", "warm_restart_at_once"):
            port = free_port()
            url = f"http://127.0.0.1:{port}/"
            done_before = log_count(log_path, "warm-up of")  # the log is shared by the servers
            proc = spawn(port, run_dir, log_path=log_path)
            try:
                wait_http(url)
                page = open_page(context, url)
                if label == "warm_restart":  # a server that has been up a while
                    wait_log(log_path, "warm-up of", args.warm_up_limit, after=done_before)
                if args.quick:
                    set_field(page, "system.n", str(args.sizes[0]))
                out[label] = click_to_motion(page)
                stop_all(page)
                if label == "cold":
                    out["warm_second"] = click_to_motion(page)
                    stop_all(page)
                page.close()
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        with open(log_path, encoding="utf-8", errors="replace") as f:
            out["server_log_warm_up"] = [line.strip() for line in f if "warm-up" in line]
    out["preset"] = START_PRESET
    out["load_avg_1min"] = os.getloadavg()[0]
    return out


def log_count(path: str, text: str) -> int:
    """How many times ``text`` is in the server log so far (0 before it exists)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().count(text)
    except FileNotFoundError:
        return 0


def wait_log(path: str, text: str, timeout: float, after: int = 0) -> float:
    """Seconds until ``text`` is in the server log more than ``after`` times (TimeoutError
    after ``timeout``)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if log_count(path, text) > after:
            return time.time() - t0
        time.sleep(0.2)
    raise TimeoutError(f"{text!r} not in the server log within {timeout} s")


def card_of(page, viewer_id: str):
    """The run card holding the 3D view ``viewer_id`` (its parent element)."""
    return page.locator(f"[id='{viewer_id}']").locator("xpath=..")


def card_in_phase(page, divs: list[str], phase: str, timeout: float):
    """The first of the cards of ``divs`` whose status line shows ``phase``, or None."""
    words = PHASE_WORDS[phase]
    end = time.time() + timeout
    while time.time() < end:
        for d in divs:
            card = card_of(page, d)
            text = card.locator(".wb-status").inner_text()
            if words in text and not is_terminal(text):
                return card
        page.wait_for_timeout(20)
    return None


def stop_in_phase(page, phase: str, methods: list[str], n: int, timeout: float) -> dict:
    """Start ``methods`` at n, wait for a card to show ``phase``, click its Stop: seconds
    until its status line reads stopped/cancelled (None when the phase was never seen)."""
    set_field(page, "system.n", str(n))
    set_methods(page, methods)
    old = set(viewer_ids(page))
    page.click("#wb-run")

    def new_divs():
        new = [d for d in viewer_ids(page) if d not in old]
        return len(new) == len(methods) and new

    divs = poll_until(page, new_divs, 30, "the new cards")
    card = card_in_phase(page, divs, phase, timeout)
    out: dict = {"phase": phase, "methods": methods, "n": n}
    if card is None:
        out.update(seconds=None, note=f"never seen in a status line within {timeout} s")
    else:
        out["status_before"] = card.locator(".wb-status").inner_text()
        # The click is dispatched in the page: Playwright's own click first waits for the
        # button to be "stable" across the card's re-renders (0.2-0.8 s measured under load),
        # a wait a person's click does not have.
        button = card.locator("button.wb-btn-stop")
        button.wait_for(state="visible")
        t = time.time()
        button.evaluate("b => b.click()")
        poll_until(page, lambda: is_terminal(card.locator(".wb-status").inner_text()), 120,
                   f"stop in {phase}")  # fmt: skip
        out["seconds"] = time.time() - t
        out["status_after"] = card.locator(".wb-status").inner_text()
    stop_all(page)
    return out


def measure_stops(args, context) -> dict:
    """Stop -> "stopped" per phase, on a server of its own (fresh cache, no warm-up)."""
    q = args.quick
    plans = [
        ("queued", ["gd", "cg", "gnn", "fire"], args.sizes[0], 60),
        ("building", ["gd"], args.stop_modes_n, 10),
        ("modes", ["gnn"], args.stop_modes_n, 120),
        ("compiling", ["gd"], (args.sizes[0] + 17) if q else 1237, 120),
        ("running", ["gd"], args.sizes[0], 300),
    ]
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory() as run_dir:
        proc = spawn(port, run_dir, warm_up=False)
        try:
            wait_http(url)
            page = open_page(context, url)
            prepare_long_runs(page)
            results = [stop_in_phase(page, *plan) for plan in plans]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return {"phases": results, "load_avg_1min": os.getloadavg()[0]}


def start_group(page, n: int, methods: list[str]) -> tuple[list[str], float]:
    """Set the form to ``methods`` at n beads, press Run: (the new cards' viewer ids, the
    time.time() of the click)."""
    set_methods(page, methods)
    set_field(page, "system.n", str(n))
    page.wait_for_timeout(600)
    old = set(viewer_ids(page))
    t_click = time.time()
    page.click("#wb-run")

    def new_cards():
        new = [d for d in viewer_ids(page) if d not in old]
        return len(new) == len(methods) and new

    return poll_until(page, new_cards, 30, "the new run cards"), t_click


def wait_steady(page, divs: list[str]) -> None:
    """Wait until every view in ``divs`` has drawn 5 frames (past compiling and start-up)."""

    def steady():
        s = stats(page)
        return all(s.get(d, {}).get("frames", 0) >= 5 for d in divs)

    poll_until(page, steady, 300, "steady state")


def measure_live(page, n: int, window: float, methods: list[str] | None = None) -> dict:
    """Start ``methods`` (default GD+GNN) at n beads, measure frames per second per view over
    ``window`` seconds."""
    methods = methods or ["gd", "gnn"]
    divs, t_click = start_group(page, n, methods)

    def first_frames():
        s = stats(page)
        return all(d in s and (s[d]["step"] or 0) > 0 for d in divs) and s

    poll_until(page, first_frames, 200, f"live frames at n={n}")
    t_first = time.time() - t_click

    wait_steady(page, divs)
    load0 = os.getloadavg()[0]
    s0, t0, f0 = stats(page), time.time(), page.evaluate("({...window.wbStream})")
    p0 = published(page, divs)
    page.wait_for_timeout(window * 1000)
    s1, t1, f1 = stats(page), time.time(), page.evaluate("({...window.wbStream})")
    p1 = published(page, divs)
    chunk = auto_chunk("loop", n)  # the form's blank "check every": one logged row per chunk
    views = {}
    for d, label in zip(divs, methods, strict=True):
        drawn = s1[d]["frames"] - s0[d]["frames"]
        steps = (s1[d]["step"] or 0) - (s0[d]["step"] or 0)
        views[label] = {
            "received_per_s": (s1[d]["recv"] - s0[d]["recv"]) / (t1 - t0),
            "drawn_per_s": drawn / (t1 - t0),
            # frames the engine published to the stream: one per logged row plus the live
            # frames between rows (engine/run.py FramePacer); no view can show more
            "engine_frames_per_s": (p1[d] - p0[d]) / (t1 - t0),
            "rows_per_s": steps / chunk / (t1 - t0),
            "steps_per_s": steps / (t1 - t0),
            "draw_ms_per_frame": (s1[d]["draw_ms"] - s0[d]["draw_ms"]) / max(drawn, 1),
        }
    page.click("#wb-stop-all")
    poll_until(
        page,
        lambda: all(
            ("stopped" in t or "done" in t) for t in page.locator(".wb-status").all_inner_texts()
        ),
        120,
        "stop",
    )
    fetches = f1["fetches"] - f0["fetches"]
    return {
        "n": n,
        "methods": methods,
        "stream_round_trips_per_s": fetches / (t1 - t0),
        "stream_round_trip_ms": (f1["fetch_ms"] - f0["fetch_ms"]) / max(fetches, 1),
        "click_to_first_live_frames_s": t_first,
        "window_s": t1 - t0,
        "views": views,
        "load_avg_1min_start": load0,
        "load_avg_1min": os.getloadavg()[0],
    }


PROFILE_CATEGORIES = (  # first match on a sample's stack, innermost frame first
    ("3D frames (workbench.js)", ("workbench.js",)),
    ("Plotly charts", ("plotly", "async-graph")),
    ("Dash renderer and React", ("dash_renderer", "react")),
)


def profile_shares(profile: dict) -> dict:
    """{category: share of the sampled time} of a DevTools CPU profile (PROFILE_CATEGORIES;
    the V8 pseudo-frames "(program)", "(idle)", "(garbage collector)" by name)."""
    nodes = {node["id"]: node for node in profile["nodes"]}
    parent = {c: node["id"] for node in profile["nodes"] for c in node.get("children", ())}
    shares: dict[str, float] = {}
    total = 0.0
    for sample, dt in zip(profile["samples"], profile["timeDeltas"], strict=True):
        stack, node = [], sample
        while node is not None:
            frame = nodes[node]["callFrame"]
            stack.append((frame["functionName"], frame["url"].rsplit("/", 1)[-1]))
            node = parent.get(node)
        name = stack[0][0]
        if name in ("(program)", "(idle)", "(garbage collector)"):
            key = name
        else:
            urls = [url for _, url in stack]
            key = next((label for label, marks in PROFILE_CATEGORIES
                        if any(u.startswith(marks) for u in urls)), "other")  # fmt: skip
        shares[key] = shares.get(key, 0.0) + dt
        total += dt
    return {k: v / total for k, v in sorted(shares.items(), key=lambda kv: -kv[1])}


def measure_profile(page, n: int, window: float) -> dict:
    """GD and the GNN side by side at n: drawn frames per view and the main thread's CPU
    profile over ``window`` seconds of steady state."""
    divs, _ = start_group(page, n, ["gd", "gnn"])
    wait_steady(page, divs)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Profiler.enable")
    cdp.send("Profiler.setSamplingInterval", {"interval": 200})  # microseconds
    s0, t0 = stats(page), time.time()
    cdp.send("Profiler.start")
    page.wait_for_timeout(window * 1000)
    profile = cdp.send("Profiler.stop")["profile"]
    s1, t1 = stats(page), time.time()
    drawn = [(s1[d]["frames"] - s0[d]["frames"]) / (t1 - t0) for d in divs]
    stop_all(page)
    return {"n": n, "window_s": t1 - t0, "drawn_per_s": drawn, "load_avg_1min": os.getloadavg()[0],
            "main_thread_shares": profile_shares(profile)}  # fmt: skip


def published(page, divs: list[str]) -> dict:
    """{viewer div: frames its run has published so far} (the /_wb/frames counter)."""
    runs = ",".join(d.removeprefix("wb-view-") + ":0" for d in divs)
    numbers = page.evaluate(
        """async (q) => {
          const session = JSON.parse(sessionStorage.getItem(window.WB_IDS.page.SESSION));
          const r = await fetch('/_wb/frames?runs=' + encodeURIComponent(q),
                                {headers: {'X-WB-Session': session}});
          const reply = await r.json(), out = {};
          for (const k in reply) out[k] = reply[k].frame;
          return out;
        }""",
        runs,
    )
    return {d: numbers[d.removeprefix("wb-view-")] for d in divs}


def spectrum_shot(page, shots: str) -> None:
    page.click("#wb-spec-run")
    page.wait_for_selector("#wb-spec-graph .scatterlayer .points path", timeout=300_000)
    click_plot_point(page, "#wb-spec-graph", 8)
    info = page.locator("#wb-spec-mode-info")
    poll_until(page, lambda: "Animating mode" in info.inner_text(), 60, "the mode animation")
    page.screenshot(path=os.path.join(shots, "02-spectrum.png"), full_page=True)


def replay_shot(page, shots: str) -> None:
    page.locator("#wb-runs-table button").first.click()
    page.wait_for_selector("#wb-replay-box >> visible=true")
    page.wait_for_timeout(1500)
    page.locator("#wb-replay-slider [role=slider]").press("PageDown")
    page.wait_for_timeout(1500)
    page.locator("#wb-replay-box").screenshot(path=os.path.join(shots, "04-replay.png"))


def bad_input_shot(page, shots: str) -> None:
    set_field(page, "system.n", "1e9")
    page.click("#wb-run")
    page.wait_for_timeout(800)
    page.locator(".wb-setup").screenshot(path=os.path.join(shots, "05-bad-input.png"))
    set_field(page, "system.n", "400")


def session(args, synthetic_rate: float | None, shots: str | None) -> dict:
    from playwright.sync_api import sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    # the load before anything of ours starts: other jobs on the machine (the rows' own load
    # averages include the measurement itself)
    out: dict = {"load_avg_1min_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as run_dir, sync_playwright() as p:
        browser = launch_browser(p)
        attempted: list[str] = []
        context = offline_context(browser, attempted, viewport={"width": 1500, "height": 1250})
        page = context.new_page()
        t_spawn = time.time()
        # four methods side by side need four workers, or two of them queue behind runs
        # that only end when stopped
        workers = max(args.method_counts)
        proc = spawn(
            port, run_dir, synthetic_rate, warm_up=False, workers=workers,
            engine_nice=args.engine_nice,
        )  # fmt: skip
        out["engine_nice"] = args.engine_nice  # None: the server's default (app.py --help)
        try:
            t_server = wait_http(url)
            page.goto(url)
            page.wait_for_selector("#wb-run")
            t_ready = time.time()
            fcp = page.evaluate(
                "performance.timeOrigin"
                " + performance.getEntriesByName('first-contentful-paint')[0].startTime"
            )
            out["startup"] = {
                "server_s": t_server - t_spawn,
                "first_paint_s": fcp / 1000 - t_spawn,
                "ready_s": t_ready - t_spawn,
            }
            if shots:
                page.wait_for_timeout(1000)
                page.screenshot(path=os.path.join(shots, "01-start.png"), full_page=True)
                spectrum_shot(page, shots)
                demo_shot(page, shots)
            prepare_long_runs(page)
            if "profile" in args.only:
                out["profile"] = [measure_profile(page, n, args.window) for n in args.sizes]
            if "live" not in args.only:
                return out
            out["live"] = [
                measure_live(page, n, args.window, METHOD_SETS[count])
                for n in args.sizes
                for count in args.method_counts
            ]
            for shot in (replay_shot, bad_input_shot) if shots else ():
                try:  # a screenshot that fails must not lose the measurements above
                    shot(page, shots)
                except Exception as err:  # noqa: BLE001
                    out.setdefault("screenshot_errors", []).append(f"{shot.__name__}: {err}")
            out["non_loopback_requests"] = attempted
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            browser.close()
    return out


# ---- synthetic engine server (UI capacity) ---------------------------------------------------
def serve_synthetic(port: int, run_dir: str, rate: float, workers: int = 2) -> None:
    """The workbench with an engine stand-in that emits a frame every 1/rate s (no JAX work)."""
    import numpy as np

    from engine.types import Progress
    from workbench import jobs
    from workbench.config import ServerConfig
    from workbench.server import create_app

    def runner(spec, on_progress, should_stop, on_system, on_phase=None):
        if on_phase is not None:
            on_phase("running", "")
        system = jobs.build_system(spec.system, spec.seed)
        on_system(system, jobs.system_view(system))
        rng = np.random.default_rng(spec.seed)
        x, rows, step, t0 = np.array(system.x0), [], 0, time.perf_counter()
        while not should_stop() and step < spec.schedule.max_steps:
            time.sleep(1.0 / rate)
            x = x + 0.05 * rng.standard_normal(x.shape)
            step += spec.chunk_size
            row = {
                "step": step,
                "stage": 2,
                "wall_time_s": time.perf_counter() - t0,
                "energy": 1.0 / step,
                "grad_norm": 1.0,
            }
            rows.append(row)
            on_progress(Progress([row], x))
        metrics = {k: np.asarray([r[k] for r in rows]) for k in rows[0]}
        return types.SimpleNamespace(
            status="stopped",
            message="synthetic",
            metrics=metrics,
            frames_step=metrics["step"][-1:],
            frames_x=x[None],
            x_final=x,
            stage_switch_step=None,
            timings={},
            system=system,
        )

    config = ServerConfig(port=port, run_dir=run_dir, bundle_dirs=(), workers=workers)
    app = create_app(config, runner=runner)
    app.run(host="127.0.0.1", port=port, debug=False, threaded=True, dev_tools_hot_reload=False)


def measure_pacer(n: int = 1000, rounds: int = 3, seconds: float = 4.0) -> dict:
    """What live frames within chunks cost the engine: steps/s of the opening demo's GD and
    GNN at n with whole chunks and with a FramePacer (50 ms pieces), alternated ``rounds``
    times in this process (ratios, so that a machine's changing load cancels)."""
    from engine.presets import OPENING, demo_spec
    from engine.run import FramePacer, advance, init_run

    out: dict = {"n": n, "period_s": 0.05, "load_avg_1min_before": os.getloadavg()[0]}
    for method in ("gd", "gnn"):
        parts, state, _ = init_run(demo_spec(OPENING, method).replace(**{"system.n": n}))
        state, _ = advance(parts, state)  # the first chunk: warm
        rates: dict = {"whole": [], "pieces": []}
        frames: list = []
        for _ in range(rounds):
            for mode in rates:
                pacer = FramePacer(_count_into(frames), 0.05) if mode == "pieces" else None
                if pacer is not None:
                    state, _ = advance(parts, state, pacer)  # measures the step time
                t, step0 = time.perf_counter(), state.step
                while time.perf_counter() - t < seconds:
                    state, _ = advance(parts, state, pacer)
                rates[mode].append((state.step - step0) / (time.perf_counter() - t))
        out[method] = {
            "steps_per_s_whole": rates["whole"],
            "steps_per_s_pieces": rates["pieces"],
            "pieces_over_whole": sum(rates["pieces"]) / sum(rates["whole"]),
            "live_frames": len(frames),
        }
    out["load_avg_1min"] = os.getloadavg()[0]
    return out


def _count_into(frames: list):
    return lambda step, x: frames.append(step)


METHOD_SETS = {2: ["gd", "gnn"], 4: ["gd", "cg", "gnn", "fire"]}
PARTS = ("click", "live", "stop", "synthetic", "pacer", "profile")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[400, 1000])
    ap.add_argument("--window", type=float, default=10.0, help="seconds of frame counting per size")
    ap.add_argument("--method-counts", type=int, nargs="+", default=[2, 4], choices=[2, 4])
    ap.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    ap.add_argument(
        "--stop-modes-n", type=int, default=2000, help="GNN size whose slow modes are stopped"
    )
    ap.add_argument("--warm-up-limit", type=float, default=600.0, help="seconds to wait for it")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smallest settings (n=60, 2 s windows, no synthetic engine): checks the script "
        "runs end to end; numbers are not meaningful and not written to bench/results",
    )
    ap.add_argument("--screenshots", help="folder for screenshots of the main states")
    ap.add_argument(
        "--synthetic-rate", type=float, default=30.0, help="frames/s of the stand-in engine"
    )
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument(
        "--engine-nice",
        type=int,
        help="the server's --engine-nice for the live part (default: the server's default)",
    )
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--run-dir", help=argparse.SUPPRESS)
    ap.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--serve-workers", type=int, default=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve_synthetic(args.serve, args.run_dir, args.rate, args.serve_workers)
        return
    if args.quick:
        args.sizes, args.window, args.stop_modes_n = [60], 2.0, 300
        args.skip_synthetic, args.warm_up_limit = True, 300.0
    if args.screenshots:
        os.makedirs(args.screenshots, exist_ok=True)
    from bench.common import save_json

    result: dict = {"quick": args.quick}
    if "click" in args.only or "stop" in args.only:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = launch_browser(p)
            attempted: list[str] = []
            context = offline_context(browser, attempted, viewport={"width": 1500, "height": 1250})
            if "click" in args.only:
                result["click_to_motion"] = measure_click_to_motion(args, context)
                print(json.dumps(result["click_to_motion"], indent=2), flush=True)
            if "stop" in args.only:
                result["stop_latency"] = measure_stops(args, context)
                print(json.dumps(result["stop_latency"], indent=2), flush=True)
            result["non_loopback_requests_click_stop"] = attempted
            browser.close()
    if "pacer" in args.only:
        result["pacer_overhead"] = measure_pacer(60 if args.quick else 1000)
        print(json.dumps(result["pacer_overhead"], indent=2), flush=True)
    if "live" in args.only or "profile" in args.only:
        engine = session(args, None, args.screenshots)
        if "profile" in engine:
            result["main_thread_profile"] = engine.pop("profile")
        if "live" in args.only:
            result["engine"] = engine
    if "synthetic" in args.only and not args.skip_synthetic:
        result["synthetic"] = session(args, args.synthetic_rate, None)
        result["synthetic"]["rate_per_view"] = args.synthetic_rate
    result["browser"] = "Debian chromium, headless, software WebGL (SwiftShader)"
    print(json.dumps(result, indent=2, default=float))
    if not args.quick:  # quick numbers only show that the script runs: not kept
        if set(args.only) != set(PARTS):  # a partial run keeps the other parts' numbers
            result = {**previous_parts(), **result}
        print(f"wrote {save_json('ui', result)}")


def previous_parts() -> dict:
    """The parts of bench/results/ui.json from earlier runs, each with its own machine/date."""
    from bench.common import RESULTS

    try:
        old = json.loads((RESULTS / "ui.json").read_text())
    except (OSError, ValueError):
        return {}
    machine = old.pop("machine", None)
    for part in old.values():
        if isinstance(part, dict) and machine is not None:
            part.setdefault("machine", machine)
    return old


if __name__ == "__main__":
    main()

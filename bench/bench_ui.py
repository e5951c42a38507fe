"""Workbench UI measurements (not a test): start-up to first paint, and live 3D frames per
second delivered to the browser at n=400 and n=1000.

    python -m bench.bench_ui                      # everything, writes bench/results/ui.json
    python -m bench.bench_ui --screenshots docs/screenshots

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
   produced in that window (one per chunk): no view can show frames not yet computed.
4. UI capacity: the same with a synthetic engine that produces frames faster than 10 per
   second, so the number is the workbench's delivery and drawing rate alone.
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

from browser_util import free_port, guard_offline, launch_browser  # noqa: E402

from workbench.forms import auto_chunk  # noqa: E402


def field(name: str) -> str:
    key = json.dumps({"name": name, "type": "field"}, sort_keys=True, separators=(",", ":"))
    return f"[id='{key}']"


def spawn(port: int, run_dir: str, synthetic_rate: float | None = None) -> subprocess.Popen:
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
        ]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


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


def wait_until(page, predicate, timeout: float, what: str):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        page.wait_for_timeout(100)
    raise TimeoutError(f"timed out waiting for {what}")


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


def measure_live(page, n: int, window: float) -> dict:
    """Start GD+GNN at n beads, measure frames per second per view over ``window`` seconds."""
    set_field(page, "system.n", str(n))
    page.wait_for_timeout(600)
    old = page.eval_on_selector_all(".wb-card .wb-viewer", "els => els.map(e => e.id)")
    t_click = time.time()
    page.click("#wb-run")

    def new_cards():
        ids = page.eval_on_selector_all(".wb-card .wb-viewer", "els => els.map(e => e.id)")
        return len(ids) == 2 and not set(ids) & set(old) and ids

    divs = wait_until(page, new_cards, 30, "the new run cards")

    def first_frames():
        s = stats(page)
        return all(d in s and (s[d]["step"] or 0) > 0 for d in divs) and s

    wait_until(page, first_frames, 600, f"live frames at n={n}")
    t_first = time.time() - t_click

    def warmed():
        s = stats(page)
        return all(s[d]["frames"] >= 5 for d in divs) and s

    wait_until(page, warmed, 300, "steady state")
    s0, t0, f0 = stats(page), time.time(), page.evaluate("({...window.wbStream})")
    page.wait_for_timeout(window * 1000)
    s1, t1, f1 = stats(page), time.time(), page.evaluate("({...window.wbStream})")
    chunk = auto_chunk("loop", n)  # the form's blank "check / frame every": one frame per chunk
    views = {}
    for d, label in zip(divs, ("gd", "gnn"), strict=True):
        drawn = s1[d]["frames"] - s0[d]["frames"]
        steps = (s1[d]["step"] or 0) - (s0[d]["step"] or 0)
        views[label] = {
            "received_per_s": (s1[d]["recv"] - s0[d]["recv"]) / (t1 - t0),
            "drawn_per_s": drawn / (t1 - t0),
            "engine_frames_per_s": steps / chunk / (t1 - t0),
            "draw_ms_per_frame": (s1[d]["draw_ms"] - s0[d]["draw_ms"]) / max(drawn, 1),
        }
    page.click("#wb-stop-all")
    wait_until(
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
        "stream_round_trips_per_s": fetches / (t1 - t0),
        "stream_round_trip_ms": (f1["fetch_ms"] - f0["fetch_ms"]) / max(fetches, 1),
        "click_to_first_live_frames_s": t_first,
        "window_s": t1 - t0,
        "views": views,
        "load_avg_1min": os.getloadavg()[0],
    }


def spectrum_shot(page, shots: str) -> None:
    page.click("#wb-spec-run")
    page.wait_for_selector("#wb-spec-graph .scatterlayer .points path", timeout=300_000)
    point = page.locator("#wb-spec-graph .scatterlayer .trace").first.locator(".points path").nth(8)
    box = point.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_timeout(1500)
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
    page.locator(".wb-side").screenshot(path=os.path.join(shots, "05-bad-input.png"))
    set_field(page, "system.n", "400")


def session(args, synthetic_rate: float | None, shots: str | None) -> dict:
    from playwright.sync_api import sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    out: dict = {}
    with tempfile.TemporaryDirectory() as run_dir, sync_playwright() as p:
        browser = launch_browser(p)
        context = browser.new_context(viewport={"width": 1500, "height": 1250})
        attempted: list[str] = []
        guard_offline(context, attempted)
        page = context.new_page()
        t_spawn = time.time()
        proc = spawn(port, run_dir, synthetic_rate)
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
            out["live"] = [measure_live(page, n, args.window) for n in args.sizes]
            if shots:
                replay_shot(page, shots)
                bad_input_shot(page, shots)
            out["non_loopback_requests"] = attempted
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            browser.close()
    return out


# ---- synthetic engine server (UI capacity) ---------------------------------------------------
def serve_synthetic(port: int, run_dir: str, rate: float) -> None:
    """The workbench with an engine stand-in that emits a frame every 1/rate s (no JAX work)."""
    import numpy as np

    from engine.types import Progress
    from workbench import jobs
    from workbench.config import ServerConfig
    from workbench.server import create_app

    def runner(spec, on_progress, should_stop, on_system):
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

    app = create_app(ServerConfig(port=port, run_dir=run_dir, bundle_dirs=()), runner=runner)
    app.run(host="127.0.0.1", port=port, debug=False, threaded=True, dev_tools_hot_reload=False)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[400, 1000])
    ap.add_argument("--window", type=float, default=10.0, help="seconds of frame counting per size")
    ap.add_argument("--screenshots", help="folder for screenshots of the main states")
    ap.add_argument(
        "--synthetic-rate", type=float, default=30.0, help="frames/s of the stand-in engine"
    )
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--run-dir", help=argparse.SUPPRESS)
    ap.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve_synthetic(args.serve, args.run_dir, args.rate)
        return
    if args.screenshots:
        os.makedirs(args.screenshots, exist_ok=True)
    from bench.common import save_json

    result = {"engine": session(args, None, args.screenshots)}
    if not args.skip_synthetic:
        result["synthetic"] = session(args, args.synthetic_rate, None)
        result["synthetic"]["rate_per_view"] = args.synthetic_rate
    result["browser"] = "Debian chromium, headless, software WebGL (SwiftShader)"
    path = save_json("ui", result)
    print(json.dumps(result, indent=2, default=float))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

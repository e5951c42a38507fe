"""Does a poll's reply reach the page when the server answers slower than the poll period?

A dcc.Interval (what the spectrum, teaching, sweep and runs-list polls used) against the
reply-driven chain of workbench/polls.py that replaced them. One Dash app on a loopback port
holds both: each polls a callback that sleeps ``round_trip`` seconds (a loaded server) and
writes its tick into a div; headless Chromium counts, with a MutationObserver, how often each
div changed in a fixed window. Both poll every PERIOD_MS. Written to bench/results/polls.json
and the ``polls`` table of docs/benchmarks-reliability.md.

    python -m bench.bench_polls            # round trips 0.1 ... 1.0 s, 12 s each
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # browser_util: Chromium flags, offline guard

from browser_util import ServerThread, launch_browser, offline_context  # noqa: E402

from bench.common import replace_marked, save_json  # noqa: E402

PERIOD_MS = 400  # the teaching views' period
ROUND_TRIPS_S = (0.1, 0.3, 0.6, 1.0)
DOC = ROOT / "docs" / "benchmarks-reliability.md"
COUNT_JS = """() => {
    window.changes = {};
    for (const id of ['interval-out', 'chain-out']) {
        const el = document.getElementById(id);
        let last = el.textContent;
        window.changes[id] = 0;
        new MutationObserver(() => {
            if (el.textContent !== last) { last = el.textContent; window.changes[id] += 1; }
        }).observe(el, {childList: true, subtree: true, characterData: true});
    }
}"""


def build_app(round_trip: dict, asked: dict):
    """The two polls, each answering after ``round_trip["s"]``; ``asked`` counts requests."""
    from dash import Dash, Input, Output, callback, dcc, html

    from workbench import polls

    chain = polls.chain("bench-chain", PERIOD_MS)
    lock = threading.Lock()

    def slow(kind: str, tick) -> str:
        with lock:
            asked[kind] += 1
        time.sleep(round_trip["s"])
        return f"{kind} tick {tick}"

    @callback(Output("interval-out", "children"), Input("interval", "n_intervals"))
    def by_interval(n):
        return slow("interval", n)

    @callback(
        Output("chain-out", "children"), Output(chain.reply, "data"), Input(chain.tick, "data")
    )
    def by_chain(tick):
        return slow("chain", tick), chain.answer(tick, True)

    # only the polls' script from assets/, none of the workbench's
    app = Dash(__name__, assets_folder=str(ROOT / "assets"), assets_ignore=r"^(?!polls\.js$)")
    app.layout = html.Div(
        [
            dcc.Interval(id="interval", interval=PERIOD_MS),
            *chain.stores(),
            html.Div(id="interval-out"),
            html.Div(id="chain-out"),
        ]
    )
    return app


def measure(window_s: float) -> list[dict]:
    from playwright.sync_api import sync_playwright

    round_trip, asked = {"s": 0.0}, {"interval": 0, "chain": 0}
    srv = ServerThread(build_app(round_trip, asked)).start()
    rows, attempted = [], []
    try:
        with sync_playwright() as p:
            browser = launch_browser(p)
            context = offline_context(browser, attempted)
            for rt in ROUND_TRIPS_S:
                round_trip["s"] = rt
                page = context.new_page()
                page.goto(srv.url)
                page.wait_for_selector("#chain-out")
                page.evaluate(COUNT_JS)
                before = dict(asked)
                page.wait_for_timeout(window_s * 1000)  # the measurement window itself
                applied = page.evaluate("window.changes")
                for kind in ("interval", "chain"):
                    rows.append(
                        {
                            "round_trip_s": rt,
                            "poll": kind,
                            "requests": asked[kind] - before[kind],
                            "replies_shown": applied[f"{kind}-out"],
                            "window_s": window_s,
                        }
                    )
                page.close()
            browser.close()
    finally:
        srv.stop()
    assert not attempted, attempted
    return rows


def table(rows: list[dict]) -> str:
    by = {(r["round_trip_s"], r["poll"]): r for r in rows}
    window = rows[0]["window_s"]
    lines = [
        f"Replies shown in {window:g} s, polling every {PERIOD_MS} ms (requests sent):",
        "",
        "| server round trip | dcc.Interval | reply-driven chain (workbench/polls.py) |",
        "|---|---|---|",
    ]
    for rt in sorted({r["round_trip_s"] for r in rows}):
        cells = [
            f"{by[rt, k]['replies_shown']} ({by[rt, k]['requests']})" for k in ("interval", "chain")
        ]
        lines.append(f"| {rt:g} s | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--window", type=float, default=12.0, help="seconds counted per round trip")
    args = ap.parse_args(argv)
    rows = measure(args.window)
    save_json("polls", {"period_ms": PERIOD_MS, "rows": rows})
    text = table(rows)
    replace_marked(DOC, "polls", text)
    print(text)


if __name__ == "__main__":
    main()

"""Real-browser test: headless Debian Chromium (Playwright) against the workbench with the real
engine, every non-loopback request blocked and recorded.

One flow, in the order a user would go: load the page, compute the spectrum, animate a mode,
reject bad input, start GD and GNN side by side on a small loop, watch 3D frames and curves
change, stop, export a PDB and a CSV, replay a run; and no request may leave loopback.
Set WB_SCREENSHOT_DIR to keep screenshots of the main states.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from browser_util import ServerThread, chromium_missing, guard_offline, launch_browser

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if chromium_missing():
    pytest.skip(chromium_missing(), allow_module_level=True)

from playwright.sync_api import sync_playwright  # noqa: E402

N_BEADS = 60


def field(name: str) -> str:
    key = json.dumps({"name": name, "type": "field"}, sort_keys=True, separators=(",", ":"))
    return f"[id='{key}']"


def msg(name: str) -> str:
    key = json.dumps({"name": name, "type": "field-msg"}, sort_keys=True, separators=(",", ":"))
    return f"[id='{key}']"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from workbench import registry as reg
    from workbench.config import ServerConfig
    from workbench.server import create_app

    run_dir = tmp_path_factory.mktemp("runs")
    app = create_app(
        ServerConfig(run_dir=str(run_dir), bundle_dirs=(), structure_dirs=(), workers=2)
    )
    srv = ServerThread(app).start()
    yield srv
    srv.stop()
    reg.get().shutdown()


@pytest.fixture(scope="module")
def page(server):
    attempted: list[str] = []
    with sync_playwright() as p:
        browser = launch_browser(p)
        context = browser.new_context(
            viewport={"width": 1500, "height": 1300}, accept_downloads=True
        )
        guard_offline(context, attempted)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url)
        page.wait_for_selector("#wb-run")
        page.attempted, page.errors = attempted, errors
        yield page
        browser.close()


def shot(page, name: str) -> None:
    folder = os.environ.get("WB_SCREENSHOT_DIR")
    if folder:
        os.makedirs(folder, exist_ok=True)
        page.screenshot(path=os.path.join(folder, name), full_page=True)


def stats(page) -> dict:
    return page.evaluate("JSON.parse(JSON.stringify(window.wbStats || {}))")


def wait_until(page, predicate, timeout_s: float, what: str):
    end = time.time() + timeout_s
    while time.time() < end:
        value = predicate()
        if value:
            return value
        page.wait_for_timeout(200)  # lets Playwright process page events meanwhile
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def set_field(page, name: str, value: str) -> None:
    page.fill(field(name), value)
    page.press(field(name), "Tab")


def open_details(page, summary: str) -> None:
    page.locator("summary", has_text=summary).click()


def test_page_loads_offline_with_its_own_3dmol(page):
    assert page.evaluate("typeof $3Dmol") == "object"
    assert page.evaluate("typeof window.dash_clientside.wb.frame") == "function"
    # the JavaScript's ids come from the server (workbench/layout.py js_ids), not from literals
    assert page.evaluate("window.WB_IDS.live.POLL") == "wb-poll"
    assert page.evaluate("window.WB_IDS.page.SESSION") == "wb-session"
    set_field(page, "system.n", str(N_BEADS))
    page.wait_for_timeout(600)
    assert page.inner_text("#wb-system-summary").startswith(f"pure LJ loop, n = {N_BEADS} beads")
    shot(page, "01-start.png")


def test_spectrum_and_mode_animation(page):
    page.click("#wb-spec-run")
    page.wait_for_selector("#wb-spec-graph .scatterlayer .points path", timeout=90_000)
    status = page.inner_text("#wb-spec-status")
    assert f"{N_BEADS} modes" in status and "rigid-body" in status
    point = page.locator("#wb-spec-graph .scatterlayer .trace").first.locator(".points path").nth(3)
    box = point.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    wait_until(
        page,
        lambda: "Animating mode" in page.inner_text("#wb-spec-mode-info"),
        20,
        "mode animation",
    )
    assert "No real timescale" in page.inner_text("#wb-spec-mode-info")
    first = stats(page)["wb-spec-view"]["frames"]
    page.wait_for_timeout(600)
    assert stats(page)["wb-spec-view"]["frames"] > first + 3  # it keeps moving
    # the amplitude slider reaches the animation (same structure, new amplitude)
    page.locator("#wb-spec-amp [role=slider]").press("End")
    shot(page, "02-spectrum.png")


def test_bad_input_is_refused_next_to_the_field_and_starts_nothing(page):
    set_field(page, "system.n", "1e9")
    wait_until(page, lambda: "[50, 4000]" in page.inner_text(msg("system.n")), 10, "field message")
    page.click("#wb-run")
    wait_until(
        page, lambda: page.inner_text("#wb-run-msg").startswith("Not started"), 10, "refusal"
    )
    assert "system.n must be an integer in [50, 4000]" in page.inner_text("#wb-run-msg")
    assert page.locator(".wb-card").count() == 0
    set_field(page, "system.n", str(N_BEADS))
    wait_until(page, lambda: page.inner_text(msg("system.n")) == "", 10, "message cleared")
    # a file that is not a structure is refused next to the upload, with the cap stated
    page.get_by_text("Protein", exact=True).click()
    assert page.inner_text("#wb-upload + .wb-range") == "PDB format, at most 2 MB."
    page.set_input_files(
        "#wb-upload input[type=file]",
        files=[{"name": "notes.pdb", "mimeType": "text/plain", "buffer": b"just some text\n" * 20}],
    )
    wait_until(
        page,
        lambda: "is not a PDB structure" in page.inner_text("#wb-upload-msg"),
        10,
        "upload refusal",
    )
    page.get_by_text("Synthetic loop", exact=True).click()


def test_gd_and_gnn_side_by_side_live_stop_and_export(page):
    open_details(page, "Schedule and stopping")
    set_field(page, "schedule.max_steps", "200000")  # long enough to stop it by hand
    set_field(page, "schedule.patience", "10000")
    set_field(page, "schedule.stage1_max_steps", "400")
    page.wait_for_timeout(500)
    page.click("#wb-run")
    page.wait_for_selector(".wb-card >> nth=1", timeout=20_000)
    divs = page.eval_on_selector_all(".wb-card .wb-viewer", "els => els.map(e => e.id)")
    assert len(divs) == 2

    def frames_moving():
        s = stats(page)
        return (
            all(
                d in s and s[d]["frames"] >= 4 and s[d]["recv"] >= 2 and (s[d]["step"] or 0) > 0
                for d in divs
            )
            and s
        )

    wait_until(page, frames_moving, 180, "3D frames of both runs")

    def camera(d):
        return page.evaluate(f"window.wbViewers['{d}'].viewer.getView()")

    xs = [page.evaluate(f"window.wbViewers['{d}'].atoms[5].x") for d in divs]
    steps = [stats(page)[d]["step"] for d in divs]
    cameras = [camera(d) for d in divs]
    assert cameras[0] == cameras[1]  # linked views share one camera
    page.wait_for_timeout(1500)
    assert [page.evaluate(f"window.wbViewers['{d}'].atoms[5].x") for d in divs] != xs  # beads moved
    assert [stats(page)[d]["step"] for d in divs] != steps
    assert [camera(d) for d in divs] == cameras  # new coordinates, same camera
    page.locator(".wb-card").first.get_by_role("button", name="Fit view").click()
    wait_until(page, lambda: camera(divs[0]) != cameras[0], 30, "fit view")
    assert camera(divs[1]) == camera(divs[0])  # the linked view follows
    before = camera(divs[0])
    canvas = page.locator(f"#{divs[0]} canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 60, cy + 20, steps=5)
    page.mouse.up()
    wait_until(page, lambda: camera(divs[0]) != before, 10, "rotation by mouse")
    assert camera(divs[1]) == camera(divs[0])  # rotating one view turns the other
    # A new frame redraws its own view only, not the linked one too.
    s = stats(page)
    for d in divs:
        assert s[d]["renders"] <= s[d]["frames"] + 10, (d, s[d])
    n_points = page.evaluate(
        "document.querySelector('#wb-curves .js-plotly-plot').data.map(t => t.x.length)"
    )
    assert n_points[0] > 2 and n_points[1] > 2  # energy vs step grows for GD and GNN
    statuses = page.locator(".wb-status").all_inner_texts()
    assert statuses[0].startswith("GD · running") and statuses[1].startswith("GNN · running")
    shot(page, "03-live.png")

    page.click("#wb-stop-all")
    wait_until(
        page,
        lambda: all(
            ("stopped" in t or "done" in t) for t in page.locator(".wb-status").all_inner_texts()
        ),
        120,
        "both runs stopped",
    )
    assert "speed-up" in page.inner_text("#wb-speedup").lower()

    card = page.locator(".wb-card").first
    with page.expect_download() as dl:
        card.get_by_role("button", name="final PDB").click()
    pdb = open(dl.value.path()).read()
    assert pdb.count("ATOM") + pdb.count("HETATM") >= N_BEADS
    with page.expect_download() as dl:
        card.get_by_role("button", name="curves CSV").click()
    lines = open(dl.value.path()).read().splitlines()
    assert lines[0].startswith("step,stage,wall_time_s,energy") and len(lines) > 3


def test_replay_from_the_runs_list(page):
    wait_until(page, lambda: page.locator("#wb-runs-table button").count() >= 2, 10, "runs list")
    page.locator("#wb-runs-table button").first.click()
    page.wait_for_selector("#wb-replay-box >> visible=true")
    wait_until(page, lambda: "wb-replay-view" in stats(page), 20, "replay frame")
    # The replay opens on the last frame; its fetch may land after this point, so wait on
    # the step itself rather than on a frame counter.
    wait_until(page, lambda: stats(page)["wb-replay-view"]["step"] > 0, 20, "last frame")
    page.locator("#wb-replay-slider [role=slider]").press("Home")  # first frame
    wait_until(page, lambda: stats(page)["wb-replay-view"]["step"] == 0, 10, "slider frame")
    shot(page, "04-replay.png")


def test_second_session_sees_only_what_is_shared_with_it(page):
    other = page.context.browser.new_context(viewport={"width": 1300, "height": 1000})
    guard_offline(other, page.attempted)
    try:
        page2 = other.new_page()
        page2.goto(page.url.split("?")[0])
        page2.wait_for_selector("#wb-run")
        wait_until(
            page2, lambda: "No runs yet" in page2.inner_text("#wb-runs-table"), 10, "empty list"
        )
        page.locator(".wb-card").first.get_by_role("button", name="Share link").click()
        link = wait_until(
            page, lambda: page.locator(".wb-share code").first.inner_text(), 10, "link"
        )
        assert "?run=" in link
        page2.goto(link)
        wait_until(
            page2, lambda: "read-only" in page2.inner_text("#wb-replay-title"), 20, "shared replay"
        )
        assert page2.locator("#wb-replay-view canvas").count() == 1
    finally:
        other.close()


def test_nothing_left_loopback_and_no_page_errors(page):
    assert page.attempted == []
    assert page.errors == []

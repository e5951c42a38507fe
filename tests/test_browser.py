"""Real-browser test: headless Debian Chromium (Playwright) against the workbench with the real
engine, every non-loopback request blocked and recorded.

One flow, in the order a user would go: load the page (panels in workflow order, Run visible
at 1366×768), compute the spectrum, animate a mode, reject bad input, start GD and GNN side by
side on a small loop, watch 3D frames (each view follows its own structure, rotation is
linked, each frame drawn once in its own view) and curves change, stop, export a PDB and a CSV
(named by system, method and time), replay a run, open a run without frames (it replaces the
previous replay), check the runs table stays inside its panel; and no request may leave
loopback. Every wait is on a condition (``browser_util.wait_until``), never a fixed sleep.
Set WB_SCREENSHOT_DIR to keep screenshots of the main states.
"""

from __future__ import annotations

import json
import os
import re

import pytest
from browser_util import (
    PATIENCE,
    ServerThread,
    chromium_missing,
    click_plot_point,
    launch_browser,
    offline_context,
    text_of,
    wait_until,
    workbench_config,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if chromium_missing():
    pytest.skip(chromium_missing(), allow_module_level=True)

from playwright.sync_api import sync_playwright  # noqa: E402

N_BEADS = 60
VIEWPORT = {"width": 1366, "height": 768}  # the smallest screen the layout is made for
# workflow order; the lessons drawer is fixed to a corner, outside the flow
PANEL_ORDER = ["system", "spectrum", "method", "live", "runs", "teach", "sweep"]


def field(name: str) -> str:
    key = json.dumps({"name": name, "type": "field"}, sort_keys=True, separators=(",", ":"))
    return f"[id='{key}']"


def msg(name: str) -> str:
    key = json.dumps({"name": name, "type": "field-msg"}, sort_keys=True, separators=(",", ":"))
    return f"[id='{key}']"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from workbench import registry as reg
    from workbench.server import create_app

    run_dir = tmp_path_factory.mktemp("runs")
    app = create_app(workbench_config(run_dir, warm_up=True))  # its runs are the opening demo
    srv = ServerThread(app).start()
    yield srv
    srv.stop()
    reg.get().shutdown()


@pytest.fixture(scope="module")
def page(server):
    attempted: list[str] = []
    with sync_playwright() as p:
        browser = launch_browser(p)
        context = offline_context(browser, attempted, viewport=VIEWPORT, accept_downloads=True)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url)
        page.wait_for_selector("#wb-run")
        page.attempted, page.errors = attempted, errors
        yield page
        browser.close()


def shot(page, name: str) -> None:
    """Keep a whole-page screenshot in $WB_SCREENSHOT_DIR, if set. The window is made as tall
    as the page for it, so the sticky Run row sits where it belongs, not mid-page."""
    folder = os.environ.get("WB_SCREENSHOT_DIR")
    if folder:
        os.makedirs(folder, exist_ok=True)
        size = page.viewport_size
        height = page.evaluate("document.documentElement.scrollHeight")
        page.set_viewport_size({"width": size["width"], "height": max(height, size["height"])})
        try:
            page.screenshot(path=os.path.join(folder, name), full_page=True)
        finally:
            page.set_viewport_size(size)


def stats(page) -> dict:
    return page.evaluate("JSON.parse(JSON.stringify(window.wbStats || {}))")


def frames_of(div: str) -> str:
    """JavaScript expression: frames drawn so far in the viewer ``div`` (0 before any)."""
    return f"((window.wbStats || {{}})[{json.dumps(div)}] || {{frames: 0}}).frames"


def set_field(page, name: str, value: str) -> None:
    """Type ``value`` into a form field and wait until Dash holds it (its debounce is over)."""
    page.fill(field(name), value)
    page.press(field(name), "Tab")
    wait_until(
        page,
        """([id, v]) => {
            const node = window.dash_component_api.getLayout(JSON.parse(id));
            return node && node.props.value === v;
        }""",
        10,
        f"{name} = {value} to reach Dash",
        arg=[
            json.dumps({"name": name, "type": "field"}, sort_keys=True, separators=(",", ":")),
            value,
        ],
    )


def open_details(page, summary: str) -> None:
    page.locator("summary", has_text=summary).click()


def test_page_loads_offline_with_its_own_3dmol(page):
    assert page.evaluate("typeof $3Dmol") == "object"
    assert page.evaluate("typeof window.dash_clientside.wb.frame") == "function"
    # the JavaScript's ids come from the server (workbench/layout.py js_ids), not from literals
    assert page.evaluate("window.WB_IDS.live.POLL") == "wb-poll"
    assert page.evaluate("window.WB_IDS.page.SESSION") == "wb-session"
    set_field(page, "system.n", str(N_BEADS))
    wait_until(
        page,
        f"{text_of('#wb-system-summary')}.startsWith('Bond + LJ loop, n = {N_BEADS} beads')",
        10,
        "the system summary",
    )
    shot(page, "01-start.png")


def panel_boxes(page) -> list[dict]:
    return page.eval_on_selector_all(
        "[data-panel]",
        """els => els.map(e => {
            const r = e.getBoundingClientRect();
            return {name: e.dataset.panel, top: Math.round(r.top + window.scrollY),
                    left: Math.round(r.left), right: r.right, bottom: r.bottom};
        })""",
    )


@pytest.mark.parametrize("width, height", [(1366, 768), (1600, 1000)])
def test_panels_read_in_workflow_order_and_run_is_visible(page, width, height):
    context = offline_context(
        page.context.browser, page.attempted, viewport={"width": width, "height": height}
    )
    fresh = context.new_page()
    try:
        fresh.goto(page.url.split("?")[0])
        fresh.wait_for_selector("#wb-run")
        boxes = [b for b in panel_boxes(fresh) if b["name"] != "lessons"]
        assert [b["name"] for b in boxes] == PANEL_ORDER  # the DOM order
        # on screen, top to bottom then left to right: the same order
        on_screen = sorted(boxes, key=lambda b: (b["top"], b["left"]))
        assert [b["name"] for b in on_screen] == PANEL_ORDER
        setup = boxes[:3]  # system | spectrum | method side by side in one row
        assert len({b["top"] for b in setup}) == 1
        assert setup[0]["right"] <= setup[1]["left"] and setup[1]["right"] <= setup[2]["left"]
        assert all(b["right"] <= width for b in boxes)
        # Run is in the window without scrolling, and nothing covers it. Box and hit test in
        # one evaluation, repeated until the page has settled: a late render moving the
        # button between the two once hit the panel under its old place.
        assert fresh.evaluate("window.scrollY") == 0
        run = wait_until(
            fresh,
            """() => {
                const b = document.getElementById('wb-run'), r = b.getBoundingClientRect();
                const hit = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
                return (hit === b || b.contains(hit)) && {x: r.x, y: r.y, width: r.width,
                                                          height: r.height};
            }""",
            10,
            "the Run button on top at its place",
        )
        assert 0 <= run["y"] and run["y"] + run["height"] <= height, run
        assert 0 <= run["x"] and run["x"] + run["width"] <= width, run
        assert fresh.evaluate("document.documentElement.scrollWidth") <= width
    finally:
        context.close()


def test_spectrum_and_mode_animation(page):
    page.click("#wb-spec-run")
    page.wait_for_selector("#wb-spec-graph .scatterlayer .points path", timeout=PATIENCE * 90_000)
    status = page.inner_text("#wb-spec-status")
    assert f"{N_BEADS} modes" in status and "rigid-body" in status
    click_plot_point(page, "#wb-spec-graph", 3)
    wait_until(
        page, f"{text_of('#wb-spec-mode-info')}.includes('Animating mode')", 20, "mode animation"
    )
    assert "No real timescale" in page.inner_text("#wb-spec-mode-info")
    first = stats(page)["wb-spec-view"]["frames"]
    wait_until(page, f"{frames_of('wb-spec-view')} > {first + 3}", 20, "the mode to keep moving")
    # the amplitude slider reaches the animation (same structure, new amplitude)
    page.locator("#wb-spec-amp [role=slider]").press("End")
    shot(page, "02-spectrum.png")


def test_bad_input_is_refused_next_to_the_field_and_starts_nothing(page):
    set_field(page, "system.n", "1e9")
    wait_until(page, f"{text_of(msg('system.n'))}.includes('[50, 100000]')", 10, "field message")
    page.click("#wb-run")
    wait_until(page, f"{text_of('#wb-run-msg')}.startsWith('Not started')", 10, "refusal")
    assert "system.n must be an integer in [50, 100000]" in page.inner_text("#wb-run-msg")
    assert page.locator(".wb-card").count() == 0
    set_field(page, "system.n", str(N_BEADS))
    wait_until(page, f"{text_of(msg('system.n'))} === ''", 10, "message cleared")
    # a file that is not a structure is refused next to the upload, with the cap stated
    page.get_by_text("Protein", exact=True).click()
    assert page.inner_text("#wb-upload + .wb-range") == "PDB format, at most 2 MB."
    page.set_input_files(
        "#wb-upload input[type=file]",
        files=[{"name": "notes.pdb", "mimeType": "text/plain", "buffer": b"just some text\n" * 20}],
    )
    wait_until(
        page,
        f"{text_of('#wb-upload-msg')}.includes('is not a PDB structure')",
        10,
        "upload refusal",
    )
    page.get_by_text("Synthetic loop", exact=True).click()


def test_gd_and_gnn_side_by_side_live_stop_and_export(page):
    open_details(page, "Schedule and stopping")
    set_field(page, "schedule.max_steps", "5000000")  # long enough to stop it by hand
    set_field(page, "schedule.patience", "10000")
    set_field(page, "schedule.stage1_max_steps", "400")
    page.click("#wb-run")
    page.wait_for_selector(".wb-card >> nth=1")
    divs = page.eval_on_selector_all(".wb-card .wb-viewer", "els => els.map(e => e.id)")
    assert len(divs) == 2

    wait_until(
        page,
        """divs => divs.every(d => {
            const s = (window.wbStats || {})[d];
            return s && s.frames >= 4 && s.recv >= 2 && (s.step || 0) > 0;
        })""",
        90,
        "3D frames of both runs",
        arg=divs,
    )

    def rotations():
        """The rotation quaternion (getView()[4:]) of each view, read in one go."""
        return page.evaluate(
            "divs => divs.map(d => window.wbViewers[d].viewer.getView().slice(4))", divs
        )

    def atom_x(d):
        return page.evaluate(f"window.wbViewers['{d}'].atoms[5].x")

    xs = [atom_x(d) for d in divs]
    before = stats(page)
    steps = [before[d]["step"] for d in divs]
    turned = rotations()
    # each view frames its own structure (centre and zoom differ); only rotation is linked
    assert turned[0] == turned[1]
    assert all(before[d]["follow"] for d in divs)  # both follow until the user moves one
    wait_until(
        page,
        """([divs, xs, steps, n]) => divs.every((d, i) =>
            window.wbViewers[d].atoms[5].x !== xs[i] && window.wbStats[d].step !== steps[i] &&
            window.wbStats[d].frames >= n[i] + 5)""",
        60,
        "new frames in both views (beads moved, steps advanced, 5 frames drawn)",
        arg=[divs, xs, steps, [before[d]["frames"] for d in divs]],
    )
    after = stats(page)
    assert rotations() == turned  # following new coordinates re-frames, never turns the view
    # A new frame redraws its own view, once, and not the linked one too: renders against
    # frames drawn while no user input moved a camera (rotating and Fit render on their own).
    # Checked at the end of the test, so that a failure still leaves the runs stopped.
    redraws = {
        d: (after[d]["frames"] - before[d]["frames"], after[d]["renders"] - before[d]["renders"])
        for d in divs
    }
    # the user rotates the first view: the other takes the rotation (not its framing)
    canvas = page.locator(f"#{divs[0]} canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 60, cy + 20, steps=5)
    page.mouse.up()
    wait_until(
        page,
        """([d, b]) => !window.wbStats[d].follow &&
            window.wbViewers[d].viewer.getView().slice(4).some((v, i) => v !== b[i])""",
        10,
        "rotation by mouse (and that view no longer following)",
        arg=[divs[0], turned[0]],
    )
    turned = rotations()
    assert turned[1] == turned[0]  # rotating one view turns the other
    # Fit on the first card frames that view again (it follows its structure once more) and
    # leaves the rotation, in both views, as the user set it
    page.locator(".wb-card").first.get_by_role("button", name="Fit view").click()
    wait_until(
        page, f"window.wbStats[{json.dumps(divs[0])}].follow === true", 30, "fit view to follow"
    )
    assert rotations() == turned
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
        """() => [...document.querySelectorAll('.wb-status')].every(
            e => e.innerText.includes('stopped') || e.innerText.includes('done'))""",
        120,
        "both runs stopped",
    )
    assert "speed-up" in page.inner_text("#wb-speedup").lower()

    card = page.locator(".wb-card").first
    with page.expect_download() as dl:
        card.get_by_role("button", name="final PDB").click()
    # exports are named by system, method and start time
    assert re.fullmatch(r"bond-lj-loop-n\d+_gd_\d{8}-\d{6}_final\.pdb", dl.value.suggested_filename)
    pdb = open(dl.value.path()).read()
    assert pdb.count("ATOM") + pdb.count("HETATM") >= N_BEADS
    with page.expect_download() as dl:
        card.get_by_role("button", name="curves CSV").click()
    assert dl.value.suggested_filename.endswith("_curves.csv")
    lines = open(dl.value.path()).read().splitlines()
    assert lines[0].startswith("step,stage,wall_time_s,energy") and len(lines) > 3
    for d, (drawn, rendered) in redraws.items():
        assert rendered <= drawn + 2, f"{d}: {rendered} renders for {drawn} frames drawn"


def test_runs_are_listed_by_system_method_and_time(page):
    wait_until(
        page, "document.querySelectorAll('#wb-runs-table button').length >= 2", 10, "runs list"
    )
    names = page.locator("#wb-runs-table .wb-runs-name").all_inner_texts()
    pattern = rf"bond-lj-loop n={N_BEADS} · (GD|GNN) · \d\d:\d\d:\d\d"  # the opening demo's
    assert all(re.fullmatch(pattern, n) for n in names), names


def test_replay_from_the_runs_list(page):
    page.locator("#wb-runs-table button").first.click()
    page.wait_for_selector("#wb-replay-box >> visible=true")
    # The replay opens on the last frame; its fetch may land after this point, so wait on
    # the step itself rather than on a frame counter.
    last = "((window.wbStats || {})['wb-replay-view'] || {}).step"
    wait_until(page, f"{last} > 0", 20, "the last frame in the replay")
    assert re.fullmatch(
        rf"bond-lj-loop n={N_BEADS} · (GD|GNN) · \d\d:\d\d:\d\d",
        page.inner_text("#wb-replay-name"),
    )
    page.locator("#wb-replay-slider [role=slider]").press("Home")  # first frame
    wait_until(page, f"{last} === 0", 10, "the slider's frame")
    shot(page, "04-replay.png")


def session_id(page) -> str:
    return json.loads(page.evaluate("sessionStorage.getItem('wb-session')"))


def test_a_run_without_frames_replaces_the_replay_and_exports_its_own_data(page):
    from engine import RunSpec, SystemConfig
    from workbench import registry as reg

    # a run that fails before its first frame (its structure file does not exist)
    spec = RunSpec(system=SystemConfig(kind="protein", pdb="/nonexistent/lost.pdb"))
    run_id = reg.get().submit(spec, owner=session_id(page), label="gd")
    button = f"[id='{json.dumps({'index': run_id, 'type': 'run-open'}, separators=(',', ':'))}']"
    page.wait_for_selector(button)  # the list refreshes every 2 s
    wait_until(page, f"{text_of('#wb-runs-table')}.includes('failed')", 30, "the failed run")
    assert "atoms" in page.evaluate("Object.keys(window.wbViewers['wb-replay-view'])")
    assert page.evaluate("window.wbViewers['wb-replay-view'].atoms.length") == N_BEADS
    page.click(button)
    wait_until(
        page,
        f"{text_of('#wb-replay-title')}.endsWith('no frames stored for this run')",
        20,
        "the no-frames message",
    )
    # the previous run's beads and curves are gone
    wait_until(
        page, "window.wbViewers['wb-replay-view'].atoms.length === 0", 10, "an empty replay view"
    )
    points = page.evaluate(
        "document.querySelector('#wb-replay-curves .js-plotly-plot').data.map(t => t.x.length)"
    )
    assert sum(points) == 0
    buttons = page.locator("#wb-replay-exports button").all_inner_texts()
    assert buttons == ["curves CSV", "config JSON"]
    with page.expect_download() as dl:
        page.locator("#wb-replay-exports").get_by_role("button", name="curves CSV").click()
    assert dl.value.suggested_filename.startswith("protein-lost_gd_")
    assert open(dl.value.path()).read().splitlines()[1:] == []  # its own (empty) curves


@pytest.mark.parametrize("width", [1366, 1600])
def test_runs_table_stays_inside_its_panel(page, width):
    page.set_viewport_size({"width": width, "height": 768})
    try:
        box = page.evaluate(
            """() => {
                const t = document.getElementById('wb-runs-table');
                const panel = t.closest('.wb-panel'), s = getComputedStyle(t);
                return {maxHeight: s.maxHeight, overflowY: s.overflowY,
                        height: t.getBoundingClientRect().height,
                        scroll: t.scrollWidth, client: t.clientWidth,
                        panelScroll: panel.scrollWidth, panelClient: panel.clientWidth,
                        page: document.documentElement.scrollWidth};
            }"""
        )
        assert box["maxHeight"].endswith("px") and box["overflowY"] == "auto", box
        assert box["height"] <= float(box["maxHeight"][:-2]) + 1, box  # bounded: it scrolls
        assert box["scroll"] <= box["client"] and box["panelScroll"] <= box["panelClient"], box
        assert box["page"] <= width, box
    finally:
        page.set_viewport_size(VIEWPORT)


def test_second_session_sees_only_what_is_shared_with_it(page):
    other = offline_context(
        page.context.browser, page.attempted, viewport={"width": 1300, "height": 1000}
    )
    try:
        page2 = other.new_page()
        page2.goto(page.url.split("?")[0])
        page2.wait_for_selector("#wb-run")
        wait_until(page2, f"{text_of('#wb-runs-table')}.includes('No runs yet')", 10, "empty list")
        page.locator(".wb-card").first.get_by_role("button", name="Share link").click()
        link = wait_until(page, text_of(".wb-share code"), 10, "link")
        assert "?run=" in link
        page2.goto(link)
        wait_until(
            page2, f"{text_of('#wb-replay-title')}.includes('read-only')", 20, "shared replay"
        )
        assert page2.locator("#wb-replay-view canvas").count() == 1
    finally:
        other.close()


def test_nothing_left_loopback_and_no_page_errors(page):
    assert page.attempted == []
    assert page.errors == []

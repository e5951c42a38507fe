"""Real-browser test of panel T (issue 12 items 2-4): the conditioning view, the propagation
graph over a run's structure (toggled, at a chosen frame; over the run's card and over the
replay viewer, whose slider moves the graph's frame) and the landscape slice render from
the real engine on a small Bond+LJ loop; each wait names what it waits for.

Set WB_SCREENSHOT_DIR to keep a screenshot of each view (docs/screenshots/teaching-*.png).
"""

from __future__ import annotations

import os
import re

import pytest
from browser_util import chromium_missing, open_workbench, poll_until, workbench_config
from test_browser_live import set_field

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if chromium_missing():
    pytest.skip(chromium_missing(), allow_module_level=True)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs")
    config = workbench_config(run_dir)
    with open_workbench(config) as page:
        yield page


def _shot(page, selector: str, name: str) -> None:
    shots = os.environ.get("WB_SCREENSHOT_DIR")
    if shots:
        page.locator(selector).screenshot(path=os.path.join(shots, name))


def _visible(page, gid: str) -> bool:
    return page.locator(f"#{gid} .main-svg").count() > 0 and page.is_visible(f"#{gid}")


def test_conditioning_graph_and_landscape_render(page):
    from workbench.panels.teach import ID

    set_field(page, "system.n", "50")
    page.locator("summary", has_text="Schedule and stopping").click()
    set_field(page, "schedule.max_steps", "400")
    # conditioning of the form's system
    page.click(f"#{ID.COND_BTN}")
    poll_until(page, lambda: _visible(page, ID.COND_GRAPH), 120, "the conditioning chart")
    status = page.inner_text(f"#{ID.COND_STATUS}")
    assert status.startswith("H in positions, at x0: κ = ") and "CG at its start" in status
    ticks = page.eval_on_selector_all(
        f"#{ID.COND_GRAPH} .ytick text", "els => els.map(e => e.textContent)"
    )
    assert sum("κ = " in t for t in ticks) >= 3
    # then the GNN's replay to its switch adds its row (or says it never switched)
    try:
        poll_until(
            page,
            lambda: re.search(
                r"GNN at its switch \(step \d+\)|did not reach its stage switch",
                page.inner_text(f"#{ID.COND_STATUS}"),
            ),
            120,
            "the conditioning view's second part",
        )
    except AssertionError as timed_out:  # say where it stood (it stalled once under load)
        status = page.inner_text(f"#{ID.COND_STATUS}")
        raise AssertionError(f"{timed_out}; status: {status!r}") from None
    _shot(page, "[data-panel=teach]", "teaching-conditioning.png")
    # two runs, then the GNN's graph over its structure
    checks = page.locator("#wb-methods input")
    for i in range(checks.count()):
        value = checks.nth(i).get_attribute("value")
        if checks.nth(i).is_checked() != (value in ("gd", "gnn")):
            checks.nth(i).click()
    page.click("#wb-run")
    poll_until(
        page,
        lambda: page.locator(".wb-card").count() == 2 or "Not" in page.inner_text("#wb-run-msg"),
        60,
        "two run cards",
    )
    assert page.locator(".wb-card").count() == 2, page.inner_text("#wb-run-msg")
    poll_until(
        page,
        lambda: page.locator(".wb-status", has_text="done").count() == 2,
        120,
        "both runs done",
    )
    page.click(f"#{ID.REFRESH}")
    page.locator("[data-panel=teach]").get_by_text("Propagation graph", exact=True).click()
    page.click(f"#{ID.GRAPH_RUN}")
    page.get_by_role("option", name=re.compile(r"^gnn.* · run ", re.IGNORECASE)).first.click()
    page.click(f"#{ID.GRAPH_BTN}")
    poll_until(page, lambda: _visible(page, ID.GRAPH_3D), 120, "the propagation graph")
    poll_until(
        page, lambda: "strongest edges" in page.inner_text(f"#{ID.GRAPH_3D}"), 20, "its title"
    )
    assert "frame" in page.inner_text(f"#{ID.GRAPH_STATUS}")
    assert _visible(page, ID.GRAPH_HIST)
    _shot(page, "[data-panel=teach]", "teaching-graph.png")
    # the same edges over the GNN run's card (its 3Dmol view), then off with the edges
    gnn_div = page.eval_on_selector_all(
        ".wb-card",
        "els => els.filter(e => e.querySelector('.wb-card-title').textContent === 'GNN')"
        ".map(e => e.querySelector('[data-run]').id)",
    )[0]
    drawn = f"(() => ((window.wbStats[{gnn_div!r}] || {{}}).edges || 0))()"
    page.locator(f"#{ID.GRAPH_CARDS} input").click()
    poll_until(page, lambda: page.evaluate(drawn) == 200, 20, "200 edges over the GNN's card")
    assert "drawn over the run's 3D views too" in page.inner_text(f"#{ID.GRAPH_STATUS}")
    _shot(page, ".wb-cards", "teaching-graph-cards.png")
    # a replayed run: opening the GNN run for replay keeps it the graph's run, draws the edges
    # over the replay viewer, and the replay slider moves the graph's frame
    page.locator("#wb-runs-table tr", has_text="· GNN ·").locator("button").first.click()
    page.wait_for_selector("#wb-replay-box >> visible=true")
    replay_edges = "(() => ((window.wbStats['wb-replay-view'] || {}).edges || 0))()"
    poll_until(page, lambda: page.evaluate(replay_edges) == 200, 30, "edges over the replay")
    frames = re.search(r"frame (\d+) of (\d+)", page.inner_text(f"#{ID.GRAPH_STATUS}"))
    assert frames and frames[1] == frames[2], page.inner_text(f"#{ID.GRAPH_STATUS}")
    page.locator("#wb-replay-slider [role=slider]").press("Home")  # the replay's first frame
    poll_until(
        page,
        lambda: f"frame 1 of {frames[2]}." in page.inner_text(f"#{ID.GRAPH_STATUS}"),
        20,
        "the graph at the replay's first frame",
    )
    page.locator(f"#{ID.GRAPH_EDGES} input").click()  # edges off
    poll_until(
        page,
        lambda: "the 0 strongest edges" in page.inner_text(f"#{ID.GRAPH_3D}"),
        20,
        "the edges toggled off",
    )
    poll_until(page, lambda: page.evaluate(drawn) == 0, 20, "the card's edges gone")
    poll_until(page, lambda: page.evaluate(replay_edges) == 0, 20, "the replay's edges gone")
    # the landscape slice with both runs' paths
    page.locator("[data-panel=teach]").get_by_text("Landscape slice", exact=True).click()
    page.locator(f"#{ID.LAND_RUNS}").click()
    options = page.locator("[role=option]:visible", has_text=" · run ")
    poll_until(page, lambda: options.count() >= 2, 20, "the landscape's run options")
    for k in range(2):  # two runs: the menu of a multiple choice stays open
        options.nth(k).click()
    page.keyboard.press("Escape")
    chosen = page.inner_text(f"#{ID.LAND_RUNS}")
    assert chosen.count(" · run ") == 2, chosen
    page.click(f"#{ID.LAND_BTN}")

    def landscape_done():
        status = page.inner_text(f"#{ID.LAND_STATUS}")
        return _visible(page, ID.LAND_GRAPH) or "Not computed" in status or "failed" in status

    poll_until(page, landscape_done, 120, "the landscape slice")
    status = page.inner_text(f"#{ID.LAND_STATUS}")
    assert _visible(page, ID.LAND_GRAPH) and "2 path(s)" in status, status
    legend = page.eval_on_selector_all(
        f"#{ID.LAND_GRAPH} .legendtext", "els => els.map(e => e.textContent)"
    )
    assert len(legend) == 2 and all("in the plane" in t for t in legend)
    _shot(page, "[data-panel=teach]", "teaching-landscape.png")
    assert not page.errors

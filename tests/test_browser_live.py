"""Real-browser test of the live cards (issue 9): GD and GNN side by side on a small loop.

Checks the backbone coloured along the chain, stretched bonds drawn apart and counted (in the
view and on the card), each view framing and following its own structure until the user
rotates it, rotation linked, Fit acting on its own card only, and the speed-up table with GD
as reference. Set WB_SCREENSHOT_DIR to keep a screenshot of the finished group.
"""

from __future__ import annotations

import json
import os
import re

import pytest
from browser_util import chromium_missing, open_workbench, poll_until, workbench_config

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if chromium_missing():
    pytest.skip(chromium_missing(), allow_module_level=True)


N_BEADS = 60


def field(name: str) -> str:
    key = json.dumps({"name": name, "type": "field"}, sort_keys=True, separators=(",", ":"))
    return f"[id='{key}']"


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs")
    config = workbench_config(run_dir)
    with open_workbench(config) as page:
        yield page


def stats(page) -> dict:
    return page.evaluate("JSON.parse(JSON.stringify(window.wbStats || {}))")


def view(page, div: str) -> list:
    return page.evaluate(f"window.wbViewers['{div}'].viewer.getView()")


def set_field(page, name: str, value: str) -> None:
    page.fill(field(name), value)
    page.press(field(name), "Tab")


def drag(page, div: str) -> None:
    canvas = page.locator(f"#{div} canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 60, cy + 25, steps=5)
    page.mouse.up()


def test_stretched_bonds_are_drawn_apart_and_counted(page):
    """A hand-made 4-bead chain whose middle bond is 3 rest lengths long."""
    page.evaluate(
        """() => {
        const el = document.createElement('div');
        el.id = 'wb-test-view';
        el.style.cssText = 'position:relative;width:200px;height:200px';
        document.body.appendChild(el);
        window.dash_clientside.wb.frame({div: 'wb-test-view', key: 't',
          view: {kind: 'loop', n: 4, scale: 1, stretch: 2, bonds: [0, 1, 1, 2, 2, 3],
                 x0: [0, 0, 0, 1, 0, 0, 4, 0, 0, 5, 0, 0]},
          xyz: [0, 0, 0, 1, 0, 0, 4, 0, 0, 5, 0, 0], step: 0});
    }"""
    )
    s = stats(page)["wb-test-view"]
    assert s["stretched"] == 1
    bonds = page.evaluate("window.wbViewers['wb-test-view'].atoms.map(a => a.bonds.slice())")
    assert bonds == [[1], [0], [3], [2]]  # the stretched bond 1-2 left the backbone
    badge = page.inner_text("#wb-test-view .wb-viewer-badge")
    assert badge.startswith("1 stretched bond")
    page.evaluate("document.getElementById('wb-test-view').remove()")


def test_a_long_loop_on_software_webgl_is_drawn_as_its_backbone_line(page):
    """Beads are rebuilt every frame: above 800 beads on software WebGL (this browser), only
    the backbone line is drawn; a short loop keeps its beads."""
    styles = page.evaluate(
        """() => {
        const out = {};
        for (const n of [40, 1000]) {
          const el = document.createElement('div');
          el.id = 'wb-test-loop-' + n;
          el.style.cssText = 'position:relative;width:200px;height:200px';
          document.body.appendChild(el);
          const x = [], bonds = [];
          for (let i = 0; i < n; i++) x.push(Math.cos(i / 10), Math.sin(i / 10), i / 50);
          for (let i = 0; i + 1 < n; i++) bonds.push(i, i + 1);
          window.dash_clientside.wb.frame({div: el.id, key: 'long' + n,
            view: {kind: 'loop', n: n, scale: 1, stretch: 0, bonds: bonds, x0: x},
            xyz: x, step: 0});
          const badge = el.querySelector('.wb-viewer-badge');
          out[n] = [Object.keys(window.wbViewers[el.id].atoms[0].style).sort(),
                    badge ? badge.textContent : ''];
          el.remove();
        }
        return out;
    }"""
    )
    assert styles == {
        "40": [["line", "sphere"], ""],
        "1000": [["line"], "backbone line only: beads off above 800 without a GPU"],
    }


def test_gd_and_gnn_cards_frame_follow_fit_and_speedup(page):
    set_field(page, "system.n", str(N_BEADS))
    page.locator("summary", has_text="Schedule and stopping").click()
    set_field(page, "schedule.max_steps", "5000000")  # long enough to watch it follow
    set_field(page, "schedule.patience", "10000")
    set_field(page, "schedule.stage1_max_steps", "400")
    page.wait_for_timeout(500)
    page.click("#wb-run")
    page.wait_for_selector(".wb-card >> nth=1")
    titles = page.locator(".wb-card-title").all_inner_texts()
    divs = page.eval_on_selector_all(".wb-card .wb-viewer", "els => els.map(e => e.id)")
    assert titles == ["GD", "GNN"] and len(divs) == 2
    a, b = divs

    def moving(n):
        s = stats(page)
        return all(d in s and s[d]["frames"] >= n and (s[d]["step"] or 0) > 0 for d in divs)

    poll_until(page, lambda: moving(4), 90, "3D frames of both runs")
    # the backbone is coloured along the chain: blue end, red end
    colors = page.evaluate(f"window.wbViewers['{a}'].atoms.map(x => x.color)")
    assert len(colors) == N_BEADS and colors[0] != colors[-1] and len(set(colors)) > N_BEADS // 2
    # each view frames its own structure and follows it while frames arrive
    n0 = stats(page)[a]["frames"]  # before the view: a frame between the two is then counted
    start = view(page, a)
    poll_until(page, lambda: view(page, a)[:4] != start[:4], 60, "view A following")
    assert stats(page)[a]["frames"] > n0 and stats(page)[a]["follow"]
    # the user rotates A: A stops following, B takes the rotation and keeps its own framing
    drag(page, a)
    poll_until(page, lambda: not stats(page)[a]["follow"], 10, "A stops following")
    held = view(page, a)
    assert view(page, b)[4:] == held[4:]  # rotation linked
    assert stats(page)[b]["follow"]
    n1 = stats(page)[a]["frames"]
    poll_until(page, lambda: stats(page)[a]["frames"] >= n1 + 3, 60, "more frames of A: "
               + " | ".join(page.locator(".wb-status").all_inner_texts()))  # fmt: skip
    assert view(page, a) == held  # new coordinates, the user's camera stays
    # the card's status line ticks and the structure line is there
    status = page.locator(".wb-status").first.inner_text()
    assert status.startswith("GD")
    poll_until(
        page,
        lambda: all("bonds intact" in t for t in page.locator(".wb-structure").all_inner_texts()),
        30,
        "structure lines",
    )

    page.click("#wb-stop-all")
    poll_until(
        page,
        lambda: all(
            ("stopped" in t or "done" in t or "cancelled" in t)
            for t in page.locator(".wb-status").all_inner_texts()
        ),
        120,
        "both runs stopped",
    )

    # stretched bonds: the card counts what the view draws apart (final frame, last row)
    def agree():
        lines = page.locator(".wb-structure").all_inner_texts()
        counts = [int(m.group(1)) if m else 0
                  for m in (re.search(r"\((\d+) stretched", t) for t in lines)]  # fmt: skip
        return counts == [stats(page)[d]["stretched"] for d in divs]

    poll_until(page, agree, 20, "view and card agree on stretched bonds")
    # Fit on card A frames A only: B's camera (target, zoom, rotation) stays where it was
    drag(page, b)
    poll_until(page, lambda: not stats(page)[b]["follow"], 10, "B stops following")
    before_b, before_a = view(page, b), view(page, a)
    page.locator(".wb-card").first.get_by_role("button", name="Fit view").click()
    poll_until(page, lambda: stats(page)[a]["follow"], 10, "A follows again")
    assert view(page, a) != before_a
    assert view(page, b) == before_b
    # the speed-up table: GD is the reference, best entries marked, the threshold explained
    poll_until(page, lambda: "Threshold" in page.inner_text("#wb-speedup"), 30, "speed-up")
    ref = page.locator("#wb-speedup td.wb-ref").all_inner_texts()
    assert len(ref) == 1 and ref[0].startswith("GD")
    assert page.locator("#wb-speedup td.wb-best").count() >= 1
    assert "Threshold: energy ≤" in page.inner_text("#wb-speedup")
    folder = os.environ.get("WB_SCREENSHOT_DIR")
    if folder:
        os.makedirs(folder, exist_ok=True)
        page.screenshot(path=os.path.join(folder, "live-cards.png"), full_page=True)
    assert page.attempted == [] and page.errors == []

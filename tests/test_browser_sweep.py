"""Real-browser test of the Sweep panel (issue 11): a small sweep over the learning rate and two
seeds runs on an embedded Dask cluster, the Figure 3 scatter fills in, and a row of the results
table opens that run in the Runs panel's replay."""

from __future__ import annotations

import json

import pytest
from browser_util import chromium_missing, open_workbench, text_of, wait_until, workbench_config

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if chromium_missing():
    pytest.skip(chromium_missing(), allow_module_level=True)


def field(name: str) -> str:
    key = json.dumps({"name": name, "type": "field"}, sort_keys=True, separators=(",", ":"))
    return f"[id='{key}']"


def type_into(page, selector: str, value: str) -> None:
    page.fill(selector, value)
    page.press(selector, "Tab")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs")
    config = workbench_config(run_dir, sweep_workers=2)
    with open_workbench(config, ready="#wb-sweep-start") as page:
        yield page


def test_a_sweep_fills_the_figure3_scatter_and_opens_a_run(page):
    page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
    type_into(page, field("system.n"), "50")
    type_into(page, field("schedule.max_steps"), "100")
    type_into(page, "#wb-sweep-seeds", "0-1")
    plan_js = (
        f"() => {{ const t = {text_of('#wb-sweep-plan')}; return t.includes('12 runs') && t; }}"
    )
    plan = wait_until(page, plan_js, 30, "the plan: 3 learning rates x 2 methods x 2 seeds")
    assert "estimated" in plan and "3 settings × 2 methods × 2 seeds" in plan
    page.click("#wb-sweep-start")
    seen = set()
    for target in (1, 12):  # the status counts runs as they finish, up to all of them
        status = wait_until(
            page,
            f"""(k) => {{ const t = {text_of('#wb-sweep-status')};
                         const m = t.match(/(\\d+) of 12 runs/); return m && +m[1] >= k && t; }}""",
            120, f"{target} finished runs", arg=target,
        )  # fmt: skip
        seen.add(status)
    assert "done" in status and "12 of 12 runs" in status
    points = page.evaluate(
        "document.querySelector('#wb-sweep-scatter .js-plotly-plot').data"
        ".map(t => [t.name, t.x.length])"
    )
    assert sorted(points) == [["GD", 3], ["GNN", 3]]  # mean ± sd over the two seeds per point
    assert (
        page.evaluate(
            "document.querySelector('#wb-sweep-parallel .js-plotly-plot').data[0].dimensions.length"
        )
        >= 4
    )
    page.click("#wb-sweep-table td[data-dash-column='method']")
    wait_until(page, f"() => {text_of('#wb-sweep-msg')}.startsWith('Opened')", 30, "opened")
    title = wait_until(
        page, f"() => {{ const t = {text_of('#wb-replay-title')}; return t.length > 0 && t; }}",
        30, "the replay of the sweep's run",
    )  # fmt: skip
    assert "GD" in title.upper() or "GNN" in title.upper()
    assert page.attempted == []  # nothing left the machine

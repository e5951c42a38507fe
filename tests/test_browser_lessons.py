"""Real-browser test of the teaching views (issue 12): a lesson fills the form and steps on,
and each live run card draws its slow-mode projection chart and loop verdict.

The real engine on a small Bond+LJ loop (the lesson's settings with n and the step budget cut
down). Set WB_SCREENSHOT_DIR to keep a screenshot of the cards and the lesson drawer.
"""

from __future__ import annotations

import os
import re

import pytest
from browser_util import chromium_missing, open_workbench
from test_browser_live import field, set_field, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if chromium_missing():
    pytest.skip(chromium_missing(), allow_module_level=True)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from workbench.config import ServerConfig

    run_dir = tmp_path_factory.mktemp("runs")
    config = ServerConfig(run_dir=str(run_dir), bundle_dirs=(), structure_dirs=(), workers=2)
    with open_workbench(config) as page:
        yield page


def step_text(page) -> str:
    return page.inner_text("#wb-lesson-step")


def test_a_lesson_sets_the_form_and_the_cards_show_projection_and_verdict(page):
    from workbench.panels.lessons import LESSONS

    lesson = LESSONS["cg"]
    page.locator(".wb-lessons-summary").click()
    page.click("#wb-lesson-pick")
    page.get_by_text(lesson.title, exact=True).click()
    wait_until(page, lambda: lesson.title in step_text(page), 10, "the lesson's first step")
    assert page.inner_text("#wb-lesson-count") == f"step 1 of {len(lesson.steps)}"
    assert lesson.steps[0].text[:40] in step_text(page)
    # the step filled the form: GD and CG checked, the opening demo's n
    wait_until(
        page,
        lambda: (
            page.input_value(field("system.n")) == "600"
            and "Set by the lesson" in page.inner_text("#wb-preset-desc")
        ),
        10,
        "the form filled by the lesson",
    )
    checked = page.eval_on_selector_all("#wb-methods input:checked", "els => els.map(e => e.value)")
    assert sorted(checked) == ["cg", "gd"]
    # a small, short version of it, so the test runs in seconds
    set_field(page, "system.n", "60")
    page.locator("summary", has_text="Schedule and stopping").click()
    set_field(page, "schedule.max_steps", "600")
    page.wait_for_timeout(300)
    page.click("#wb-run")
    page.wait_for_selector(".wb-card >> nth=1", timeout=20_000)

    def charts_drawn():
        names = page.eval_on_selector_all(
            ".wb-projection .legendtext", "els => els.map(e => e.textContent)"
        )
        return sum(n.startswith("slowest") for n in names) == 2

    wait_until(page, charts_drawn, 180, "both projection charts drawn")
    # area traces with points: the stacked fills exist in both charts
    assert page.locator(".wb-projection .scatterlayer .trace").count() >= 8
    badge = re.compile(r"^(loop closed|partly closed|loop open|torn apart): contacts \d+ %, "
                       r"bonds intact \d+ %$")  # fmt: skip
    wait_until(
        page,
        lambda: (
            [bool(badge.match(t)) for t in page.locator(".wb-verdict").all_inner_texts()]
            == [True, True]
        ),
        120,
        "both verdict badges",
    )
    # step on through the lesson
    page.click("#wb-lesson-next")
    wait_until(page, lambda: lesson.steps[1].text[:40] in step_text(page), 10, "step 2")
    assert page.inner_text("#wb-lesson-count") == f"step 2 of {len(lesson.steps)}"
    assert page.input_value(field("system.n")) == "60"  # a step without a form leaves it
    page.click("#wb-lesson-back")
    wait_until(page, lambda: "step 1 of" in page.inner_text("#wb-lesson-count"), 10, "back")
    shots = os.environ.get("WB_SCREENSHOT_DIR")
    if shots:
        page.locator(".wb-cards").screenshot(path=os.path.join(shots, "teaching-cards.png"))
        page.screenshot(path=os.path.join(shots, "teaching-lesson.png"))
    page.click("#wb-stop-all")
    assert not page.errors

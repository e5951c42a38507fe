"""Real-browser test of the lessons (issue 12): every lesson runs end to end with one button
per step (choosing it, then Next): each step fills the form and presses its own button (Compute
spectrum, Run, Compute conditioning), and the spectrum lesson's conditioning step shows the
conditioning view beside the cards' projection charts and loop verdicts without another click.

The drawer's rehearsal box caps every run (n = 50, 300 steps), so the real engine runs each
lesson in seconds. Set WB_SCREENSHOT_DIR to keep screenshots of the cards, the lesson drawer and
the conditioning step.
"""

from __future__ import annotations

import os
import re

import pytest
from browser_util import chromium_missing, open_workbench, poll_until, workbench_config
from test_browser_live import field

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if chromium_missing():
    pytest.skip(chromium_missing(), allow_module_level=True)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs")
    config = workbench_config(run_dir, warm_up=True)  # its first lesson is the opening demo
    with open_workbench(config) as page:
        yield page


def step_text(page) -> str:
    return page.inner_text("#wb-lesson-step")


def card_runs(page) -> list[str]:
    return page.eval_on_selector_all(".wb-card [data-run]", "els => els.map(e => e.dataset.run)")


def choose(page, title: str) -> None:
    page.click("#wb-lesson-pick")
    page.get_by_role("option", name=title, exact=True).click()
    poll_until(page, lambda: title in step_text(page), 10, f"the lesson {title!r}")


def enter(page, lesson, i: int, runs_before: list[str]) -> None:
    """Wait for step i's text and, when it presses Run, for a new group of cards with the
    step's methods (the form it filled)."""
    from workbench.panels.lessons import form_of

    step = lesson.steps[i]
    poll_until(page, lambda: step.text[:40] in step_text(page), 10, f"step {i + 1}'s text")
    assert page.inner_text("#wb-lesson-count") == f"step {i + 1} of {len(lesson.steps)}"
    if step.action != "run":
        return
    from workbench import forms

    checked = page.eval_on_selector_all("#wb-methods input:checked", "els => els.map(e => e.value)")
    want = sorted(checked)  # a step without a form runs the form an earlier step filled
    if step.form:
        assert want == sorted(forms.method_of(s) for s in form_of(step.form)[1])

    def started():
        runs = card_runs(page)
        return len(runs) == len(want) and not set(runs) & set(runs_before)

    poll_until(page, started, 30, f"the runs step {i + 1} started ({want})")
    assert "Not started" not in page.inner_text("#wb-run-msg")


def test_every_lesson_runs_with_one_button_per_step(page):
    from engine.presets import OPENING_PRESET
    from workbench import forms
    from workbench.panels.lessons import LESSONS, REHEARSAL_N, REHEARSAL_STEPS, form_of
    from workbench.panels.spectrum import ID as S
    from workbench.panels.teach import ID as T

    page.locator(".wb-lessons-summary").click()
    # open on a wide page, the drawer docks beside the panels: it covers none of them
    poll_until(page, lambda: page.evaluate("""() => {
        const drawer = document.querySelector('.wb-lessons').getBoundingClientRect();
        const panels = [...document.querySelectorAll('[data-panel]')]
          .filter(p => p.offsetParent && p.dataset.panel !== 'lessons');
        return panels.length > 3 && innerWidth >= 1200 &&
          panels.every(p => p.getBoundingClientRect().right <= drawer.left);
    }"""), 10, "the panels to make room for the open lessons drawer")  # fmt: skip
    page.locator("#wb-lesson-rehearse input").check()
    lesson = LESSONS["spectrum"]
    # step 1: the form is the opening demo's (rehearsed) and its spectrum is computed
    choose(page, lesson.title)
    enter(page, lesson, 0, [])
    assert page.input_value(field("system.n")) == str(REHEARSAL_N)
    assert "Set by the lesson" in page.inner_text("#wb-preset-desc")
    spectrum = f"#{S.GRAPH} .scatterlayer .points path"
    poll_until(
        page,
        lambda: page.locator(spectrum).count() or "Not" in page.inner_text(f"#{S.STATUS}"),
        120,
        "the spectrum the step computed",
    )
    assert page.locator(spectrum).count(), page.inner_text(f"#{S.STATUS}")
    # step 2: Run, pressed by the lesson; both cards draw their projection chart and verdict
    page.click("#wb-lesson-next")
    enter(page, lesson, 1, [])
    runs = card_runs(page)

    def charts_drawn():
        names = page.eval_on_selector_all(
            ".wb-projection .legendtext", "els => els.map(e => e.textContent)"
        )
        return sum(n.startswith("slowest") for n in names) == 2

    poll_until(page, charts_drawn, 90, "both projection charts drawn")
    assert page.locator(".wb-projection .scatterlayer .trace").count() >= 8
    badge = re.compile(r"^(loop closed|partly closed|loop open|torn apart): contacts \d+ %, "
                       r"bonds intact \d+ %$")  # fmt: skip
    poll_until(
        page,
        lambda: (
            [bool(badge.match(t)) for t in page.locator(".wb-verdict").all_inner_texts()]
            == [True, True]
        ),
        120,
        "both verdict badges",
    )
    # step 3 presses nothing: the same runs
    page.click("#wb-lesson-next")
    enter(page, lesson, 2, runs)
    assert card_runs(page) == runs
    # step 4: the conditioning view, computed and shown in panel T, the cards still there
    page.click("#wb-lesson-next")
    enter(page, lesson, 3, runs)
    poll_until(page, lambda: page.is_visible(f"#{T.COND_GRAPH} .main-svg"), 120, "conditioning")
    status = page.inner_text(f"#{T.COND_STATUS}")
    assert status.startswith("H in positions, at x0: κ = ") and "GNN at step 0" in status
    on_screen = page.eval_on_selector(  # scrolled into view by the step
        "[data-panel=teach]",
        "e => { const r = e.getBoundingClientRect(); return r.top < innerHeight && r.bottom > 0; }",
    )
    assert on_screen
    assert card_runs(page) == runs and charts_drawn()
    shots = os.environ.get("WB_SCREENSHOT_DIR")
    if shots:
        page.screenshot(path=os.path.join(shots, "teaching-lesson.png"))
        page.locator(".wb-cards").screenshot(path=os.path.join(shots, "teaching-cards.png"))
    # Back to step 2 shows its text and presses nothing (its runs stay)
    for text in (lesson.steps[2].text[:40], lesson.steps[1].text[:40]):
        page.click("#wb-lesson-back")
        try:
            poll_until(page, lambda t=text: t in step_text(page), 10, "the step before")
        except AssertionError as e:  # failed 2 of 8 runs under load: say where it stood
            at = page.inner_text("#wb-lesson-count")
            raise AssertionError(f"{e}; the drawer shows {at}: {step_text(page)[:60]!r}") from None
    assert card_runs(page) == runs
    # every other lesson, one Next per step; each Run stops the previous group first
    for key in ("cg", "gnn", "trap", "protein"):
        lesson = LESSONS[key]
        runs = card_runs(page)
        choose(page, lesson.title)
        enter(page, lesson, 0, runs)
        for i in range(1, len(lesson.steps)):
            runs = card_runs(page)
            page.click("#wb-lesson-next")
            enter(page, lesson, i, runs)
        assert page.is_disabled("#wb-lesson-next")
    # from the protein tab back to a loop lesson: the tab switch keeps the step's loop form
    # (it used to restore the protein lesson's optimiser settings over it)
    protein_note = page.inner_text("#wb-tab-note")  # the switch to the protein tab said so
    assert "Protein settings" in protein_note
    choose(page, LESSONS["spectrum"].title)
    enter(page, LESSONS["spectrum"], 0, card_runs(page))
    poll_until(
        page,
        lambda: page.inner_text("#wb-tab-note") != protein_note,
        20,
        "the switch back to the loop tab",
    )
    loop_values, _ = forms.values_from_specs(form_of(OPENING_PRESET)[1])
    for name in ("gd.learning_rate", "gnn.learning_rate", "schedule.stage1_steps"):
        want = loop_values[name]
        if name == "schedule.stage1_steps":
            want = str(min(int(want), REHEARSAL_STEPS // 2))
        assert page.input_value(field(name)) == want, name
    page.click("#wb-stop-all")
    assert not page.errors

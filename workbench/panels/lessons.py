"""Panel 7, Lessons: short guided tours that set the form, press its buttons, and say what
to look at. Next is the one button a teacher presses per step.

A lesson is a sequence of steps (``LESSONS``, the one declaration of every lesson's text). A
step may fill the form: with a preset of ``engine.presets.PRESETS`` or with a group of specs
built by ``engine.presets`` functions (``LESSON_FORMS``: the opening demo's settings with other
methods, the tuned Figure 3 protocol), filled as the method panel's preset fill does (the same
``method.preset_values``: fields, tab and protein source), all in one response. No lesson restates
a parameter value. A step may then press one button for the teacher (``Step.action``, one of
``ACTIONS``: Compute spectrum, Run, Compute conditioning) by setting its n_clicks in that same
response, so the button's callback reads the form as filled; before Run the session's
earlier runs are stopped (the new group must fit the session's limit). Entering a step
forwards (choosing the lesson, Next) does this; Back only shows the text. The step's panel is
scrolled into view. A rehearsal (the drawer's checkbox) caps every run at REHEARSAL_N beads
and REHEARSAL_STEPS steps, for a dry run in seconds (and for the browser test).

Every claim a step makes quotes a number from the document it cites (``Step.source``);
tests/test_teaching.py checks each number against that document. The views a step points at
are the run cards' slow-mode projection charts and loop verdicts (workbench/teach_views.py),
the spectrum (panel 2), the curves (panel 4-5) and the teaching views (panel T).

The panel is a drawer fixed to the page's lower right corner (assets/workbench.css), so a
lesson stays in view while the page scrolls to what it points at.
"""

from __future__ import annotations

import time
from typing import NamedTuple

from dash import ALL, Input, Output, State, callback, clientside_callback, ctx, dcc, html
from dash import no_update as NU

from engine.presets import OPENING, OPENING_PRESET, PRESETS, demo_spec, tuned_spec

from .. import ids
from .. import registry as reg
from ..records import STOP_GRACE_S
from . import PageContext, method, spectrum, system, teach

BENCH = "docs/benchmarks.md"
FIG3_STEPS = 20000  # the Figure 3 runs' step budget (docs/benchmarks.md, Figure 3)


class ID:
    PICK = "wb-lesson-pick"
    REHEARSE = "wb-lesson-rehearse"  # checklist: ["on"] caps n and steps (a dry run)
    SCROLL = "wb-lesson-scroll"  # Store: {"panel": data-panel name, "seq": n}
    STATE = "wb-lesson-state"  # Store: {"lesson": name, "step": i}
    STEP = "wb-lesson-step"
    BACK = "wb-lesson-back"
    NEXT = "wb-lesson-next"
    COUNT = "wb-lesson-count"


class Step(NamedTuple):
    text: str
    form: str | None = None  # a PRESETS name or a LESSON_FORMS name: filled on entering
    look: str = ""  # where to look (a panel, a chart)
    source: str = BENCH  # the document every number in ``text`` comes from
    action: str | None = None  # an ACTIONS name: the button the lesson presses on entering
    panel: str | None = None  # the data-panel scrolled into view on entering


# What a step may press for the teacher, after filling the form (same response: the pressed
# button's callback reads the form as filled): button id, and the words the step box uses.
ACTIONS = {
    "spectrum": (spectrum.ID.BTN, "Compute spectrum"),
    "run": (method.ID.RUN_BTN, "Run"),
    "conditioning": (teach.ID.COND_BTN, "Compute conditioning"),
}
# A rehearsal (the drawer's checkbox): every loop system capped at REHEARSAL_N beads, every
# run at REHEARSAL_STEPS steps (stage 1 at half), k fields back to their default n/4. The runs
# are then seconds long and their numbers are not the text's.
REHEARSAL_N = 50  # the smallest loop the form accepts
REHEARSAL_STEPS = 300


class Lesson(NamedTuple):
    title: str
    steps: tuple[Step, ...]


def _tuned_lj(method: str):
    return tuned_spec("lj-loop", 400, method, max_steps=FIG3_STEPS)


# Forms of the lessons that are not presets: (description, specs), built by engine.presets.
LESSON_FORMS = {
    "demo-gd-cg": (
        "The opening demo's Bond+LJ loop (n = 600, 4000 steps each): GD against CG.",
        [demo_spec(OPENING, m) for m in ("gd", "cg")],
    ),
    "tuned-lj-n400": (
        "Pure LJ loop, n = 400, tuned protocol (monotone soft core, learning rates from a "
        "sweep, CG and GNN started at x0), Figure 3's 20,000-step budget: GD against the GNN.",
        [_tuned_lj(m) for m in ("gd", "gnn")],
    ),
}

LESSONS: dict[str, Lesson] = {
    "spectrum": Lesson(
        "Why descent is slow: the spectrum",
        (
            Step(
                "The form now holds the opening demo: a Bond+LJ loop, GD against the slow-mode "
                "GNN, and the lesson pressed Compute spectrum: the Hessian's eigenvalues at x0 "
                "span many decades. GD's step must suit the stiffest modes, so the softest "
                "ones, the loop's large-scale motions, move slowest. Computing them costs "
                "0.16 s at n = 400 and 0.63 s at n = 1000 (iterative solver, idle machine).",
                form=OPENING_PRESET,
                look="panel 2, Spectrum",
                action="spectrum",
                panel="spectrum",
            ),
            Step(
                "The lesson pressed Run. Under each card's 3D view, the chart splits the "
                "displacement x − x0 over the Hessian's modes at x0: green the slowest, blue "
                "the middle, red the fastest, grey rigid-body motion. In our run (n = 400, "
                "seed 0) the "
                "slowest quarter held 10.9 % of GD's displacement after 2000 steps and 31.2 % "
                "of the GNN's; the fastest quarter 54.3 % of GD's: GD moves mostly along stiff "
                "directions.",
                look="the run cards' projection charts",
                action="run",
                panel="live",
            ),
            Step(
                "The energy curves: the GNN is ahead from the start, −0.0212 at step 2000 "
                "against GD's −0.0090; after 4000 steps GD ends at −0.01246 ± 0.00108, its "
                "chain still a collapsed ball (radius of gyration 1.6 against 3.2).",
                look="panel 4-5, the curves",
            ),
            Step(
                "Does the GNN help because it compresses the spectrum? The lesson pressed "
                "Compute conditioning (panel T). It does not: at the demo's size (n = 600) κ₁₀ "
                "(largest |λ| over the 10th percentile) is 232 for H, 14,183 for CG's map and "
                "3631 for the GNN at step 0, 127,130 at its switch. What changes is where a "
                "step moves, as the projection charts showed.",
                look="panel T, Conditioning, and the cards' projection charts",
                action="conditioning",
                panel="teach",
            ),
        ),
    ),
    "cg": Lesson(
        "Slow modes as a basis (CG)",
        (
            Step(
                "CG first moves only along the k slowest modes (x = Ψz), then switches to "
                "positions. The form now holds the opening demo with CG instead of the GNN, "
                "and the lesson pressed Run: watch CG's projection chart until its stage switch.",
                form="demo-gd-cg",
                look="the run cards' projection charts",
                action="run",
                panel="live",
            ),
            Step(
                "In 4000 steps CG ends at −0.01838 ± 0.00083 with 78–85 % of its loop "
                "contacts, GD at −0.01246 ± 0.00108 with 54–64 %: the verdict badges say "
                "'partly closed' for both.",
                look="the verdict badges",
            ),
            Step(
                "Given Figure 3's 20,000 steps (improved protocol, n = 1000), CG ends at "
                "−0.02334 ± 0.00005 against GD's −0.02256 ± 0.00027 in about the same wall "
                "time (125–137 s): a 3 % lower energy, not a speed-up.",
            ),
        ),
    ),
    "gnn": Lesson(
        "The GNN race",
        (
            Step(
                "The form holds the opening demo: GD against the GNN, 4000 steps each, and the "
                "lesson pressed Run; side by side both were done after 33 s in our run, "
                "compilation and slow modes included.",
                form=OPENING_PRESET,
                look="the run cards and the curves",
                action="run",
                panel="live",
            ),
            Step(
                "Watch the verdict badges: the GNN closes its loop (100 % of loop contacts, "
                "−0.02289 ± 0.00003), GD stays partly closed (54–64 % of contacts). No chain "
                "bond breaks in either.",
                look="the verdict badges",
            ),
            Step(
                "A head start, not a better minimum: given 20,000 steps GD nearly catches up "
                "(−0.02315 at n = 400, −0.02256 at n = 1000, improved protocol).",
            ),
        ),
    ),
    "trap": Lesson(
        "When it does not help: the soft-core trap and a fair learning rate",
        (
            Step(
                "The paper's Figure 2 setting: pure LJ, n = 400, the reference protocol; the "
                "lesson pressed Run. Over five seeds GD ends at +0.00338 ± 0.04309, the GNN "
                "at −0.02997 ± 0.00391, as the paper says, but no loop closes: loop contacts "
                "GD 54 %, GNN 14 %. The GNN's lower energy comes with its chain torn apart: "
                "on this seed its card ends 'diverged' around step 5,000 with a radius of "
                "gyration near 31 against 3.13 at the start (the step moves with the CPU's "
                "last-bit rounding, since the blow-up is chaotic: 4,660, 4,860 and 5,160 in "
                "our runs).",
                form="fig2-lj-n400",
                look="the verdict badges and the GNN card's status line",
                action="run",
                panel="live",
            ),
            Step(
                "GD's 'failure' is the reference soft core's spurious minimum at r = 0: "
                "collapsed bonded pairs trap it. The form now holds the tuned protocol (trap "
                "removed, fair learning rates, the GNN started at x0) and the lesson pressed "
                "Run: GD −0.08428 ± 0.00381 against the GNN's −0.08547 ± 0.00297, within one "
                "sd, and GD takes about half the time (11.3 s against 19.1 s).",
                form="tuned-lj-n400",
                look="the curves and the speed-up table",
                action="run",
                panel="live",
            ),
            Step(
                "Without the trap and without starting at x0 (improved protocol) the GNN "
                "ends at −0.00779 against GD's −0.08370: much of the pure-LJ advantage was "
                "the trap.",
            ),
        ),
    ),
    "protein": Lesson(
        "Proteins: local minimization, not folding",
        (
            Step(
                "The form holds Trp-cage from an extended chain: GD, the slow-mode GNN and "
                "OpenMM's L-BFGS on one AMBER energy; the lesson pressed Run. On this case, over "
                "5 GNN seeds, E_GD / E_GNN = 1.0031 and t_GD / t_GNN = 0.55: the GNN ends "
                "within 1 % of GD (this run is seed 0) and takes longer.",
                form="trp-cage",
                look="the curves and the speed-up table",
                action="run",
                panel="live",
            ),
            Step(
                "OpenMM's L-BFGS ends lower, −2266.2 against GD's −2053.3 kJ/mol. Nothing "
                "folds: the CA-RMSD in each card's structure line stays at its start.",
                look="the cards' structure lines",
            ),
        ),
    ),
}


# ---- layout --------------------------------------------------------------------------------
def layout(ctx: PageContext):
    del ctx
    return html.Details(
        [
            html.Summary("Lessons", className="wb-lessons-summary"),
            html.Div(
                [
                    dcc.Store(id=ID.STATE, data=None),
                    dcc.Store(id=ID.SCROLL, data=None),
                    dcc.Dropdown(
                        id=ID.PICK,
                        options=[{"label": les.title, "value": k} for k, les in LESSONS.items()],
                        value=None,
                        placeholder="choose a lesson…",
                        searchable=False,
                    ),
                    html.Div(
                        "Each lesson sets the form, presses the step's button (Run, Compute "
                        "…) and says what to look at: Next is the only button to press "
                        "(before Run it stops this session's earlier runs). "
                        "Every number is one of our own measurements (docs/benchmarks.md).",
                        id=ID.STEP,
                        className="wb-lesson-step",
                        role="status",
                    ),
                    dcc.Checklist(
                        id=ID.REHEARSE,
                        options=[
                            {
                                "label": f" rehearse: n ≤ {REHEARSAL_N}, ≤ {REHEARSAL_STEPS} "
                                "steps (seconds; the numbers will not be the text's)",
                                "value": "on",
                            }
                        ],
                        value=[],
                        className="wb-muted",
                    ),
                    html.Div(
                        [
                            html.Button("Back", id=ID.BACK, className="wb-btn", disabled=True),
                            html.Span("", id=ID.COUNT, className="wb-muted"),
                            html.Button("Next", id=ID.NEXT, className="wb-btn", disabled=True),
                        ],
                        className="wb-lesson-nav",
                    ),
                ],
                className="wb-lessons-body",
            ),
        ],
        className="wb-lessons",
        open=False,
    )


# ---- pure helpers ----------------------------------------------------------------------------
def form_of(name: str) -> tuple[str, list]:
    """(description, specs) of a step's form: a preset or a lesson form."""
    return PRESETS[name] if name in PRESETS else LESSON_FORMS[name]


def step_view(lesson: str, i: int) -> list:
    """The step box: the text, the button it pressed, where to look, and the source."""
    les = LESSONS[lesson]
    step = les.steps[i]
    out = [html.Div(les.title, className="wb-lesson-title"), html.P(step.text)]
    if step.action:
        pressed = ACTIONS[step.action][1]
        out.append(html.Div(["Pressed for you: ", html.Strong(pressed)], className="wb-muted"))
    if step.look:
        out.append(html.Div(["Look at: ", html.Strong(step.look)], className="wb-lesson-look"))
    out.append(html.Div(f"Numbers: {step.source}", className="wb-muted"))
    return out


def go_to(state: dict | None, lesson: str | None, move: int) -> dict | None:
    """The new {"lesson", "step"} after choosing ``lesson`` (step 0) or moving by ``move``."""
    if not lesson:
        return None
    if not state or state.get("lesson") != lesson:
        return {"lesson": lesson, "step": 0}
    n = len(LESSONS[lesson].steps)
    return {"lesson": lesson, "step": max(0, min(n - 1, state["step"] + move))}


STEP_FIELDS = ("schedule.max_steps", "schedule.stage1_max_steps", "schedule.stage1_steps")
K_FIELDS = ("cg.n_modes", "gnn.n_modes")


def rehearsed(values: dict, tab: str) -> dict:
    """The form ``values`` {name: str} capped for a rehearsal (see REHEARSAL_N)."""
    out = dict(values)
    for name in STEP_FIELDS:
        if out.get(name):
            cap = REHEARSAL_STEPS if name == "schedule.max_steps" else REHEARSAL_STEPS // 2
            out[name] = str(min(int(float(out[name])), cap))
    if tab == "loop" and out.get("system.n"):
        out["system.n"] = str(min(int(out["system.n"]), REHEARSAL_N))
        out.update({name: "" for name in K_FIELDS if name in out})  # default k = n/4
    return out


def fill(step: Step, names: list[str], rehearse: bool = False) -> tuple:
    """(field values, methods, description, tab, protein source, fill record) a step sets;
    NU where it leaves the form alone. The whole form in one response (the tab and protein
    source as the method panel's preset fill sets them), so the button the step presses
    after it reads the form as filled; the record (method.fill_record) keeps the tab switch
    this may cause from overwriting it."""
    if not step.form:
        return [NU] * len(names), NU, NU, NU, NU, NU
    desc, specs = form_of(step.form)
    values, methods, tab, source = method.preset_values(specs)
    if rehearse:
        values = rehearsed(values, tab)
        desc = f"{desc} Rehearsal: n ≤ {REHEARSAL_N}, ≤ {REHEARSAL_STEPS} steps."
    field_values = [values.get(name, NU) for name in names]
    record = method.fill_record(field_values, names, tab)
    return field_values, methods, f"Set by the lesson: {desc}", tab, source, record


def presses(step: Step, clicks: list) -> list:
    """New n_clicks of the ACTIONS buttons (in ACTIONS order): the step's one + 1, the rest
    NU. ``clicks``: their current n_clicks."""
    return [
        (c or 0) + 1 if name == step.action else NU for name, c in zip(ACTIONS, clicks, strict=True)
    ]


def stop_runs(sid: str) -> int:
    """Stop the session's active runs and wait (at most the registry's grace period and a
    little) until none holds a slot; the number stopped."""
    r = reg.get()
    asked = r.cancel_all(by=sid)
    deadline = time.monotonic() + STOP_GRACE_S + 0.2
    while asked and time.monotonic() < deadline:  # the engine stops at its next chunk
        if all(s.terminal for s in r.list_runs(sid) if s.kind == "run"):
            break
        time.sleep(0.05)
    return asked


# ---- callbacks -------------------------------------------------------------------------------
@callback(
    Output(ID.STATE, "data"),
    Output(ID.STEP, "children"),
    Output(ID.COUNT, "children"),
    Output(ID.BACK, "disabled"),
    Output(ID.NEXT, "disabled"),
    Output(ids.field(ALL), "value", allow_duplicate=True),
    Output(method.ID.METHODS, "value", allow_duplicate=True),
    Output(method.ID.PRESET_DESC, "children", allow_duplicate=True),
    Output(system.ID.TABS, "value", allow_duplicate=True),
    Output(system.ID.PROTEIN_SOURCE, "value", allow_duplicate=True),
    Output(method.ID.FILLED, "data", allow_duplicate=True),
    *[Output(button, "n_clicks", allow_duplicate=True) for button, _ in ACTIONS.values()],
    Output(teach.ID.TABS, "value", allow_duplicate=True),
    Output(ID.SCROLL, "data"),
    Input(ID.PICK, "value"),
    Input(ID.BACK, "n_clicks"),
    Input(ID.NEXT, "n_clicks"),
    State(ID.STATE, "data"),
    State(ids.field(ALL), "id"),
    State(ID.REHEARSE, "value"),
    State(ids.SESSION, "data"),
    *[State(button, "n_clicks") for button, _ in ACTIONS.values()],
    prevent_initial_call=True,
)
def navigate(lesson, back, nxt, state, field_ids, rehearse, sid, *clicks):
    """Enter a lesson or move one step. Entering a step forwards (choosing the lesson, Next)
    fills its form and presses its button (Run: after stopping this session's earlier runs,
    so the new group fits the session's limit); Back only shows the text again."""
    move = {ID.BACK: -1, ID.NEXT: 1}.get(ctx.triggered_id, 0)
    new = go_to(state, lesson, move)
    names = [f["name"] for f in field_ids]
    untouched = ([NU] * len(names), NU, NU, NU, NU, NU, *([NU] * len(ACTIONS)), NU, NU)
    if new is None:
        return None, "", "", True, True, *untouched
    n = len(LESSONS[new["lesson"]].steps)
    i = new["step"]
    head = (new, step_view(new["lesson"], i), f"step {i + 1} of {n}", i == 0, i == n - 1)
    if state == new or move < 0:  # no step entered forwards: nothing is pressed again
        return *head, *untouched
    step = LESSONS[new["lesson"]].steps[i]
    if step.action == "run" and sid:
        stop_runs(sid)
    filled = fill(step, names, "on" in (rehearse or []))
    tab = "conditioning" if step.action == "conditioning" else NU
    scroll = {"panel": step.panel, "seq": (back or 0) + (nxt or 0)} if step.panel else NU
    return *head, *filled, *presses(step, list(clicks)), tab, scroll


# The step's panel scrolled into view (the drawer stays fixed in its corner).
clientside_callback(
    """function (s) {
        if (!s || !s.panel) { return window.dash_clientside.no_update; }
        const el = document.querySelector('[data-panel="' + s.panel + '"]');
        if (el) { el.scrollIntoView({behavior: "instant", block: "start"}); }
        return window.dash_clientside.no_update;
    }""",
    Output(ID.SCROLL, "data", allow_duplicate=True),
    Input(ID.SCROLL, "data"),
    prevent_initial_call=True,
)

"""How long each lesson takes at full size (issue 12: "each lesson runs in about a minute on
the 2-core machine"), in a real browser, one button per step, as a teacher would press it.

    python -m bench.bench_lessons --warm          # every lesson, twice: bench/results/lessons.json
                                                  # and the table in docs/benchmarks.md
    python -m bench.bench_lessons --only gnn trap # some lessons (their keys in LESSONS)

``python app.py`` is spawned on a fresh run directory (an empty compilation cache; with
``--warm`` a second server is then started on the same directory, a new page opened and
every lesson timed again: only the compilation cache on disk is warm, as when a teacher
restarts the workbench), headless Debian Chromium opens it, and each lesson is chosen and
stepped through with Next, the rehearsal box off (full sizes and budgets). Per step: seconds
from the click (choosing the lesson, or Next) until what the step pressed has finished, and
what the page then says:

- Compute spectrum: the spectrum chart drawn (its status line kept);
- Run: the step's cards all ended (done, stopped, diverged or failed; their status lines
  kept);
- Compute conditioning: the view's second part (the GNN's switch row) shown;
- a step that presses nothing: 0 (its text only).

A lesson's total is the sum of its steps' waits: the time a class waits, reading excluded.

``--cpu-by-thread``: each lesson also records the CPU seconds the app's process spent in it,
by thread (``/proc/<pid>/task``, sampled every half second; Python threads named by
``py-spy dump`` when py-spy is installed, the bench extra; native threads by their kernel
name: XLA's compute pool ``tf_XLAEigen``, LLVM's compile workers, and ``python`` for the
unnamed ones, such as OpenMM's CPU-platform and the BLAS threads). Where the waits go.
With ``--only``, results go to ``lessons_<keys>.json`` (the full table's file is kept).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from bench.bench_ui import (
    free_port,
    is_terminal,
    launch_browser,
    offline_context,
    poll_until,
    spawn,
    status_texts,
    wait_http,
)
from bench.common import replace_marked, save_json
from workbench.panels.lessons import LESSONS
from workbench.panels.spectrum import ID as S
from workbench.panels.teach import ID as T

STEP_LIMIT_S = 900.0  # one step's wait before the benchmark gives up on it
SWITCH_ROW = re.compile(r"GNN at its switch \(step \d+\)|did not reach its stage switch")


def card_runs(page) -> list[str]:
    return page.eval_on_selector_all(".wb-card [data-run]", "els => els.map(e => e.dataset.run)")


def step_text(page) -> str:
    return page.inner_text("#wb-lesson-step")


def wait_pressed(page, action: str | None, before: list[str]) -> str:
    """Wait until what ``action`` started has finished; what the page then says."""
    if action == "spectrum":
        drawn = f"#{S.GRAPH} .scatterlayer .points path"
        poll_until(
            page,
            lambda: page.locator(drawn).count() or "Not" in page.inner_text(f"#{S.STATUS}"),
            STEP_LIMIT_S,
            "the spectrum",
        )
        return page.inner_text(f"#{S.STATUS}")
    if action == "run":  # a group's cards all appear in one render

        def ended():
            runs = card_runs(page)
            fresh = runs and not set(runs) & set(before)
            return fresh and all(is_terminal(t) for t in status_texts(page))

        poll_until(page, ended, STEP_LIMIT_S, "the step's runs to end")
        return " | ".join(status_texts(page))
    if action == "conditioning":
        poll_until(
            page,
            lambda: SWITCH_ROW.search(page.inner_text(f"#{T.COND_STATUS}")),
            STEP_LIMIT_S,
            "the conditioning view's switch row",
        )
        return page.inner_text(f"#{T.COND_STATUS}")
    return ""


def time_lesson(page, key: str) -> dict:
    lesson = LESSONS[key]
    steps = []
    for i, step in enumerate(lesson.steps):
        before = card_runs(page)
        t = time.time()
        if i == 0:
            page.click("#wb-lesson-pick")
            page.get_by_role("option", name=lesson.title, exact=True).click()
        else:
            page.click("#wb-lesson-next")
        poll_until(page, lambda s=step: s.text[:40] in step_text(page), 30, f"step {i + 1}")
        try:
            said = wait_pressed(page, step.action, before)
        except TimeoutError as err:  # kept, with the other lessons' numbers and the page
            said = (f"timed out: {err}; cards {card_runs(page)} (before: {before}): "
                    + " | ".join(status_texts(page)))  # fmt: skip
            page.screenshot(path=f"/tmp/bench_lessons_{key}_{i + 1}.png", full_page=True)
        steps.append({"step": i + 1, "pressed": step.action, "seconds": time.time() - t,
                      "page_says": said})  # fmt: skip
        print(f"{key} step {i + 1} ({step.action}): {steps[-1]['seconds']:.1f} s", flush=True)
    return {"lesson": key, "title": lesson.title, "steps": steps,
            "total_s": sum(s["seconds"] for s in steps)}  # fmt: skip


class ThreadCPU:
    """CPU seconds of process ``pid`` by thread name, sampled on a daemon thread until the
    process exits or ``stop`` (a thread's last sample counts: threads that end keep their
    time)."""

    PERIOD_S = 0.5
    NAMES_EVERY_S = 8.0  # py-spy dump costs ~0.1 s: thread names, now and then

    def __init__(self, pid: int, name_threads: bool = True):
        self.pid = pid
        self._cpu: dict[str, tuple[str, float]] = {}  # tid -> (kernel name, CPU s)
        self._names: dict[str, str] = {}  # tid -> Python thread name
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._tick = os.sysconf("SC_CLK_TCK")
        beside = Path(sys.executable).with_name("py-spy")  # a venv's, without activating it
        self._py_spy = str(beside) if beside.is_file() else shutil.which("py-spy")
        self._py_spy = self._py_spy if name_threads else None
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        named_at = 0.0
        while not self._stopped.is_set() and os.path.isdir(f"/proc/{self.pid}/task"):
            for tid in os.listdir(f"/proc/{self.pid}/task"):
                try:
                    with open(f"/proc/{self.pid}/task/{tid}/stat") as fh:
                        stat = fh.read()
                except OSError:
                    continue  # the thread ended between listing and reading
                fields = stat[stat.rindex(")") + 2 :].split()  # utime, stime: 12th, 13th
                comm = stat[stat.index("(") + 1 : stat.rindex(")")]
                with self._lock:
                    self._cpu[tid] = (comm, (int(fields[11]) + int(fields[12])) / self._tick)
            if self._py_spy and time.time() - named_at > self.NAMES_EVERY_S:
                named_at = time.time()
                self._name_threads()
            self._stopped.wait(self.PERIOD_S)

    def stop(self) -> None:
        """End the sampling (``totals`` keeps what was sampled)."""
        self._stopped.set()

    def _name_threads(self) -> None:
        dump = subprocess.run([self._py_spy, "dump", "--pid", str(self.pid), "--nonblocking"],
                              capture_output=True, text=True, check=False).stdout  # fmt: skip
        with self._lock:
            for tid, name in re.findall(r'Thread (\d+) \([^)]*\): "([^"]+)"', dump):
                self._names[tid] = name

    def totals(self) -> dict[str, float]:
        """{thread name without its number: CPU s so far}, largest first."""
        by = Counter()
        with self._lock:
            for tid, (comm, cpu) in self._cpu.items():
                name = self._names.get(tid, comm)
                by[name.rstrip("0123456789_-") or name] += cpu
        return {name: round(cpu, 1) for name, cpu in by.most_common()}


def cpu_since(before: dict[str, float], now: dict[str, float]) -> dict[str, float]:
    """Per thread name, the CPU seconds between two ``ThreadCPU.totals``."""
    spent = {k: round(v - before.get(k, 0.0), 1) for k, v in now.items()}
    return dict(sorted(((k, v) for k, v in spent.items() if v > 0), key=lambda kv: -kv[1]))


def serve_and_time(
    browser, run_dir: str, keys: list[str], by_thread: bool = False
) -> tuple[list[dict], list[str]]:
    """Start ``python app.py`` on ``run_dir``, open a page, time the lessons ``keys``, stop
    the server (a second pass starts afresh: only the compilation cache on disk is warm).
    ``by_thread``: each lesson also gets ``app_cpu_s_by_thread`` (``ThreadCPU``)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    proc = spawn(port, run_dir, warm_up=False)
    threads = ThreadCPU(proc.pid) if by_thread else None
    attempted: list[str] = []
    context = offline_context(browser, attempted, viewport={"width": 1500, "height": 1250})
    try:
        page = context.new_page()
        wait_http(url)
        page.goto(url)
        page.wait_for_selector("#wb-run")
        page.locator(".wb-lessons-summary").click()
        lessons = []
        for key in keys:
            before = threads.totals() if threads else {}
            lessons.append(time_lesson(page, key))
            if threads:
                lessons[-1]["app_cpu_s_by_thread"] = cpu_since(before, threads.totals())
        return lessons, attempted
    finally:
        context.close()
        proc.terminate()
        proc.wait(timeout=30)


DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
DOC_MARK = "lessons-table"


def doc_table(data: dict) -> str:
    """The lessons table of docs/benchmarks.md: per lesson, each pressing step's wait and the
    total, per pass."""
    passes = data["passes"]
    head = "| lesson | what its steps press | " + " | ".join(
        f"waits, {p['cache']} (s) | total, {p['cache']} (s)" for p in passes
    )
    out = [head + " |", "|---|---|" + "---|---|" * len(passes)]
    for i, lesson in enumerate(passes[0]["lessons"]):
        pressed = [s for s in lesson["steps"] if s["pressed"]]
        what = ", ".join(f"{s['step']}: {s['pressed']}" for s in pressed)
        cells = []
        for p in passes:
            steps = [s for s in p["lessons"][i]["steps"] if s["pressed"]]
            waits = " + ".join(
                "timed out" if s["page_says"].startswith("timed out") else f"{s['seconds']:.1f}"
                for s in steps
            )
            cells += [waits, f"{p['lessons'][i]['total_s']:.1f}"]
        out.append(f"| {lesson['title']} | {what} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv=None) -> None:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=list(LESSONS), default=list(LESSONS))
    ap.add_argument("--warm", action="store_true", help="run every lesson twice")
    ap.add_argument("--cpu-by-thread", action="store_true",
                    help="also record the app's CPU seconds per lesson by thread")  # fmt: skip
    args = ap.parse_args(argv)
    out: dict = {"load_before": os.getloadavg(), "passes": []}
    with tempfile.TemporaryDirectory() as run_dir, sync_playwright() as p:
        browser = launch_browser(p)
        try:
            for cache in ("cold", "warm")[: 2 if args.warm else 1]:
                lessons, attempted = serve_and_time(browser, run_dir, args.only,
                                                    args.cpu_by_thread)  # fmt: skip
                out["passes"].append({"cache": cache, "lessons": lessons,
                                      "non_loopback_requests": attempted})  # fmt: skip
        finally:
            browser.close()
    out["load_after"] = os.getloadavg()
    out["browser"] = "Debian chromium, headless, software WebGL (SwiftShader)"
    print(json.dumps(out, indent=2))
    every = set(args.only) == set(LESSONS)
    print(f"wrote {save_json('lessons' if every else 'lessons_' + '_'.join(args.only), out)}")
    if every:
        replace_marked(DOC, DOC_MARK, doc_table(out))


if __name__ == "__main__":
    main()

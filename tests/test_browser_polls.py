"""Real-browser test of workbench/polls.py on a slow server: when every poll of the spectrum
takes longer than the pause between polls, the spectrum still arrives and no poll overlaps
another. (With the dcc.Interval that polls.py replaced, no reply was ever applied: Dash
discards a reply once a newer request of the same callback has gone out, and a loaded CI
machine stalled the teaching views that way.)"""

from __future__ import annotations

import threading
import time

import pytest
from browser_util import chromium_missing, open_workbench, workbench_config

pytestmark = [pytest.mark.browser]

if chromium_missing():
    pytest.skip(chromium_missing(), allow_module_level=True)

ROUND_TRIP_S = 1.0  # four times the spectrum poll's pause (250 ms)


def test_a_poll_slower_than_its_pause_is_answered_and_never_overlaps(tmp_path, monkeypatch):
    from workbench.panels import spectrum

    real_poll_task, lock = spectrum.poll_task, threading.Lock()
    seen = {"polls": 0, "in_flight": 0, "most_in_flight": 0}

    def slow_poll_task(*args, **kwargs):
        with lock:
            seen["polls"] += 1
            seen["in_flight"] += 1
            seen["most_in_flight"] = max(seen["most_in_flight"], seen["in_flight"])
        try:
            time.sleep(ROUND_TRIP_S)  # the stimulus: a loaded server's latency, not a wait
            return real_poll_task(*args, **kwargs)
        finally:
            with lock:
                seen["in_flight"] -= 1

    monkeypatch.setattr(spectrum, "poll_task", slow_poll_task)
    with open_workbench(workbench_config(tmp_path)) as page:
        page.click(f"#{spectrum.ID.BTN}")
        page.wait_for_selector(f"#{spectrum.ID.GRAPH} .scatterlayer .points path")
        assert "modes in" in page.inner_text(f"#{spectrum.ID.STATUS}")
    assert seen["polls"] >= 1 and seen["most_in_flight"] == 1, seen

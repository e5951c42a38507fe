"""engine.analysis: time-to-threshold, final values and the default level (CLI and UI share it)."""

import math

import numpy as np
import pytest

from engine import analysis


def test_first_reach_scans_and_bisects_alike():
    values = np.array([3.0, math.nan, 2.0, 2.5, 0.9, 1.5, 0.1])
    steps = np.arange(7) * 10
    times = steps / 100
    best = analysis.running_best(values)
    np.testing.assert_array_equal(best, [3.0, 3.0, 2.0, 2.0, 0.9, 0.9, 0.1])
    for threshold in (5.0, 3.0, 2.2, 1.0, 0.1, 0.0, -1.0):
        scanned = next(
            (i for i, v in enumerate(values) if math.isfinite(v) and v <= threshold), None
        )
        assert analysis.first_reach_index(best, threshold) == scanned, threshold
    assert analysis.first_reach(values, 1.0, steps, times) == analysis.Reach(40, 0.4)
    assert analysis.first_reach(values, -1.0, steps, times) is None
    assert analysis.first_reach(values, math.nan, steps, times) is None
    assert analysis.first_reach([], 1.0, [], []) is None


def test_nan_never_reaches_and_final_is_last_finite():
    values = [1.0, 0.5, math.nan]  # a run that diverged at its last row
    assert analysis.final_value(values) == 0.5
    assert analysis.final_value([math.nan]) is None
    assert analysis.first_reach([math.nan, math.inf], 1e300, [0, 1], [0, 1]) is None


def test_default_threshold_is_gd_final_plus_one_percent():
    assert analysis.default_threshold({"gd": -2.0, "gnn": -3.0}, base="gd") == pytest.approx(-1.98)
    # without a finite base: the worst finite final value
    assert analysis.default_threshold({"gd": None, "gnn": -3.0, "cg": 1.0}, "gd") == 1.01
    assert analysis.default_threshold({"cg": math.nan}) is None
    assert analysis.default_threshold({}) is None

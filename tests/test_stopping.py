"""The stopping rule and the stage policy as pure (state, observation) -> state functions."""

import math

import numpy as np
import pytest

from engine.config import ScheduleConfig
from engine.loop import Observation
from engine.schedule import (
    EXPLODE_FACTOR,
    RG_BLOWUP_FACTOR,
    Structure,
    radius_of_gyration,
    request_stop,
    stage_policy,
)
from engine.stopping import stopping_rule

X = np.zeros((3, 3))


def obs(step, energy, stage=2):
    return Observation(step, stage, energy, 0.0, X)


def feed(update, state, observations):
    states = []
    for o in observations:
        state = update(state, o)
        states.append(state)
    return states


def test_reference_rule_fires_after_patience_checks_without_gain():
    rule = stopping_rule(ScheduleConfig(stopping="reference", patience=2, min_delta=1.0))
    states = feed(rule.update, rule.init(), [obs(20, 10.0), obs(40, 9.5), obs(60, 9.2)])
    assert [s.fired for s in states] == [False, False, True]
    assert states[-1].best == 10.0  # 9.5 and 9.2 are within min_delta of the best


def test_reference_rule_scales_min_delta_in_stage_1():
    cfg = ScheduleConfig(stopping="reference", patience=1, min_delta=1.0, stage1_delta_factor=10)
    rule = stopping_rule(cfg)
    first = rule.update(rule.init(), obs(20, 100.0, stage=1))
    assert rule.update(first, obs(40, 95.0, stage=1)).fired  # a gain of 5 < 10 in stage 1
    assert not rule.update(first, obs(40, 95.0, stage=2)).fired  # but > 1 in stage 2


def test_relative_rule_fires_when_the_moving_average_stalls():
    rule = stopping_rule(ScheduleConfig(stopping="relative", patience=1, window=3, rel_tol=0.1))
    energies = [10.0, 5.0, 2.0, 1.0, 1.0, 1.0, 1.0]  # averages fall by > 10% until the last
    states = feed(rule.update, rule.init(), [obs(i, e) for i, e in enumerate(energies)])
    assert [s.fired for s in states] == [False] * 6 + [True]
    assert states[-1].best == 1.0


def test_none_rule_never_fires():
    rule = stopping_rule(ScheduleConfig(stopping="none", patience=1))
    states = feed(rule.update, rule.init(), [obs(i, 1.0) for i in range(1, 20)])
    assert not any(s.fired for s in states)


def test_update_is_pure():
    rule = stopping_rule(ScheduleConfig(stopping="reference", patience=1))
    state = rule.init()
    assert rule.update(state, obs(20, 1.0)) == rule.update(state, obs(20, 1.0))
    assert state == rule.init()


# the stage policy

FIRES = dict(stopping="reference", patience=1, min_delta=1.0, stage1_delta_factor=1.0)


def test_gd_starts_in_stage_2_and_ends_on_budget():
    policy = stage_policy(ScheduleConfig(max_steps=40, stopping="none"), two_stage=False)
    state = policy.init(5.0)
    assert (state.stage, state.status) == (2, "running")
    states = feed(policy.update, state, [obs(20, 4.0), obs(40, 3.0)])
    assert [s.status for s in states] == ["running", "done"]
    assert states[-1].message == "step budget reached"


def test_early_stop_switches_when_the_rule_fires():
    policy = stage_policy(ScheduleConfig(switch="early-stop", **FIRES), two_stage=True)
    state = policy.init(10.0)
    assert state.stage == 1
    state = policy.update(state, obs(20, 9.0, stage=1))  # best
    state = policy.update(state, obs(40, 8.9, stage=1))  # no gain of 1: fires
    assert (state.stage, state.stage_start, state.switch_step, state.status) == (
        2,
        40,
        40,
        "running",
    )
    assert not state.stop.fired and state.stop.best == math.inf  # a fresh rule for stage 2
    state = policy.update(state, obs(60, 7.0))
    state = policy.update(state, obs(80, 6.95))
    assert state.status == "done"
    assert state.message == "converged: stopping rule 'reference' fired at step 80"


def test_early_stop_switches_at_the_stage_1_budget():
    cfg = ScheduleConfig(switch="early-stop", stopping="none", stage1_max_steps=40)
    policy = stage_policy(cfg, two_stage=True)
    states = feed(policy.update, policy.init(10.0), [obs(20, 9.0, 1), obs(40, 8.0, 1)])
    assert [s.stage for s in states] == [1, 2] and states[-1].switch_step == 40


def test_fixed_switch_ignores_the_rule():
    cfg = ScheduleConfig(switch="fixed", stage1_steps=60, **FIRES)
    policy = stage_policy(cfg, two_stage=True)
    steps = [obs(s, 9.0, 1) for s in (20, 40, 60)]  # the rule fires at 40
    states = feed(policy.update, policy.init(10.0), steps)
    assert [s.stage for s in states] == [1, 1, 2] and states[1].status == "running"


def test_never_switch_lets_the_rule_end_the_run():
    policy = stage_policy(ScheduleConfig(switch="never", max_steps=10**6, **FIRES), two_stage=True)
    states = feed(policy.update, policy.init(10.0), [obs(20, 9.0, 1), obs(40, 8.9, 1)])
    assert [(s.stage, s.status) for s in states] == [(1, "running"), (1, "done")]
    assert states[-1].message == "converged: stopping rule 'reference' fired at step 40"
    assert states[-1].switch_step is None


def test_never_switch_without_a_firing_rule_runs_the_budget_in_stage_1():
    cfg = ScheduleConfig(switch="never", stopping="none", stage1_max_steps=20, max_steps=60)
    policy = stage_policy(cfg, two_stage=True)
    states = feed(policy.update, policy.init(10.0), [obs(s, 9.0, 1) for s in (20, 40, 60)])
    assert [s.stage for s in states] == [1, 1, 1]
    assert (states[-1].status, states[-1].message) == ("done", "step budget reached")


def test_a_switch_on_the_last_step_is_kept():
    cfg = ScheduleConfig(switch="fixed", stage1_steps=40, stopping="none", max_steps=40)
    policy = stage_policy(cfg, two_stage=True)
    state = policy.update(policy.init(10.0), obs(40, 9.0, 1))
    assert (state.stage, state.switch_step, state.status) == (2, 40, "done")


@pytest.mark.parametrize("energy", [math.nan, math.inf, 10.0 + EXPLODE_FACTOR * 11.0 + 1.0])
def test_non_finite_or_exploded_energy_diverges(energy):
    policy = stage_policy(ScheduleConfig(stopping="none"), two_stage=False)
    state = policy.update(policy.init(10.0), obs(20, energy))
    assert state.status == "diverged"
    assert state.message.endswith("at step 20 (stage 2) is not finite or exploded")


def test_non_finite_start_and_stop_request():
    policy = stage_policy(ScheduleConfig(), two_stage=False)
    state = policy.init(math.nan)
    assert (state.status, state.message) == ("diverged", "initial energy is not finite (nan)")
    stopped = request_stop(policy.init(1.0), 60)
    assert (stopped.status, stopped.message) == ("stopped", "stopped by request at step 60")


# the divergence rules on positions (issue 10.5 and 10.7)

CHAIN = np.stack([np.arange(6.0), np.zeros(6), np.zeros(6)], axis=1)  # bonds of length 1
STRUCTURE = Structure(np.stack([np.arange(5), np.arange(1, 6)], axis=1), 1.0)


def test_non_finite_positions_diverge_even_with_a_finite_energy():
    policy = stage_policy(ScheduleConfig(stopping="none"), two_stage=False)
    x = CHAIN.copy()
    x[2, 1] = math.nan
    state = policy.update(policy.init(1.0, CHAIN), Observation(20, 2, 1.0, 0.0, x))
    assert state.status == "diverged"
    assert state.message == "positions are not finite (1 of 6 atoms) at step 20 (stage 2)"
    start = policy.init(1.0, np.full((6, 3), math.inf))
    assert (start.status, start.message) == (
        "diverged",
        "initial positions are not finite (6 of 6 atoms)",
    )


def test_a_structure_that_flew_apart_diverges_with_its_reasons():
    policy = stage_policy(ScheduleConfig(stopping="none"), two_stage=False, structure=STRUCTURE)
    start = policy.init(1.0, CHAIN)
    assert start.rg_start == pytest.approx(radius_of_gyration(CHAIN))
    blown = CHAIN * (RG_BLOWUP_FACTOR + 1)  # every bond stretched, Rg 11x the start's
    state = policy.update(start, Observation(40, 2, 1e-5, 0.0, blown))
    assert state.status == "diverged"
    assert state.message.startswith("structure destroyed: radius of gyration")
    assert state.message.endswith("100% of bonds stretched at step 40 (stage 2)")
    assert policy.update(start, Observation(40, 2, 1e-5, 0.0, CHAIN * 3)).status == "running"


def test_a_tiny_start_may_grow_while_its_bonds_hold():
    policy = stage_policy(ScheduleConfig(stopping="none"), two_stage=False, structure=STRUCTURE)
    start = policy.init(1.0, CHAIN * 0.01)  # init_scale 0.01: Rg grows 100x legitimately
    assert policy.update(start, Observation(40, 2, 1.0, 0.0, CHAIN)).status == "running"
    half = CHAIN.copy()
    half[3:, 0] += 10  # Rg far beyond 10x, but only one of five bonds stretched
    assert policy.update(start, Observation(40, 2, 1.0, 0.0, half)).status == "running"
    without = stage_policy(ScheduleConfig(stopping="none"), two_stage=False)  # no structure
    state = without.update(without.init(1.0, CHAIN), Observation(40, 2, 1.0, 0.0, CHAIN * 100))
    assert state.status == "running"

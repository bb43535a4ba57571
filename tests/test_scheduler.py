"""The scheduling decision: keep slots full, proposals ahead, agents fair, stop on budget.

Pure: a snapshot of counts in, a plan out; no store, no clock.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from app.domain.scheduling import (
    AHEAD_MAX,
    REST_MAX_S,
    Plan,
    SearchState,
    eligible,
    plan,
    proposals_ahead,
    resting,
)
from app.domain.states import Label, SearchStatus

STATE = SearchState(
    status=SearchStatus.RUNNING,
    trials_total=5,
    proposing=0,
    ready=(),
    queued=0,
    running=2,
    cost_usd=0.0,
    elapsed_s=60.0,
    baseline_label=Label.OK,
    max_trials=100,
    max_concurrent=2,
    max_cost_usd=None,
    deadline_s=None,
    agent_weights={"opt": 1.0, "arch": 1.0},
    agent_counts={"opt": 2, "arch": 2},
)


def test_a_free_slot_gets_the_oldest_ready_trial_at_once() -> None:
    decided = plan(replace(STATE, running=1, ready=(7, 9)))

    assert decided.dispatch == (7,)


def test_proposals_are_kept_ready_for_as_many_slots_as_there_are() -> None:
    busy = plan(STATE)  # both slots running, nothing waiting
    half = plan(replace(STATE, proposing=1))

    assert busy.propose == ("opt", "arch")
    assert len(half.propose) == 1
    assert plan(replace(STATE, proposing=1, ready=(8,))).propose == ()


def test_agents_take_turns_in_proportion_to_their_weights() -> None:
    state = replace(
        STATE,
        max_concurrent=6,
        running=0,
        agent_weights={"opt": 2.0, "arch": 1.0},
        agent_counts={"opt": 0, "arch": 0},
    )

    turns = plan(state).propose

    assert sorted(turns) == ["arch", "arch", "opt", "opt", "opt", "opt"]


def test_before_the_baseline_is_known_one_round_runs_and_one_waits_ready() -> None:
    start = replace(STATE, trials_total=1, running=1, baseline_label=None)
    running = replace(start, trials_total=3, running=2, ready=(3,))
    full = replace(running, trials_total=4, ready=(3, 4))
    scored = replace(full, baseline_label=Label.OK)

    assert len(plan(start).propose) == 2
    assert len(plan(running).propose) == 1
    assert plan(full).propose == ()
    assert len(plan(scored).propose) == 0  # two ready already cover both slots
    assert len(plan(replace(scored, running=0)).dispatch) == 2


def test_a_paused_search_does_nothing() -> None:
    assert plan(replace(STATE, status=SearchStatus.PAUSED, running=0, ready=(4,))) == Plan()


def test_max_trials_stops_proposals_but_ready_trials_still_run() -> None:
    state = replace(STATE, trials_total=100, running=1, ready=(99,))

    decided = plan(state)

    assert (decided.propose, decided.dispatch, decided.halt) == ((), (99,), None)
    assert plan(replace(state, running=0, ready=())).halt == "max_trials reached"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"cost_usd": 5.0, "max_cost_usd": 5.0}, "max_cost_usd reached ($5.00)"),
        ({"elapsed_s": 3600.0, "deadline_s": 3600.0}, "deadline reached"),
    ],
)
def test_cost_and_deadline_stop_everything_not_yet_running(
    change: dict[str, float], reason: str
) -> None:
    running = plan(replace(STATE, running=1, ready=(12,), **change))
    idle = plan(replace(STATE, running=0, ready=(12,), **change))

    assert (running.propose, running.dispatch, running.halt) == ((), (), None)
    assert running.cancel_ready
    assert idle.halt == reason and idle.cancel_ready


def test_a_failed_baseline_halts_at_once_and_says_why() -> None:
    decided = plan(replace(STATE, baseline_label=Label.CRASH, ready=(3,)))
    named = plan(
        replace(
            STATE, baseline_label=Label.BUDGET_OVERRUN, baseline_reason="seed 1: killed at 240s"
        )
    )

    assert decided.halt == "the baseline failed (crash)"
    assert named.halt == "the baseline failed (budget_overrun): seed 1: killed at 240s"
    assert decided.cancel_ready and decided.dispatch == ()


def test_a_combiner_proposes_only_once_two_specialists_have_won() -> None:
    roster = [("opt", "llm", 1.0), ("merge", "combiner", 1.0)]

    assert eligible(roster, combinable=False) == {"opt": 1.0}
    assert eligible(roster, combinable=True) == {"opt": 1.0, "merge": 1.0}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"trials_since_best": 20, "stagnation_trials": 20},
         "stagnation: no new best in 20 trials"),
        ({"seconds_since_best": 7200.0, "stagnation_s": 7200.0},
         "stagnation: no new best in 2.0 h"),
    ],
)  # fmt: skip
def test_stagnation_stops_a_search_that_no_longer_improves(
    change: dict[str, float], reason: str
) -> None:
    assert plan(replace(STATE, running=0, **change)).halt == reason
    assert plan(replace(STATE, running=0, trials_since_best=19, stagnation_trials=20)).halt is None


def test_an_agent_rests_after_three_endpoint_failures_in_a_row_longer_each_time() -> None:
    failures = {
        "twice": (2, 1.0),  # not yet a streak
        "fresh": (3, 10.0),  # rests 30 s
        "rested": (3, 31.0),  # its 30 s are over: one more probe
        "again": (4, 59.0),  # 60 s after the fourth
        "long": (40, REST_MAX_S - 1),  # capped
    }

    assert resting(failures) == {"fresh", "again", "long"}
    assert resting({"long": (40, REST_MAX_S + 1)}) == set()


def test_resting_agents_get_no_turns_and_a_search_of_only_resting_agents_waits() -> None:
    roster = [("opt", "llm", 1.0), ("arch", "llm", 1.0)]
    some = replace(STATE, agent_weights=eligible(roster, False, resting={"opt"}))
    none = replace(STATE, running=0, agent_weights=eligible(roster, False, resting={"opt", "arch"}))

    assert plan(some).propose == ("arch", "arch")
    assert plan(none) == Plan()  # nothing to do yet, and not finished either


def slot_gaps(proposal_s: float, trial_s: float, *, measured: bool, trials: int = 80) -> float:
    """Seconds free slots waited for a proposal, in a simulated search (2 slots, a model that
    takes `proposal_s` per proposal, trials that take `trial_s`), driven by `plan` every 0.05 s;
    with `measured`, the plan is told the typical times as the tick tells it."""
    step, now, waited = 0.05, 0.0, 0.0
    proposing: list[float] = []  # when each proposal in flight is recorded
    ready: list[int] = []
    running: list[float] = []  # when each running trial frees its slot
    total, started = 1, 0
    base = replace(STATE, trials_total=1, running=0, max_trials=trials,
                   agent_counts={}, elapsed_s=0.0)  # fmt: skip
    while started < trials - 1 and now < 10_000:
        ready += [total + i for i, done in enumerate(proposing) if done <= now]
        proposing = [done for done in proposing if done > now]
        running = [free for free in running if free > now]
        state = replace(
            base, trials_total=total, proposing=len(proposing), ready=tuple(ready),
            running=len(running),
            proposal_s=proposal_s if measured else None, trial_s=trial_s if measured else None,
        )  # fmt: skip
        decided = plan(state)
        for trial in decided.dispatch:
            ready.remove(trial)
            running.append(now + trial_s)
            started += 1
        proposing += [now + proposal_s] * len(decided.propose)
        total += len(decided.propose)
        if started > 4:  # past the start, every free slot with no trial to take is a wait
            waited += step * (state.max_concurrent - len(running))
        now += step
    return waited


@pytest.mark.parametrize(("proposal_s", "trial_s"), [(4.0, 2.0), (1.0, 2.0), (10.0, 2.0)])
def test_a_pipeline_sized_from_measured_times_keeps_every_slot_fed(
    proposal_s: float, trial_s: float
) -> None:
    """Issue 19: with proposals as many as slots, 4 s sessions left 2 s trials' slots idle."""
    fed = slot_gaps(proposal_s, trial_s, measured=True)
    unsized = slot_gaps(proposal_s, trial_s, measured=False)

    assert fed <= 0.05 * 2, fed  # a tick's rounding at most
    if proposal_s > trial_s:
        assert unsized > 10 * (fed + 1)  # what it was: slots waiting on the model


def test_proposals_ahead_grow_with_the_models_slowness_but_not_without_bound() -> None:
    assert proposals_ahead(STATE) == 2  # nothing measured yet: one per slot
    assert proposals_ahead(replace(STATE, proposal_s=1.0, trial_s=2.0)) == 3
    assert proposals_ahead(replace(STATE, proposal_s=4.0, trial_s=2.0)) == 6
    assert proposals_ahead(replace(STATE, proposal_s=60.0, trial_s=0.01)) == AHEAD_MAX * 2

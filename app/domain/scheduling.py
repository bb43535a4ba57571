"""What a search should do next, decided from a snapshot of its counts.

Two rules make slots never wait on a model: a trial is dispatched the moment
a slot frees, and proposals are kept in flight or ready *ahead* of free slots,
so the next trial is already committed when one finishes: one per slot, plus
as many as the slots use up while one proposal is being made (Little's law,
from the search's measured proposal and trial times), so a tool-using session
slower than a trial does not leave slots waiting either.
Agents take turns in proportion to their weights; one whose model endpoint
keeps failing rests, longer each time, and those failed proposals do not
count toward `max_trials`. A search halts when its
budget is spent and nothing is left in flight, or when its baseline failed
(then no trial could be compared to anything). Pure: the service passes the
clock in as `elapsed_s`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from app.domain.states import Label, SearchStatus

ENDPOINT_FAILURES = 3  # proposals in a row failing on the model endpoint before an agent rests
REST_BASE_S = 30.0
REST_MAX_S = 600.0


@dataclass(frozen=True)
class SearchState:
    status: SearchStatus
    trials_total: int  # trial rows but cancelled ones and endpoint failures, the baseline included
    proposing: int
    ready: Sequence[int]  # ids of committed trials waiting for a slot, oldest first
    queued: int
    running: int
    cost_usd: float
    elapsed_s: float
    baseline_label: Label | None  # None while the baseline has not finished
    max_trials: int
    max_concurrent: int
    max_cost_usd: float | None
    deadline_s: float | None
    trials_since_best: int = 0  # finished trials numbered after the current best
    seconds_since_best: float = 0.0
    stagnation_trials: int | None = None
    stagnation_s: float | None = None
    agent_weights: Mapping[str, float] = field(default_factory=dict)  # roster order
    agent_counts: Mapping[str, int] = field(default_factory=dict)  # proposed so far, per agent
    baseline_reason: str = ""  # why a failed baseline failed (its seed named, with seeds)
    proposal_s: float | None = None  # typical time from asking for a proposal to its recording
    trial_s: float | None = None  # typical time a trial holds its slot


@dataclass(frozen=True)
class Plan:
    propose: tuple[str, ...] = ()  # one agent name per new proposal
    dispatch: tuple[int, ...] = ()  # ready trials to hand to trial workers
    cancel_ready: bool = False  # the budget ended: drop what would have run next
    halt: str | None = None  # why the search is finished, when it is


def plan(state: SearchState) -> Plan:
    if state.status != SearchStatus.RUNNING:
        return Plan()
    if state.baseline_label not in (None, Label.OK):
        why = f": {state.baseline_reason}" if state.baseline_reason else ""
        return Plan(cancel_ready=True, halt=f"the baseline failed ({state.baseline_label}){why}")
    spent = budget_spent(state)
    hard_stop = spent is not None and spent != "max_trials reached"
    in_flight = state.proposing + state.queued + state.running
    if spent and (not state.ready or hard_stop) and in_flight == 0:
        return Plan(cancel_ready=hard_stop, halt=spent)
    free = max(state.max_concurrent - state.queued - state.running, 0)
    dispatch = () if hard_stop else tuple(state.ready[:free])
    if spent:
        return Plan(dispatch=dispatch, cancel_ready=hard_stop)  # nothing new starts
    waiting = state.proposing + len(state.ready) - len(dispatch)
    limit = state.max_trials
    if state.baseline_label is None:
        # Until the baseline is scored, one slot-full runs beside it and one waits
        # ready: a failed baseline wastes at most two rounds of proposals, and the
        # slots it frees are refilled at once when it passes.
        limit = min(limit, 2 * state.max_concurrent)
    room = max(limit - state.trials_total, 0)
    wanted = min(max(proposals_ahead(state) - waiting, 0), room)
    return Plan(propose=_turns(state, wanted), dispatch=dispatch)


AHEAD_MAX = 8  # proposals ahead per slot at most, so instant trials cannot flood a model


def proposals_ahead(state: SearchState) -> int:
    """How many proposals to keep in flight or ready: one per slot, plus what the slots take
    while one proposal is made (slots x proposal time / trial time). Each is still made just
    in time, so none sees an older lineage than its own making costs; the cap bounds the
    requests a model gets at once when trials are near instant."""
    slots = state.max_concurrent
    if not state.proposal_s or not state.trial_s:
        return slots
    consumed = math.ceil(slots * state.proposal_s / state.trial_s)
    return min(slots + consumed, AHEAD_MAX * slots)


def budget_spent(state: SearchState) -> str | None:
    """Which search budget is used up, if any."""
    if state.trials_total >= state.max_trials:
        return "max_trials reached"
    if state.max_cost_usd is not None and state.cost_usd >= state.max_cost_usd:
        return f"max_cost_usd reached (${state.cost_usd:.2f})"
    if state.deadline_s is not None and state.elapsed_s >= state.deadline_s:
        return "deadline reached"
    if state.stagnation_trials is not None and state.trials_since_best >= state.stagnation_trials:
        return f"stagnation: no new best in {state.trials_since_best} trials"
    if state.stagnation_s is not None and state.seconds_since_best >= state.stagnation_s:
        return f"stagnation: no new best in {state.seconds_since_best / 3600:.1f} h"
    return None


def _turns(state: SearchState, wanted: int) -> tuple[str, ...]:
    """Weighted fair turns: each pick goes to the agent furthest below its share."""
    counts = dict(state.agent_counts)
    order = list(state.agent_weights)
    picks: list[str] = []
    for _ in range(wanted if order else 0):
        agent = min(
            order,
            key=lambda name: (counts.get(name, 0) / state.agent_weights[name], order.index(name)),
        )
        counts[agent] = counts.get(agent, 0) + 1
        picks.append(agent)
    return tuple(picks)


def eligible(
    agents: Sequence[tuple[str, str, float]], combinable: bool, resting: Collection[str] = ()
) -> dict[str, float]:
    """name -> weight of the agents that can propose now; a combiner needs two wins to merge."""
    return {
        name: weight
        for name, kind, weight in agents
        if (kind != "combiner" or combinable) and name not in resting
    }


def resting(endpoint_failures: Mapping[str, tuple[int, float]]) -> set[str]:
    """Agents whose model endpoint keeps failing, left to rest before they propose again.

    `endpoint_failures`: name -> (how many of its latest proposals in a row
    failed on the endpoint, seconds since the last of them). After
    ENDPOINT_FAILURES in a row the agent waits, twice as long after each
    further failure, so an outage (a restarting vLLM, a rate-limited key)
    costs a few probes instead of the search's whole trial budget.
    """
    return {
        name
        for name, (streak, since_s) in endpoint_failures.items()
        if streak >= ENDPOINT_FAILURES and since_s < rest_s(streak)
    }


def rest_s(streak: int) -> float:
    return min(REST_BASE_S * 2.0 ** max(streak - ENDPOINT_FAILURES, 0), REST_MAX_S)

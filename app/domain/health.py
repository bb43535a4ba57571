"""Why a search is not getting anywhere, said where its user looks (page, API, CLI).

A search can look alive while nothing useful happens: every proposal of an
agent fails the same way (its endpoint is down, its replies cannot be
applied), or trials wait for a worker that nobody started. Each is a
warning with its cause and what to do. Pure: the store gathers the facts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from app.domain.states import Label

STREAK = 5  # an agent's latest finished trials that all failed the same way
STALL_S = 120.0  # how long work may wait for a worker before it is said to have none
REASON_CHARS = 200

_ADVICE = {
    Label.INFRA_ERROR: "its model endpoint (or our side) fails: check the endpoint and its "
    "key, then resume",
    Label.PATCH_REJECTED: "its replies cannot be applied as edits: check its model and mode "
    "(single for models without tool calling)",
    Label.NO_SUBMISSION: "its sessions end without submitting: give it more turns or tokens, "
    "or a model that calls tools",
    Label.ILLEGAL_EDIT: "it edits outside its surface: check its surface and brief",
    Label.DUPLICATE: "it proposes only what was already tried: widen its surface or brief",
}


@dataclass(frozen=True)
class Outcome:
    label: Label | None
    reason: str


@dataclass(frozen=True)
class Waiting:
    """Work that waits: how many, for how long at most, and the queue it waits on."""

    count: int
    oldest_s: float
    queue: str


@dataclass(frozen=True)
class Pipeline:
    """Where a running search's work stands between the scheduler and the workers."""

    ready: Waiting | None = None  # proposed and committed, not yet sent to a trial queue
    queued: Waiting | None = None  # sent to a trial queue, not yet started
    proposals: Waiting | None = None  # awaiting a proposal worker
    running: int = 0
    free_slots: int = 0


def warnings(latest: Mapping[str, Sequence[Outcome]], pipeline: Pipeline) -> list[str]:
    """`latest`: each agent's latest finished trials, newest first."""
    found = []
    for agent, outcomes in latest.items():
        streak = list(outcomes[:STREAK])
        labels = {outcome.label for outcome in streak}
        if len(streak) < STREAK or len(labels) != 1:
            continue
        (label,) = labels
        if label is None or label not in _ADVICE:
            continue
        reason = streak[0].reason[:REASON_CHARS]
        found.append(
            f"agent {agent}: its last {STREAK} trials all ended {label.value} "
            f"({reason}); {_ADVICE[label]}"
        )
    ready, queued, proposals = pipeline.ready, pipeline.queued, pipeline.proposals
    if ready and ready.oldest_s > STALL_S and pipeline.free_slots > 0:
        found.append(
            f"{ready.count} trials have been ready for up to {ready.oldest_s:.0f}s with a slot "
            "free, and nothing sends them: is the scheduler running? (`trialforge scheduler`, "
            "or `trialforge up`)"
        )
    if queued and queued.oldest_s > STALL_S and pipeline.running == 0:
        found.append(
            f"{queued.count} trials have waited up to {queued.oldest_s:.0f}s with no trial "
            f"worker taking them: start one on queue {queued.queue!r} "
            f"(`trialforge worker --queues {queued.queue}`, or `trialforge up`)"
        )
    if proposals and proposals.oldest_s > STALL_S:
        found.append(
            f"{proposals.count} proposals have waited up to {proposals.oldest_s:.0f}s and no "
            f"proposal worker took them: start one, or more "
            f"(`trialforge worker --queues {proposals.queue}`, or `trialforge up`)"
        )
    return found

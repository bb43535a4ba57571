"""The vocabulary of a search's life: statuses, labels and the legal moves between them.

Kept free of SQLAlchemy and HTTP so that every decision module (labelling,
legality, scheduling) can import it without pulling in an adapter.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class SearchStatus(StrEnum):
    """Where a search is in its life; only `running` searches get new trials."""

    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    FINISHED = "finished"


class SearchAction(StrEnum):
    """What a user may ask of a search."""

    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"


# action -> (statuses it may start from, status it leads to). Anything else is a conflict.
SEARCH_TRANSITIONS: dict[SearchAction, tuple[frozenset[SearchStatus], SearchStatus]] = {
    SearchAction.PAUSE: (frozenset({SearchStatus.RUNNING}), SearchStatus.PAUSED),
    # A finished search resumes too: after its budgets were raised, or its baseline retried.
    SearchAction.RESUME: (
        frozenset({SearchStatus.PAUSED, SearchStatus.FINISHED}),
        SearchStatus.RUNNING,
    ),
    SearchAction.CANCEL: (
        frozenset({SearchStatus.RUNNING, SearchStatus.PAUSED}),
        SearchStatus.CANCELLED,
    ),
}


def next_search_status(current: SearchStatus, action: SearchAction) -> SearchStatus | None:
    """The status `action` leads to from `current`, or None when the move is illegal."""
    sources, target = SEARCH_TRANSITIONS[action]
    return target if current in sources else None


class TrialStatus(StrEnum):
    """Where a trial is in the pipeline. Its outcome is the separate `Label`."""

    PROPOSED = "proposed"  # an agent is writing its edit
    READY = "ready"  # committed, waiting for a free slot
    QUEUED = "queued"  # handed to the broker for a trial worker
    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"


UNFINISHED = (TrialStatus.PROPOSED, TrialStatus.READY, TrialStatus.QUEUED, TrialStatus.RUNNING)


class Label(StrEnum):
    """The outcome of a finished trial: `ok`, or the one reason it failed.

    `infra_error` is ours, not the trial's: it is retried and kept out of the
    agents' feedback so a good idea is not marked as failed.
    """

    OK = "ok"
    PATCH_REJECTED = "patch_rejected"
    ILLEGAL_EDIT = "illegal_edit"
    DUPLICATE = "duplicate"
    NO_SUBMISSION = "no_submission"  # an agent session ended (or hit a cap) without an edit
    PREFLIGHT_CRASH = "preflight_crash"  # the cheap preflight failed: no full run was made
    CRASH = "crash"
    BUDGET_OVERRUN = "budget_overrun"
    OOM = "oom"
    SIZE_FAILURE = "size_failure"
    GATE_MISS = "gate_miss"
    EVALUATOR_ERROR = "evaluator_error"
    INFRA_ERROR = "infra_error"


class Direction(StrEnum):
    """Which way the metric improves; it comes only from the spec, never from a trial.

    `gain` is the one rule for "better": every delta, improvement, best, sort
    and chart goes through it (or `higher_is_better`, which it is built on),
    so a minimised metric shows the same positive gains a maximised one does.
    """

    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"

    @property
    def higher_is_better(self) -> bool:
        return self is Direction.MAXIMIZE

    def gain(self, new: float, old: float) -> float:
        """How much better `new` is than `old`: positive is better, in the metric's units."""
        return new - old if self.higher_is_better else old - new

    def better(self, new: float, old: float) -> bool:
        """Strictly better."""
        return self.gain(new, old) > 0

    def best(self, values: Iterable[float]) -> float:
        """The best of `values` (which must not be empty)."""
        return max(values) if self.higher_is_better else min(values)

    def rank(self, score: float) -> float:
        """A sort key: ascending order puts the best score first."""
        return -score if self.higher_is_better else score


class Decision(StrEnum):
    """What the loop made of a trial, separate from its label: did it become the new best?"""

    BASELINE = "baseline"
    PENDING_CONFIRMATION = "pending_confirmation"  # beat the best once; more seeds running
    KEEP = "keep"  # the new best, past the noise floor
    DISCARD = "discard"


# Trials a proposal may build on (a parent, a rebase target): the baseline and the keeps.
# Never "any ok trial": a scored trial that did not become the best was discarded.
KEPT = (Decision.BASELINE, Decision.KEEP)

# Outcomes decided before anything ran in the sandbox: such a trial has no run to repeat.
NEVER_RAN = frozenset(
    {Label.PATCH_REJECTED, Label.ILLEGAL_EDIT, Label.DUPLICATE, Label.NO_SUBMISSION}
)
# Searches that can still take trials: a re-run, a resume of their queue.
ACTIVE = frozenset({SearchStatus.RUNNING, SearchStatus.PAUSED})


def can_rerun(
    status: TrialStatus, label: Label | None, has_commit: bool, search: SearchStatus
) -> str | None:
    """Why a trial cannot be run again, or None: it must have run, in a search still active.
    The one rule for the service (which refuses) and the trial page (which offers)."""
    if not has_commit or status != TrialStatus.FINISHED or label in NEVER_RAN:
        return "it has no finished run to repeat"
    if search not in ACTIVE:
        return f"its search is {search}"
    return None

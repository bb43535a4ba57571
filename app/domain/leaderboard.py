"""The agent leaderboard and the label counts: one rule for the prompts, the tools and the pages.

Every reader sums the same `Tally` rows (trials of one agent with one status
and label, from `app.store.rollup.tallies`), so a prompt, a session's
`lineage` tool and the search page can never disagree about who kept what.
The words are fixed here too: a **keep** is a trial that became the new
best (its decision, not its label); **scored** trials finished `ok`
(measured, kept or not); **failed** ones carry any other label.

What agents see leaves out our own failures (`infra_error`) and trials
still in flight: an agent must not learn to avoid a good idea because our
infrastructure failed it, nor count a trial that has no outcome yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from app.domain.states import UNFINISHED, Label, TrialStatus

BASELINE_AGENT = "baseline"  # how trial 0, which no agent proposed, is named everywhere

# What each label means, in the words agents (and pages) are told; one per `Label`.
LABEL_MEANINGS: dict[Label, str] = {
    Label.OK: "it ran and was scored (kept only if it also became the best)",
    Label.PATCH_REJECTED: "the edit could not be applied or parsed",
    Label.ILLEGAL_EDIT: "the edit touched a file outside the surface or a protected path",
    Label.DUPLICATE: "this recipe or this idea (elsewhere) was already tried; it did not run",
    Label.NO_SUBMISSION: "the session ended without submitting an edit",
    Label.PREFLIGHT_CRASH: "the cheap preflight failed, so the full run never started",
    Label.CRASH: "the run exited with an error (or the evaluator found its output invalid)",
    Label.BUDGET_OVERRUN: "the run passed its wall-clock or step budget and was stopped",
    Label.OOM: "the run ran out of memory",
    Label.SIZE_FAILURE: "the artifact was larger than the size cap",
    Label.GATE_MISS: "it was scored but missed a gate (the score is still shown)",
    Label.EVALUATOR_ERROR: "the evaluator could not score it",
    Label.INFRA_ERROR: "our infrastructure failed; not the idea's fault (never shown to you)",
}


@dataclass(frozen=True)
class Tally:
    """Trials of one agent with one status and label (None: no outcome yet)."""

    agent: str
    status: TrialStatus
    label: Label | None
    count: int
    keeps: int = 0
    best_delta: float | None = None  # the largest gain over a parent among `ok` trials
    tokens: int = 0
    cost_usd: float = 0.0


@dataclass(frozen=True)
class Standing:
    """One agent's record in a search."""

    agent: str
    kind: str
    trials: int  # finished (cancelled ones excluded)
    scored: int  # finished `ok`: measured, kept or not
    keeps: int  # became the new best
    failed: int  # finished with any other label
    in_flight: int
    best_delta: float | None
    tokens: int
    cost_usd: float

    @property
    def failure_rate(self) -> float:
        return self.failed / self.trials if self.trials else 0.0


def visible_to_agents(tallies: Iterable[Tally]) -> list[Tally]:
    """The tallies an agent may learn from: outcomes, without our infrastructure's failures."""
    return [
        tally
        for tally in tallies
        if tally.status is TrialStatus.FINISHED and tally.label is not Label.INFRA_ERROR
    ]


def standings(tallies: Iterable[Tally], roster: Sequence[tuple[str, str]]) -> list[Standing]:
    """One row per agent of `roster` ((name, kind), in roster order), summed from `tallies`."""
    rows = list(tallies)
    board = []
    for name, kind in roster:
        mine = [tally for tally in rows if tally.agent == name]
        finished = [t for t in mine if t.status is TrialStatus.FINISHED]
        deltas = [t.best_delta for t in finished if t.best_delta is not None]
        board.append(
            Standing(
                agent=name,
                kind=kind,
                trials=sum(t.count for t in finished),
                scored=sum(t.count for t in finished if t.label is Label.OK),
                keeps=sum(t.keeps for t in finished),
                failed=sum(t.count for t in finished if t.label not in (None, Label.OK)),
                in_flight=sum(t.count for t in mine if t.status in UNFINISHED),
                best_delta=max(deltas) if deltas else None,
                tokens=sum(t.tokens for t in mine),
                cost_usd=sum(t.cost_usd for t in mine),
            )
        )
    return board


def describe(standing: Standing) -> str:
    """A standing in the fixed words, as prompts and the `lineage` tool show it."""
    return (
        f"{standing.agent}: {standing.trials} trials, {standing.keeps} keeps "
        f"(became the best), {standing.scored} scored, {standing.failed} failed"
    )


OUTCOME_WORDS = {
    "keep": "kept: became the best",
    "discard": "discarded: not better than the best",
    "pending_confirmation": "confirming on more seeds",
    "baseline": "the baseline",
}


def outcome(label: str | None, decision: str | None) -> str:
    """A trial's outcome in the fixed words: its label, and what the loop made of a scored one."""
    if label is None:
        return "pending"
    return f"{label} ({OUTCOME_WORDS[decision]})" if decision in OUTCOME_WORDS else label


def label_counts(tallies: Iterable[Tally]) -> dict[str, int]:
    """Finished trials per label, in the label's name order."""
    counts: dict[str, int] = {}
    for tally in tallies:
        if tally.label is not None:
            counts[tally.label.value] = counts.get(tally.label.value, 0) + tally.count
    return dict(sorted(counts.items()))

"""The lineage as agents see it, read from the store: notes for the digest, refs for the tools.

Infra errors are left out everywhere: they were our failures, not the
ideas', and an agent must not learn to avoid a good idea because of them.
Both views are rendered from one row shape (`_as_seen`), so the prompt and
the tools describe a trial the same way.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.orm import Session, aliased

from app.domain.digest import KEPT_SHOWN, TrialNote
from app.domain.ideas import TriedIdea
from app.domain.leaderboard import BASELINE_AGENT, outcome
from app.domain.noise import spread
from app.domain.roster import AgentKind
from app.domain.states import Decision, Direction, Label, TrialStatus
from app.domain.workbench import TrialRef
from app.store.models import Agent, Search, Trial
from app.store.ordering import best_first
from app.store.trials import ancestry

HISTORY = 10  # trials per digest section
VISIBLE_TRIALS = 200  # latest trials a session's tools can show (besides the best line)
SPREAD_SCORES = 50  # latest scores whose spread stands in for the noise floor, unmeasured
MIN_SPREAD_SCORES = 3


def _as_seen(trial: Trial, agent: str | None) -> dict[str, Any]:
    """A trial's fields as agents see them (in the digest and through the tools)."""
    return {
        "number": trial.number,
        "agent": agent or BASELINE_AGENT,
        "hypothesis": trial.hypothesis,
        "label": trial.label,
        "decision": trial.decision,
        "score": trial.score,
        "delta": trial.delta,
        "expected_delta": trial.expected_delta,
        "reason": trial.label_reason or "",
        "log_tail": trial.log_tail if trial.label not in (None, Label.OK) else "",
    }


def _visible() -> ColumnElement[bool]:
    return or_(Trial.label.is_(None), Trial.label != Label.INFRA_ERROR)


class Notes:
    """Trials of one search rendered as digest notes."""

    def __init__(self, session: Session, search_id: int) -> None:
        self.session, self.search_id = session, search_id
        self.parent = aliased(Trial)

    def _select(self) -> Select[Trial, str]:
        return (
            select(Trial, Agent.name)
            .outerjoin(Agent, Trial.agent_id == Agent.id)
            .where(Trial.search_id == self.search_id, _visible())
        )

    def _notes(self, query: Select[Trial, str]) -> list[TrialNote]:
        return [TrialNote(**_as_seen(trial, agent)) for trial, agent in self.session.execute(query)]

    def one(self, trial: Trial) -> TrialNote:
        return self._notes(self._select().where(Trial.id == trial.id))[0]

    def many(self, trial_ids: list[int]) -> list[TrialNote]:
        notes = self._notes(self._select().where(Trial.id.in_(trial_ids)))
        return sorted(notes, key=lambda note: note.number)

    def query(self, *where: ColumnElement[bool]) -> list[TrialNote]:
        recent = self._select().where(*where).order_by(Trial.number.desc()).limit(HISTORY)
        return sorted(self._notes(recent), key=lambda note: note.number)

    def kept(self, direction: Direction, baseline: float | None) -> list[TrialNote]:
        """The best keeps, best first, each with its gain over the baseline's score."""
        query = (
            self._select()
            .where(Trial.decision == Decision.KEEP, Trial.score.is_not(None))
            .order_by(best_first(Trial.score, direction), Trial.number)
            .limit(KEPT_SHOWN)
        )
        return [
            replace(
                note,
                gain=None
                if baseline is None or note.score is None
                else direction.gain(note.score, baseline),
            )  # fmt: skip
            for note in self._notes(query)
        ]

    def keeps(self, *, exclude_agent: int | None) -> list[TrialNote]:
        """Trials that became the new best (the decision, never the label alone)."""
        return self.query(Trial.decision == Decision.KEEP, Trial.agent_id != exclude_agent)

    def unmerged_keeps(self, parent: Trial) -> tuple[tuple[str, str, str], ...]:
        """(agent, parent commit, commit) of recent specialists' keeps outside `parent`'s line."""
        line = set(ancestry(self.session, parent.id))
        keeps = self.keeps(exclude_agent=None)
        rows = self.session.execute(
            select(Trial.id, Agent.name, self.parent.commit_sha, Trial.commit_sha)
            .join(Agent, Trial.agent_id == Agent.id)
            .join(self.parent, Trial.parent_id == self.parent.id)
            .where(
                Trial.search_id == self.search_id,
                Trial.number.in_([note.number for note in keeps]),
                Agent.kind != AgentKind.COMBINER,
            )
            .order_by(Trial.number.desc())
        )
        return tuple(
            (name, str(parent_commit), str(commit))
            for trial_id, name, parent_commit, commit in rows
            if trial_id not in line
        )


def tried_idea(
    session: Session, search_id: int, fingerprint: str, exclude_id: int | None = None
) -> TriedIdea | None:
    """The earliest trial of this search that tried the idea (ran it, or runs it now).

    Trials that never measured it do not count: a duplicate refused before its
    run, a cancelled one, an infra error (our failure, not the idea's).
    """
    parent = aliased(Trial)
    twins = (
        Trial.search_id == search_id,
        Trial.idea_hash == fingerprint,
        Trial.id != (exclude_id or 0),
        Trial.status != TrialStatus.CANCELLED,
        or_(Trial.label.is_(None), Trial.label.not_in([Label.DUPLICATE, Label.INFRA_ERROR])),
    )
    first = session.execute(
        select(Trial.number, parent.number, Trial.label, Trial.decision)
        .outerjoin(parent, Trial.parent_id == parent.id)
        .where(*twins)
        .order_by(Trial.number)
        .limit(1)
    ).first()
    if first is None:
        return None
    number, parent_number, label, decision = first
    kept = session.scalar(select(func.count()).where(*twins, Trial.decision == Decision.KEEP))
    return TriedIdea(number, parent_number, outcome(label, decision), kept=bool(kept))


def noise_floor(session: Session, search: Search) -> float | None:
    """A change smaller than this is noise: the baseline's spread over seeds when measured,
    else the spread of the search's latest scores (the metric's own scale)."""
    if search.noise_sd:
        return search.noise_sd
    scores = list(
        session.scalars(
            select(Trial.score)
            .where(Trial.search_id == search.id, Trial.label == Label.OK, Trial.score.is_not(None))
            .order_by(Trial.number.desc())
            .limit(SPREAD_SCORES)
        )
    )
    values = [score for score in scores if score is not None]
    return spread(values) if len(values) >= MIN_SPREAD_SCORES else None


def workbench_view(
    session: Session, search: Search, best_line: list[int], limited: bool
) -> tuple[TrialRef, ...]:
    """The recorded trials a session's tools may show: the latest ones and the best line
    (`best_line`: its trial ids; only it in the `best_only` control study)."""
    parent = aliased(Trial)
    recent = select(Trial.id).where(Trial.search_id == search.id)
    latest = recent.order_by(Trial.number.desc()).limit(0 if limited else VISIBLE_TRIALS)
    wanted = set(session.scalars(latest))
    rows = session.execute(
        select(Trial, Agent.name, parent.number)
        .outerjoin(Agent, Trial.agent_id == Agent.id)
        .outerjoin(parent, Trial.parent_id == parent.id)
        .where(Trial.id.in_(wanted | set(best_line)), _visible())
    )
    refs = [
        TrialRef(**_as_seen(trial, agent), commit=trial.commit_sha, parent_number=parent_number)
        for trial, agent, parent_number in rows
    ]
    return tuple(sorted(refs, key=lambda ref: ref.number))

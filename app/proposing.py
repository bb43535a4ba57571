"""Proposals in the store: what an agent is given, and what becomes of its edit.

`load_job` snapshots everything an agent needs (its spec, the parent commit,
the lineage digest) so the agent runs with no database session open, however
long the model takes. `record_proposal` turns the agent's diff into a trial
commit (legality enforced by the git store), refuses an edit whose recipe
(its git tree) was already tried in the search as `duplicate`, and labels a
rejected edit so the next proposals learn from it. Tokens and cost are stored whatever happened.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, or_, select
from sqlalchemy.orm import Session, aliased

from app import events
from app.digest import Digest, Standing, TrialNote, best_only
from app.errors import EditRejected
from app.gitstore import GitStore
from app.legality import glob_match
from app.loop import db_now
from app.models import Agent, Search, Trial
from app.spec import AgentKind, AgentSpec, Feedback, LLMMode, SearchSpec
from app.states import Direction, Label, TrialStatus
from app.trials import ancestry
from app.workbench import TrialRef

logger = logging.getLogger(__name__)

HISTORY = 10  # trials per digest section
VISIBLE_TRIALS = 200  # latest trials a session's tools can show (besides the best line)
SURFACE_FILE_MAX_BYTES = 200_000  # larger surface files are listed, not shown


@dataclass(frozen=True)
class ProposalJob:
    trial_id: int
    number: int
    search_id: int
    spec: SearchSpec
    agent: AgentSpec
    repo_path: Path
    parent_commit: str
    digest: Digest
    seed: int
    parent_number: int = 0
    # For a combiner: (agent, parent commit, commit) of recent wins not in the parent's line.
    wins: tuple[tuple[str, str, str], ...] = ()
    # For a tool-using session: the recorded trials its tools may show, and the best line.
    trials: tuple[TrialRef, ...] = ()
    best_line: tuple[int, ...] = ()


@dataclass(frozen=True)
class Usage:
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0


Transcript = list[dict[str, Any]]


@dataclass(frozen=True)
class Proposal:
    hypothesis: str
    diff: str
    usage: Usage = Usage()
    parent_number: int | None = None  # set when the session rebased onto another trial
    transcript: Transcript | None = None


class ProposalFailed(Exception):
    """The agent produced no usable edit; `label` says which kind of failure."""

    def __init__(
        self,
        label: Label,
        reason: str,
        usage: Usage = Usage(),
        transcript: Transcript | None = None,
    ) -> None:
        super().__init__(reason)
        self.label, self.reason, self.usage = label, reason, usage
        self.transcript = transcript


def load_job(session: Session, trial_id: int) -> ProposalJob | None:
    """The job for a trial awaiting its proposal; None if it no longer awaits one."""
    trial = session.get(Trial, trial_id)
    if trial is None or trial.status != TrialStatus.PROPOSED or trial.parent_id is None:
        return None
    search = session.get(Search, trial.search_id)
    parent = session.get(Trial, trial.parent_id)
    assert search is not None and parent is not None and trial.agent is not None
    assert parent.commit_sha is not None  # only committed trials become parents
    spec = SearchSpec.model_validate(search.spec)
    agent = next(a for a in spec.agents if a.name == trial.agent.name)
    store = GitStore(Path(search.repo_path))
    notes = _Notes(session, search.id)
    best = session.get(Trial, search.best_trial_id) if search.best_trial_id else None
    direction = Direction(spec.evaluator.direction)
    digest = Digest(
        task=spec.description or spec.name,
        metric=spec.evaluator.metric,
        direction=direction,
        gates=[str(gate) for gate in spec.evaluator.gates],
        agent=agent.name,
        brief=agent.surface.brief,
        surface=agent.surface.paths,
        protected=spec.evaluator.protected,
        parent=notes.one(parent),
        files=_surface_files(store, parent.commit_sha, agent.surface.paths),
        best=notes.one(best) if best is not None else None,
        best_ancestry=notes.many(ancestry(session, best.id)[1:]) if best is not None else (),
        own_recent=notes.query(
            Trial.agent_id == trial.agent_id, Trial.status == TrialStatus.FINISHED
        ),
        others_wins=notes.wins(exclude_agent=trial.agent_id),
        recent_failures=notes.query(
            Trial.label.not_in([Label.OK, Label.INFRA_ERROR]), Trial.label.is_not(None)
        ),
        tried_from_parent=notes.query(Trial.parent_id == parent.id, Trial.id != trial.id),
        leaderboard=_standings(session, search.id),
    )
    limited = spec.feedback == Feedback.BEST_ONLY
    view = _workbench_view(session, search, best, limited) if agent.mode == LLMMode.SESSION else {}
    return ProposalJob(
        trial_id=trial.id,
        number=trial.number,
        search_id=search.id,
        spec=spec,
        agent=agent,
        repo_path=Path(search.repo_path),
        parent_commit=parent.commit_sha,
        digest=best_only(digest) if limited else digest,
        seed=search.id * 1_000_003 + trial.number,
        parent_number=parent.number,
        wins=notes.unmerged_wins(parent) if agent.kind == AgentKind.COMBINER else (),
        **view,
    )


def _standings(session: Session, search_id: int) -> list[Standing]:
    ok, failed = Trial.label == Label.OK, Trial.label.not_in([Label.OK, Label.INFRA_ERROR])
    rows = session.execute(
        select(
            Agent.name,
            func.count(Trial.id),
            func.count(case((ok, 1))),
            func.count(case((ok & (Trial.delta > 0), 1))),
            func.count(case((failed, 1))),
        )
        .outerjoin(Trial, Trial.agent_id == Agent.id)
        .where(Agent.search_id == search_id)
        .group_by(Agent.id, Agent.name)
        .order_by(Agent.id)
    )
    return [Standing(*row) for row in rows]


def _workbench_view(
    session: Session, search: Search, best: Trial | None, limited: bool
) -> dict[str, Any]:
    """The recorded trials a session's tools may show: the latest ones and the best line
    (only the best line in the `best_only` control study)."""
    parent = aliased(Trial)
    best_line = ancestry(session, best.id) if best is not None else []
    recent = select(Trial.id).where(Trial.search_id == search.id)
    latest = recent.order_by(Trial.number.desc()).limit(0 if limited else VISIBLE_TRIALS)
    wanted = set(session.scalars(latest))
    rows = session.execute(
        select(Trial, Agent.name, parent.number)
        .outerjoin(Agent, Trial.agent_id == Agent.id)
        .outerjoin(parent, Trial.parent_id == parent.id)
        .where(
            Trial.id.in_(wanted | set(best_line)),
            or_(Trial.label.is_(None), Trial.label != Label.INFRA_ERROR),
        )
    )
    refs = {
        trial.id: TrialRef(
            **_as_seen(trial, agent), commit=trial.commit_sha, parent_number=parent_number
        )
        for trial, agent, parent_number in rows
    }
    return {
        "trials": tuple(sorted(refs.values(), key=lambda ref: ref.number)),
        "best_line": tuple(refs[i].number for i in best_line if i in refs),
    }


def _as_seen(trial: Trial, agent: str | None) -> dict[str, Any]:
    """A trial's fields as agents see them (in the digest and through the tools)."""
    return {
        "number": trial.number,
        "agent": agent or "baseline",
        "hypothesis": trial.hypothesis,
        "label": trial.label,
        "score": trial.score,
        "delta": trial.delta,
        "reason": trial.label_reason or "",
        "log_tail": trial.log_tail if trial.label not in (None, Label.OK) else "",
    }


def record_proposal(session: Session, trial_id: int, outcome: Proposal | ProposalFailed) -> None:
    trial = session.get(Trial, trial_id)
    assert trial is not None
    trial.transcript = outcome.transcript
    trial.tokens_in += outcome.usage.tokens_in
    trial.tokens_out += outcome.usage.tokens_out
    trial.cost_usd += outcome.usage.cost_usd
    if trial.status != TrialStatus.PROPOSED:
        session.flush()  # cancelled meanwhile: keep the cost, drop the edit
        return
    search = session.get(Search, trial.search_id)
    parent = session.get(Trial, trial.parent_id) if trial.parent_id else None
    assert search is not None and parent is not None and parent.commit_sha is not None
    actor = trial.agent.name if trial.agent else "agent"
    if isinstance(outcome, ProposalFailed):
        trial.hypothesis = trial.hypothesis or "(no usable proposal)"
        _reject(session, trial, outcome.label, outcome.reason, actor)
        return
    trial.hypothesis = outcome.hypothesis
    if outcome.parent_number is not None and outcome.parent_number != parent.number:
        rebased = session.scalar(
            select(Trial).where(
                Trial.search_id == trial.search_id,
                Trial.number == outcome.parent_number,
                Trial.label == Label.OK,
            )
        )
        if rebased is None or rebased.commit_sha is None:
            reason = f"rebased onto trial {outcome.parent_number}, which is not kept"
            _reject(session, trial, Label.PATCH_REJECTED, reason, actor)
            return
        parent, trial.parent_id = rebased, rebased.id
    base_commit = parent.commit_sha
    assert base_commit is not None
    spec = SearchSpec.model_validate(search.spec)
    agent = next(a for a in spec.agents if trial.agent and a.name == trial.agent.name)
    store = GitStore(Path(search.repo_path))
    try:
        commit = store.apply_diff(
            base_commit,
            outcome.diff,
            message=f"trial {trial.number}: {outcome.hypothesis}"[:2000],
            ref=f"refs/trials/{trial.id}",
            protected=spec.evaluator.protected,
            surface=agent.surface.paths,
        )
    except EditRejected as rejection:
        trial.diff = outcome.diff
        _reject(session, trial, Label(rejection.label), rejection.reason, actor)
        return
    trial.commit_sha, trial.edit_hash = commit, store.tree_of(commit)
    trial.diff = store.diff(base_commit, commit)
    twin = session.scalar(
        select(func.min(Trial.number)).where(
            Trial.search_id == trial.search_id,
            Trial.edit_hash == trial.edit_hash,
            Trial.id != trial.id,
            Trial.status != TrialStatus.CANCELLED,
        )
    )
    if twin is not None:
        reason = f"this exact recipe was already tried as trial {twin}"
        _reject(session, trial, Label.DUPLICATE, reason, actor)
        return
    trial.status = TrialStatus.READY
    events.record(
        session,
        search_id=trial.search_id,
        trial_id=trial.id,
        kind="trial.proposed",
        actor=actor,
        data={"commit": commit},
    )
    session.flush()


def _reject(session: Session, trial: Trial, label: Label, reason: str, actor: str) -> None:
    trial.status, trial.label, trial.label_reason = TrialStatus.FINISHED, label, reason
    trial.finished_at = db_now(session)
    events.record(
        session,
        search_id=trial.search_id,
        trial_id=trial.id,
        kind="trial.rejected",
        actor=actor,
        data={"label": label, "reason": reason[:500]},
    )
    logger.info("trial.rejected trial_id=%s label=%s", trial.id, label)
    session.flush()


def _surface_files(store: GitStore, commit: str, surface: list[str]) -> dict[str, str]:
    files = {}
    for path in store.list_files(commit):
        if any(glob_match(pattern, path) for pattern in surface):
            content = store.show_file(commit, path)
            if len(content.encode()) > SURFACE_FILE_MAX_BYTES:
                content = f"({len(content)} characters; too large to show)"
            files[path] = content
    return files


class _Notes:
    """Trials of one search rendered as digest notes.

    Infra errors are left out everywhere: they were our failures, not the
    ideas', and an agent must not learn to avoid a good idea because of them.
    """

    def __init__(self, session: Session, search_id: int) -> None:
        self.session, self.search_id = session, search_id
        self.parent = aliased(Trial)

    def _select(self) -> Select[Trial, str]:
        return (
            select(Trial, Agent.name)
            .outerjoin(Agent, Trial.agent_id == Agent.id)
            .where(
                Trial.search_id == self.search_id,
                or_(Trial.label.is_(None), Trial.label != Label.INFRA_ERROR),
            )
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

    def wins(self, *, exclude_agent: int | None) -> list[TrialNote]:
        """Kept trials that improved on their parent."""
        return self.query(Trial.label == Label.OK, Trial.agent_id != exclude_agent, Trial.delta > 0)

    def unmerged_wins(self, parent: Trial) -> tuple[tuple[str, str, str], ...]:
        """(agent, parent commit, commit) of recent specialist wins outside `parent`'s line."""
        line = set(ancestry(self.session, parent.id))
        wins = self.wins(exclude_agent=None)
        rows = self.session.execute(
            select(Trial.id, Agent.name, self.parent.commit_sha, Trial.commit_sha)
            .join(Agent, Trial.agent_id == Agent.id)
            .join(self.parent, Trial.parent_id == self.parent.id)
            .where(
                Trial.search_id == self.search_id,
                Trial.number.in_([note.number for note in wins]),
                Agent.kind != AgentKind.COMBINER,
            )
            .order_by(Trial.number.desc())
        )
        return tuple(
            (name, str(parent_commit), str(commit))
            for trial_id, name, parent_commit, commit in rows
            if trial_id not in line
        )

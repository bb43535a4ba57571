"""Proposals: what an agent is given, and what becomes of its edit.

`propose` is what the proposal task calls. `load_job` snapshots everything
an agent needs (`app.domain.proposals.ProposalJob`) so the agent runs with
no database session open, however long the model takes. `record_proposal`
turns the agent's diff into a trial commit (legality enforced by the git
store), refuses as `duplicate` an edit whose recipe (its git tree) or whose
idea (its changed lines, `app.domain.ideas`) was already tried in the
search, and labels a rejected edit so the next proposals learn from it.
Tokens and cost are stored whatever happened.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.agents import AGENTS
from app.config import Settings
from app.db import session_scope
from app.domain.digest import DEFAULT_PREAMBLE, Digest, best_only, search_rules
from app.domain.ideas import (
    IdeaLookup,
    TriedIdea,
    idea_fingerprint,
    nothing_tried,
    repeat_refusal,
)
from app.domain.knobs import declared, knob_values
from app.domain.leaderboard import standings, visible_to_agents
from app.domain.legality import glob_match
from app.domain.proposals import Proposal, ProposalFailed, ProposalJob
from app.domain.roster import AgentKind, LLMMode
from app.domain.spec import Feedback
from app.domain.states import KEPT, Label, TrialStatus
from app.errors import EditRejected
from app.gitstore import GitStore
from app.services.hosts import leased, worker_name
from app.store import events
from app.store.clock import db_now
from app.store.lineage import Notes, noise_floor, tried_idea, workbench_view
from app.store.models import Search, Trial
from app.store.rollup import tallies
from app.store.transitions import claim_proposal
from app.store.trials import ancestry

logger = logging.getLogger(__name__)

REASON_CHARS = 2000  # of an unexpected failure's message kept as the trial's reason

SURFACE_FILE_MAX_BYTES = 200_000  # larger surface files are listed, not shown


def propose(settings: Settings, trial_id: int) -> int | None:
    """Have the trial's agent propose and record the outcome; the search to tick, or None.

    The proposal is claimed and leased like a run, so a second delivery does
    nothing and a worker that dies mid-session is noticed (the reaper labels
    the trial). Whatever goes wrong on our side (a bug, a git error) ends as
    the trial's `infra_error` with the reason, never as a silently acked message.
    """
    url, worker = settings.resolved_database_url, worker_name()
    with session_scope(url) as session:
        claimed = claim_proposal(session, trial_id, worker)
        job = load_job(session, trial_id, database_url=url) if claimed else None
    if job is None:
        logger.info("proposal.skipped trial_id=%s (no longer awaiting a proposal)", trial_id)
        return None
    outcome: Proposal | ProposalFailed
    with leased(settings, trial_id, worker, on_lost=lambda: None):
        try:
            outcome = AGENTS[job.agent.kind](settings).propose(job, GitStore(job.repo_path))
        except ProposalFailed as failed:
            outcome = failed
        except Exception as error:  # any failure of ours ends as the trial's infra_error
            logger.exception("proposal.agent_failed trial_id=%s", trial_id)
            reason = f"the {job.agent.kind} agent failed: {type(error).__name__}: {error}"
            outcome = ProposalFailed(Label.INFRA_ERROR, reason[:REASON_CHARS])
    with session_scope(url) as session:
        record_proposal(session, trial_id, outcome, worker=worker)
    return job.search_id


def _idea_lookup(url: str, search_id: int, trial_id: int) -> IdeaLookup:
    def tried(fingerprint: str) -> TriedIdea | None:
        with session_scope(url) as session:
            return tried_idea(session, search_id, fingerprint, exclude_id=trial_id)

    return tried


def load_job(
    session: Session, trial_id: int, *, database_url: str | None = None
) -> ProposalJob | None:
    """The job for a trial awaiting its proposal; None if it no longer awaits one.

    With `database_url`, the job can ask the store whether an idea was tried
    (`ProposalJob.tried`, a short session of its own); without, it knows none.
    """
    trial = session.get(Trial, trial_id)
    if trial is None or trial.status != TrialStatus.PROPOSED or trial.parent_id is None:
        return None
    search = session.get(Search, trial.search_id)
    parent = session.get(Trial, trial.parent_id)
    assert search is not None and parent is not None and trial.agent is not None
    assert parent.commit_sha is not None  # only committed trials become parents
    spec = search.search_spec
    agent = next(a for a in spec.agents if a.name == trial.agent.name)
    store = GitStore(Path(search.repo_path))
    notes = Notes(session, search.id)
    best = session.get(Trial, search.best_trial_id) if search.best_trial_id else None
    best_line = ancestry(session, best.id) if best is not None else []
    baseline_score = session.scalar(
        select(Trial.score).where(Trial.search_id == search.id, Trial.number == 0)
    )
    board = tuple(
        standings(
            visible_to_agents(tallies(session, search)), [(a.name, a.kind) for a in spec.agents]
        )
    )
    digest = Digest(
        task=spec.description or spec.name,
        metric=spec.evaluator.metric,
        direction=spec.evaluator.direction,
        gates=[str(gate) for gate in spec.evaluator.gates],
        agent=agent.name,
        brief=agent.surface.brief,
        surface=agent.surface.editable,
        protected=spec.evaluator.protected,
        parent=notes.one(parent),
        files=_surface_files(store, parent.commit_sha, agent.surface.editable),
        best=notes.one(best) if best is not None else None,
        best_ancestry=notes.many(best_line[1:]),
        own_recent=notes.query(
            Trial.agent_id == trial.agent_id, Trial.status == TrialStatus.FINISHED
        ),
        others_keeps=notes.keeps(exclude_agent=trial.agent_id),
        recent_failures=notes.query(
            Trial.label.not_in([Label.OK, Label.INFRA_ERROR]), Trial.label.is_not(None)
        ),
        # In-flight trials have no outcome yet: only what was tried and measured is shown.
        tried_from_parent=notes.query(
            Trial.parent_id == parent.id, Trial.id != trial.id, Trial.label.is_not(None)
        ),
        best_children=notes.query(Trial.parent_id == best.id, Trial.label.is_not(None))
        if best is not None and best.id != parent.id
        else (),
        leaderboard=board,
        kept=notes.kept(spec.evaluator.direction, baseline_score),
        recent=notes.query(Trial.status == TrialStatus.FINISHED),
        rules=search_rules(spec, search.noise_sd),
        preamble=agent.surface.preamble or DEFAULT_PREAMBLE,
        noise_floor=noise_floor(session, search),
    )
    limited = spec.feedback == Feedback.BEST_ONLY
    session_mode = agent.mode == LLMMode.SESSION
    refs = workbench_view(session, search, best_line, limited) if session_mode else ()
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
        keeps=notes.unmerged_keeps(parent) if agent.kind == AgentKind.COMBINER else (),
        trials=refs,
        tried=nothing_tried
        if database_url is None
        else _idea_lookup(database_url, search.id, trial.id),
    )


def record_proposal(
    session: Session,
    trial_id: int,
    outcome: Proposal | ProposalFailed,
    *,
    worker: str | None = None,
) -> None:
    """Store what became of a proposal; `worker`: the lease holder, when it was claimed."""
    trial = session.get(Trial, trial_id)
    assert trial is not None
    trial.transcript = outcome.transcript
    trial.tokens_in += outcome.usage.tokens_in
    trial.tokens_out += outcome.usage.tokens_out
    trial.tokens_cached += outcome.usage.tokens_cached
    trial.cost_usd += outcome.usage.cost_usd
    if trial.status != TrialStatus.PROPOSED or (worker is not None and trial.worker != worker):
        session.flush()  # cancelled or reaped meanwhile: keep the cost, drop the edit
        return
    search = session.get(Search, trial.search_id)
    parent = session.get(Trial, trial.parent_id) if trial.parent_id else None
    assert search is not None and parent is not None and parent.commit_sha is not None
    actor = trial.agent.name if trial.agent else "agent"
    if isinstance(outcome, ProposalFailed):
        trial.hypothesis = trial.hypothesis or "(no usable proposal)"
        _reject(session, trial, outcome.label, outcome.reason, actor)
        return
    trial.hypothesis, trial.expected_delta = outcome.hypothesis, outcome.expected_delta
    trial.notes = outcome.notes
    if outcome.parent_number is not None and outcome.parent_number != parent.number:
        rebased = session.scalar(
            select(Trial).where(
                Trial.search_id == trial.search_id,
                Trial.number == outcome.parent_number,
                Trial.decision.in_(KEPT),
            )
        )
        if rebased is None or rebased.commit_sha is None:
            reason = f"rebased onto trial {outcome.parent_number}, which is not kept"
            _reject(session, trial, Label.PATCH_REJECTED, reason, actor)
            return
        parent, trial.parent_id = rebased, rebased.id
    base_commit = parent.commit_sha
    assert base_commit is not None
    spec = search.search_spec
    agent = next(a for a in spec.agents if trial.agent and a.name == trial.agent.name)
    store = GitStore(Path(search.repo_path))
    try:
        commit = store.apply_diff(
            base_commit,
            outcome.diff,
            message=f"trial {trial.number}: {outcome.hypothesis}"[:2000],
            ref=f"refs/trials/{trial.id}",
            protected=spec.evaluator.protected,
            surface=agent.surface.editable,
        )
    except EditRejected as rejection:
        trial.diff = outcome.diff
        _reject(session, trial, Label(rejection.label), rejection.reason, actor)
        return
    trial.commit_sha, trial.edit_hash = commit, store.tree_of(commit)
    trial.diff = store.diff(base_commit, commit)
    trial.params = knob_values(declared(spec.agents), store.reader(commit)) or None
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
    trial.idea_hash = idea_fingerprint(trial.diff)
    if trial.idea_hash is not None:
        earlier = tried_idea(session, trial.search_id, trial.idea_hash, exclude_id=trial.id)
        refusal = repeat_refusal(earlier, parent.number, spec.repeat_ideas)
        if refusal is not None:
            _reject(session, trial, Label.DUPLICATE, refusal, actor)
            return
    trial.status, trial.worker = TrialStatus.READY, None  # the proposal's lease ends here
    events.record(
        session,
        search_id=trial.search_id,
        trial_id=trial.id,
        kind=events.PROPOSED,
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

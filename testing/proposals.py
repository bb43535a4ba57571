"""One proposal through a real agent, recorded as the proposal task records it.

Tests of what agents are told and what becomes of their replies share it:
the job is loaded from the store, the agent talks to its endpoint (the test
model server) through the real `openai` client, and the outcome is stored.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.agents.llm import LLMAgent
from app.config import Settings
from app.domain.proposals import Proposal, ProposalFailed
from app.domain.states import TrialStatus
from app.gitstore import GitStore
from app.services.propose import load_job, record_proposal
from app.store.models import Search, Trial
from testing.factories import add_trial


def propose_through(session: Session, settings: Settings, trial: Trial) -> Trial:
    """Have the LLM agent propose `trial` (awaiting its proposal) and record the outcome."""
    session.commit()
    job = load_job(session, trial.id, database_url=settings.resolved_database_url)
    assert job is not None, f"trial {trial.id} awaits no proposal"
    outcome: Proposal | ProposalFailed
    try:
        outcome = LLMAgent(settings).propose(job, GitStore(job.repo_path))
    except ProposalFailed as failed:
        outcome = failed
    record_proposal(session, trial.id, outcome)
    session.commit()
    session.refresh(trial)
    return trial


def propose_on_best(session: Session, settings: Settings, search: Search, agent: str) -> Trial:
    """A new proposal of `agent` on the search's best, through `propose_through`."""
    best = session.get(Trial, search.best_trial_id)
    trial = add_trial(session, search, agent=agent, parent=best, label=None,
                      status=TrialStatus.PROPOSED)  # fmt: skip
    return propose_through(session, settings, trial)


class Files:
    """A parent's files in memory, served as the git store serves them to the workbench."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files

    def show_file(self, sha: str, path: str) -> str:
        return self.files[path]

    def list_files(self, sha: str) -> list[str]:
        return sorted(self.files)

    def diff(self, a_sha: str, b_sha: str) -> str:
        return ""

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
from app.gitstore import GitStore
from app.services.propose import load_job, record_proposal
from app.store.models import Trial


def propose_through(session: Session, settings: Settings, trial: Trial) -> Trial:
    """Have the LLM agent propose `trial` (awaiting its proposal) and record the outcome."""
    session.commit()
    job = load_job(session, trial.id)
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

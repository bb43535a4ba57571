"""The control arm: declared knobs mutated at random, no model and no tokens."""

from __future__ import annotations

from random import Random

from app.config import Settings
from app.domain.edits import MalformedEdit, render_diff
from app.domain.knobs import mutate
from app.domain.proposals import Proposal, ProposalFailed, ProposalJob
from app.domain.states import Label
from app.gitstore import GitStore


class ControlAgent:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def propose(self, job: ProposalJob, store: GitStore) -> Proposal:
        read = store.reader(job.parent_commit)
        try:
            draft = mutate(job.agent.knobs, read, Random(job.seed))
            return Proposal(draft.hypothesis, render_diff(draft.edits, read))
        except MalformedEdit as error:
            raise ProposalFailed(Label.PATCH_REJECTED, str(error)) from error

"""The combiner: merges the wins of two different specialists onto the best trial.

Specialists work on separate surfaces, so their wins often compose; the
paper's best recipes were such combinations. The two wins are the most
recent ones, from different agents, not already in the parent's line; the
merge is git's three-way merge, and a conflict is the trial's
`patch_rejected`.
"""

from __future__ import annotations

from app.config import Settings
from app.domain.proposals import Proposal, ProposalFailed, ProposalJob
from app.domain.states import Label
from app.errors import EditRejected
from app.gitstore import GitStore


class CombinerAgent:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def propose(self, job: ProposalJob, store: GitStore) -> Proposal:
        picked: dict[str, tuple[str, str]] = {}
        for agent, parent, commit in job.keeps:
            picked.setdefault(agent, (parent, commit))
            if len(picked) == 2:
                break
        if len(picked) < 2:
            raise ProposalFailed(
                Label.PATCH_REJECTED, "fewer than two specialists have wins left to combine"
            )
        try:
            diff = store.combine(job.parent_commit, list(picked.values()))
        except EditRejected as rejection:
            raise ProposalFailed(Label(rejection.label), rejection.reason) from rejection
        names = " and ".join(picked)
        return Proposal(f"combine the latest wins of {names} onto the best", diff)

"""Agent kinds: each turns a proposal job into a hypothesis and a diff.

The plug point is `AGENTS`, a registry from the spec's `AgentKind` to an
implementation of `ProposingAgent`; built-ins register like extensions would.
An agent returns a `Proposal` or raises `ProposalFailed` with the label the
trial gets (never anything else for a failure of its own making).
"""

from __future__ import annotations

from typing import Protocol

from app.agents.combiner import CombinerAgent
from app.agents.control import ControlAgent
from app.agents.llm import LLMAgent
from app.config import Settings
from app.domain.proposals import Proposal, ProposalJob
from app.domain.roster import AgentKind
from app.gitstore import GitStore


class ProposingAgent(Protocol):
    def __init__(self, settings: Settings) -> None: ...

    def propose(self, job: ProposalJob, store: GitStore) -> Proposal: ...


AGENTS: dict[AgentKind, type[ProposingAgent]] = {
    AgentKind.LLM: LLMAgent,
    AgentKind.CONTROL: ControlAgent,
    AgentKind.COMBINER: CombinerAgent,
}

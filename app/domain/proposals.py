"""What an agent is given and what it hands back: plain frozen data, no session, no git.

`ProposalJob` is a snapshot of everything an agent needs (its spec, the
parent commit, the lineage digest, what its tools may show), taken so the
agent runs with no database session open however long the model takes; its
one port back to the store, `tried`, opens a short session of its own. An
agent returns a `Proposal` or raises `ProposalFailed` with the label the
trial gets; tokens and cost travel with both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.domain.digest import Digest
from app.domain.ideas import IdeaLookup, nothing_tried
from app.domain.roster import AgentSpec
from app.domain.spec import SearchSpec
from app.domain.states import Label
from app.domain.workbench import TrialRef

REASON_MAX_CHARS = 2_000  # of a failure's reason, which may quote what the model wrote


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
    # For a combiner: (agent, parent commit, commit) of recent keeps not in the parent's line.
    keeps: tuple[tuple[str, str, str], ...] = ()
    # For a tool-using session: the recorded trials its tools may show.
    trials: tuple[TrialRef, ...] = ()
    # The one question an agent may ask the store mid-proposal: was this idea tried?
    tried: IdeaLookup = nothing_tried


@dataclass(frozen=True)
class Usage:
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    tokens_cached: int = 0  # of tokens_in, served from the endpoint's prompt cache


Transcript = list[dict[str, Any]]


def transcript_entry(
    role: str,
    content: str,
    tool_calls: list[dict[str, str]] | None = None,
    name: str = "",
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One message of an agent's transcript, in full: an auditor reads what the model read."""
    entry: dict[str, Any] = {"role": role, "content": content}
    if tool_calls:
        entry["tool_calls"] = tool_calls
    if name:
        entry["name"] = name
    if usage is not None:
        entry["usage"] = usage
    return entry


@dataclass(frozen=True)
class Proposal:
    hypothesis: str
    diff: str
    usage: Usage = Usage()
    parent_number: int | None = None  # set when the session rebased onto another trial
    transcript: Transcript | None = None
    expected_delta: float | None = None  # the gain over the parent the agent expects
    notes: str | None = None  # what the agent adds beside its hypothesis


class ProposalFailed(Exception):
    """The agent produced no usable edit; `label` says which kind of failure.

    The reason is capped: it becomes the trial's label reason, shown on pages.
    """

    def __init__(
        self,
        label: Label,
        reason: str,
        usage: Usage = Usage(),
        transcript: Transcript | None = None,
    ) -> None:
        reason = reason[:REASON_MAX_CHARS]
        super().__init__(reason)
        self.label, self.reason, self.usage = label, reason, usage
        self.transcript = transcript

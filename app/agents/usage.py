"""Tokens and cost of model calls, added up per trial."""

from __future__ import annotations

from openai.types.completion_usage import CompletionUsage

from app.domain.proposals import Usage
from app.domain.spec import AgentSpec


def add_usage(usage: Usage, reported: CompletionUsage | None, agent: AgentSpec) -> Usage:
    """`usage` plus one call's reported tokens, priced by the agent's per-million rates."""
    if reported is None:
        return usage
    tokens_in, tokens_out = reported.prompt_tokens, reported.completion_tokens
    cost = (
        tokens_in * agent.price_in_usd_per_mtok + tokens_out * agent.price_out_usd_per_mtok
    ) / 1e6
    return Usage(usage.tokens_in + tokens_in, usage.tokens_out + tokens_out, usage.cost_usd + cost)

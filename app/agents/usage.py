"""Tokens and cost of model calls, added up per trial."""

from __future__ import annotations

from app.agents.chat import Reply
from app.domain.proposals import Usage
from app.domain.roster import AgentSpec


def add_usage(usage: Usage, reply: Reply, agent: AgentSpec) -> Usage:
    """`usage` plus one reply's reported tokens, priced by the agent's per-million rates."""
    tokens_in, tokens_out = reply.tokens_in, reply.tokens_out
    cost = (
        tokens_in * agent.price_in_usd_per_mtok + tokens_out * agent.price_out_usd_per_mtok
    ) / 1e6
    return Usage(usage.tokens_in + tokens_in, usage.tokens_out + tokens_out, usage.cost_usd + cost)

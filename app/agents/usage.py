"""Tokens and cost of model calls, added up per trial."""

from __future__ import annotations

from typing import Any

from app.agents.chat import Reply
from app.domain.proposals import Usage
from app.domain.roster import AgentSpec


def add_usage(usage: Usage, reply: Reply, agent: AgentSpec) -> Usage:
    """`usage` plus one reply's reported tokens, priced by the agent's per-million rates
    (cached input at its own rate when the spec sets one)."""
    return Usage(
        usage.tokens_in + reply.tokens_in,
        usage.tokens_out + reply.tokens_out,
        usage.cost_usd + call_cost(reply, agent),
        usage.tokens_cached + reply.tokens_cached,
    )


def call_cost(reply: Reply, agent: AgentSpec) -> float:
    cached_price = agent.price_cached_in_usd_per_mtok
    if cached_price is None:
        cached_price = agent.price_in_usd_per_mtok
    fresh = reply.tokens_in - reply.tokens_cached
    return (
        fresh * agent.price_in_usd_per_mtok
        + reply.tokens_cached * cached_price
        + reply.tokens_out * agent.price_out_usd_per_mtok
    ) / 1e6


def call_usage(reply: Reply, agent: AgentSpec) -> dict[str, Any]:
    """One model call's usage as the transcript records it."""
    return {
        "tokens_in": reply.tokens_in,
        "tokens_out": reply.tokens_out,
        "tokens_cached": reply.tokens_cached,
        "cost_usd": call_cost(reply, agent),
    }

"""Which model endpoint an agent may call, and which key goes with it.

Whoever may submit a search writes its spec, so a spec must not be able to
send the operator's key to a host of its choosing, nor make the service call
a host nobody configured. The rules, decided here once for the submit check
and for every model call:

- An agent with no `base_url` uses the operator's endpoint
  (TRIALFORGE_LLM_BASE_URL); with none configured it has no endpoint, and
  nothing falls back to a client library's default public host.
- An agent's `base_url` must be the operator's endpoint or on the operator's
  allowlist (TRIALFORGE_LLM_ALLOWED_BASE_URLS).
- The operator's key goes only to the operator's endpoint. A key for another
  endpoint is named by reference (`api_key_env`), and only a name the operator
  lends (TRIALFORGE_LLM_KEY_ENVS); without one the agent sends no key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from app.domain.roster import AgentSpec


@dataclass(frozen=True)
class EndpointPolicy:
    """The operator's settings, as the rules need them (no secret in here)."""

    operator_url: str | None
    allowed_urls: tuple[str, ...] = ()
    lent_key_envs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    operator: bool  # the operator's own endpoint: the operator's key may go there
    key_env: str | None = None  # the environment variable whose key goes there instead


class NoEndpoint(ValueError):
    """The agent may call no endpoint; `field` is the spec field to blame (under the agent)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


def normalize_url(url: str) -> str:
    """One spelling per endpoint: scheme and host lower-cased, no trailing slash."""
    parts = urlsplit(url.strip())
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, "", ""))


def endpoint_for(agent: AgentSpec, policy: EndpointPolicy) -> Endpoint:
    """The endpoint `agent` calls and whose key it sends; raises `NoEndpoint` saying why not."""
    operator = normalize_url(policy.operator_url) if policy.operator_url else None
    if agent.api_key_env is not None and agent.api_key_env not in policy.lent_key_envs:
        raise NoEndpoint(
            "api_key_env",
            f"{agent.api_key_env} is not a key this server lends to specs "
            f"(TRIALFORGE_LLM_KEY_ENVS: {_listed(policy.lent_key_envs)})",
        )
    if agent.base_url is None:
        if operator is None:
            raise NoEndpoint(
                "base_url",
                f"agent {agent.name!r} has no model endpoint: set its base_url or the "
                "server's TRIALFORGE_LLM_BASE_URL",
            )
        return Endpoint(operator, operator=True, key_env=agent.api_key_env)
    wanted = normalize_url(agent.base_url)
    if wanted == operator:
        return Endpoint(operator, operator=True, key_env=agent.api_key_env)
    allowed = {normalize_url(url) for url in policy.allowed_urls}
    if wanted not in allowed:
        raise NoEndpoint(
            "base_url",
            f"{wanted} is not an endpoint this server allows (TRIALFORGE_LLM_BASE_URL or "
            f"TRIALFORGE_LLM_ALLOWED_BASE_URLS: {_listed([*allowed, operator])})",
        )
    return Endpoint(wanted, operator=False, key_env=agent.api_key_env)


def _listed(items: Sequence[str | None]) -> str:
    named = sorted({item for item in items if item})
    return ", ".join(named) or "none"

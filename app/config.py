"""Every setting Trialforge reads, in one place (env prefix `TRIALFORGE_`).

The defaults are the embedded mode: a SQLite file and a SQLite-backed broker
under the data dir, so a newcomer runs the whole loop with no service to
install. Production points `database_url` at Postgres and `broker_url` at Redis.
"""

from __future__ import annotations

import hashlib
import os
from functools import cached_property
from pathlib import Path
from typing import Self

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.domain.endpoints import Endpoint, EndpointPolicy
from app.domain.spec import TRIALS_QUEUE
from sandbox.contract import Backend


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TRIALFORGE_", env_file=".env", extra="ignore", populate_by_name=True
    )

    data_dir: Path = Field(
        default=Path("data"),
        description="Where the embedded database, broker, git repos and trial outputs live.",
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: a SQLite file in data_dir."
    )
    broker_url: str | None = Field(
        default=None, description="Celery broker URL; default: a SQLite-backed embedded broker."
    )
    sandbox_backend: Backend = Field(
        default=Backend.AUTO,
        description="docker, local (NOT isolated) or auto (Docker when it answers).",
    )
    docker_runtime: str | None = Field(
        default=None,
        pattern=r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,63})?$",  # empty (as compose passes it): unset
        description="The OCI runtime of trial and evaluator containers, e.g. runsc (gVisor: "
        "a kernel of its own between the trial and the host's); default: the daemon's.",
    )
    api_token: SecretStr | None = Field(
        default=None, description="When set, every write to the API needs `Bearer <token>`."
    )
    private: bool = Field(
        default=False,
        description="Reads need the token too: API requests its bearer header, dashboard "
        "pages a sign-in at /login. Needs api_token.",
    )
    llm_base_url: str | None = Field(
        default=None,
        description="OpenAI-compatible endpoint (OpenAI, vLLM, Ollama) of agents that name "
        "none; unset, such agents are refused (nothing falls back to a public host).",
    )
    llm_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("TRIALFORGE_LLM_API_KEY", "OPENAI_API_KEY"),
        description="Key for llm_base_url, sent to no other endpoint; OPENAI_API_KEY is read too.",
    )
    llm_allowed_base_urls: str = Field(
        default="",
        description="Comma-separated endpoints a spec's agent may name in `base_url` besides "
        "llm_base_url (empty: only llm_base_url). They never get llm_api_key.",
    )
    llm_key_envs: str = Field(
        default="",
        description="Comma-separated names of environment variables holding keys that a "
        "spec's agent may name in `api_key_env` (empty: none).",
    )
    git_fetch_timeout_s: float = Field(
        default=300.0, gt=0, description="A recipe fetch slower than this is refused."
    )
    heartbeat_s: float = Field(
        default=10.0, gt=0, description="A running trial's lease is renewed this often."
    )
    max_attempts: int = Field(
        default=3, ge=1, description="Runs of one trial before an infra error is final."
    )
    trial_queue: str = Field(
        default=TRIALS_QUEUE,
        description="Queue this host's trial workers consume (`worker --queues trials`); a "
        "search whose `budgets.trial.queue` names it runs its trials here.",
    )
    gpu_ids: str = Field(
        default="",
        description="GPUs this trial worker hands out, e.g. '0,1' (NVIDIA runtime ids).",
    )
    import_roots: str = Field(
        default="",
        description="Comma-separated directories that a search's local repo, evaluator and "
        "data must lie under (empty: anywhere); set it when others can reach the API.",
    )
    visibility_timeout_s: int = Field(
        default=24 * 3600,
        description="Redis redelivers an unacknowledged task after this; above any trial budget.",
    )

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return normalize_database_url(self.database_url)
        return f"sqlite:///{(self.data_dir / 'trialforge.db').resolve()}"

    @cached_property
    def resolved_broker_url(self) -> str:
        if self.broker_url:
            return self.broker_url
        return f"sqla+sqlite:///{(self.data_dir / 'broker.db').resolve()}"

    @model_validator(mode="after")
    def _private_needs_a_token(self) -> Self:
        if self.private and self.api_token is None:
            raise ValueError("TRIALFORGE_PRIVATE needs TRIALFORGE_API_TOKEN: the token to sign in")
        return self

    @property
    def namespace(self) -> str:
        """Names this installation's sandboxes, so installations sharing a host never
        sweep each other's: a digest of the database they record to."""
        return hashlib.sha256(self.resolved_database_url.encode()).hexdigest()[:12]

    @property
    def gpus(self) -> tuple[str, ...]:
        return _listed(self.gpu_ids)

    @property
    def endpoint_policy(self) -> EndpointPolicy:
        return EndpointPolicy(
            operator_url=self.llm_base_url or None,
            allowed_urls=_listed(self.llm_allowed_base_urls),
            lent_key_envs=_listed(self.llm_key_envs),
        )

    def llm_key(self, endpoint: Endpoint) -> SecretStr | None:
        """The key that may go to `endpoint`: its lent variable's, else the operator's own
        for the operator's endpoint only, else none (`app.domain.endpoints`)."""
        if endpoint.key_env is not None:
            return self.llm_key_from(endpoint.key_env)
        return self.llm_api_key if endpoint.operator else None

    def llm_key_from(self, name: str) -> SecretStr | None:
        """The key in the environment variable `name`, if it is lent (llm_key_envs) and set."""
        value = os.environ.get(name) if name in self.endpoint_policy.lent_key_envs else None
        return SecretStr(value) if value else None

    @property
    def import_root_paths(self) -> tuple[Path, ...]:
        return tuple(Path(root) for root in _listed(self.import_roots))

    @property
    def repos_dir(self) -> Path:
        return self.data_dir / "repos"


def _listed(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def normalize_database_url(url: str) -> str:
    """Route plain `postgresql://` URLs to psycopg 3, the driver we ship."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


settings = Settings()

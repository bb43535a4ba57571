"""The roster of a search: its agents, the surfaces they own, the knobs of the control arm.

Checked once at the door like the rest of the spec (`app.domain.spec`): a
knob's pattern captures one group and runs in linear time, an agent's
endpoint is a plain http(s) URL with no credentials in it, and its key is
named by reference, never inlined.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from app.domain.fields import (
    ENV_NAME_PATTERN,
    MAX_USD_PER_MTOK,
    NAME_PATTERN,
    Duration,
    RepoGlob,
    StrictModel,
)
from app.domain.regex import compile_linear


class AgentKind(StrEnum):
    LLM = "llm"
    CONTROL = "control"
    COMBINER = "combiner"


class LLMMode(StrEnum):
    SESSION = "session"
    SINGLE = "single"


class KnobKind(StrEnum):
    FLOAT = "float"
    INT = "int"
    CHOICE = "choice"


class Knob(StrictModel):
    """A value the control arm may mutate: the one regex group `pattern` captures in `file`."""

    name: str = Field(pattern=NAME_PATTERN)
    file: RepoGlob
    pattern: str
    kind: KnobKind
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[str] = Field(default_factory=list)

    @field_validator("pattern")
    @classmethod
    def _one_group(cls, pattern: str) -> str:
        try:
            compiled = compile_linear(pattern, multiline=True)
        except ValueError as exc:
            raise ValueError(f"not a regular expression RE2 accepts: {exc}") from exc
        if compiled.groups != 1:
            raise ValueError("must capture exactly one group: the knob's value")
        return pattern

    @model_validator(mode="after")
    def _range_or_choices(self) -> Self:
        if self.kind is KnobKind.CHOICE:
            if len(self.choices) < 2:
                raise ValueError("a choice knob needs at least two choices")
        elif self.low is None or self.high is None or self.low >= self.high:
            raise ValueError("a numeric knob needs low < high")
        elif self.log and self.low <= 0:
            raise ValueError("a log-scaled knob needs low > 0")
        return self


class Surface(StrictModel):
    """The part of the recipe an agent owns, and the brief that says what it is for.

    Each glob of `paths` must match a file of the recipe when the search is
    created (a typo there would make every trial an `illegal_edit`); files the
    agent is meant to create go under `new_files`, which may match nothing yet.
    """

    paths: list[RepoGlob] = Field(min_length=1, description="Globs of recipe files it edits.")
    new_files: list[RepoGlob] = Field(
        default_factory=list, description="Globs of files it may create; may match nothing yet."
    )
    brief: str = ""
    preamble: str = Field(
        default="",
        description="The role's standing instructions (scope, what is off limits, edit radius); "
        "default: structural, mechanism-level edits rather than one-number tweaks.",
    )

    @property
    def editable(self) -> list[str]:
        """Every glob the agent may write to: its files and the new files it may create."""
        return [*self.paths, *self.new_files]


def _endpoint_url(url: str | None) -> str | None:
    """An http(s) URL with a host and no secret in it: keys are named by `api_key_env`."""
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (parsing the port is the check)
    except ValueError as exc:
        raise ValueError(f"not a URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL with a host, e.g. http://host:8000/v1")
    if "@" in parts.netloc or parts.query or parts.fragment:
        raise ValueError(
            "must hold no credentials, query or fragment: name the key's variable in api_key_env"
        )
    return url


class AgentSpec(StrictModel):
    name: str = Field(pattern=NAME_PATTERN)
    kind: AgentKind
    surface: Surface
    model: str | None = Field(default=None, validate_default=True)
    base_url: Annotated[str | None, AfterValidator(_endpoint_url)] = Field(
        default=None,
        description="OpenAI-compatible endpoint; default: TRIALFORGE_LLM_BASE_URL. Another "
        "must be on the server's TRIALFORGE_LLM_ALLOWED_BASE_URLS.",
    )
    api_key_env: str | None = Field(
        default=None,
        pattern=ENV_NAME_PATTERN,
        description="The server's environment variable holding this agent's key (one of "
        "TRIALFORGE_LLM_KEY_ENVS); a key itself never goes in a spec.",
    )
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_output_tokens: int = Field(default=4096, ge=64, le=1_000_000, description="Per call.")
    price_in_usd_per_mtok: float = Field(
        default=0.0, ge=0, le=MAX_USD_PER_MTOK, description="For the cost budget."
    )
    price_out_usd_per_mtok: float = Field(default=0.0, ge=0, le=MAX_USD_PER_MTOK)
    price_cached_in_usd_per_mtok: float | None = Field(
        default=None,
        ge=0,
        le=MAX_USD_PER_MTOK,
        description="For input tokens the endpoint reports as served from its prompt cache; "
        "default: the input price.",
    )
    mode: LLMMode = Field(
        default=LLMMode.SESSION,
        description="session: a tool-using session per proposal; single: one prompt, one reply "
        "(for models without tool calling).",
    )
    max_turns: int = Field(default=30, ge=1, le=1000, description="Model calls per session.")
    max_session_tokens: int = Field(
        default=400_000, ge=1000, le=1_000_000_000, description="Per session, in+out."
    )
    session_wallclock_s: Duration = Field(default=900.0, description="Per session.")
    weight: float = Field(default=1.0, gt=0, le=1000)
    knobs: list[Knob] = Field(default_factory=list, validate_default=True)

    @field_validator("model")
    @classmethod
    def _llm_needs_a_model(cls, model: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("kind") is AgentKind.LLM and not model:
            raise ValueError("an llm agent needs a model")
        return model

    @field_validator("knobs")
    @classmethod
    def _knobs_only_for_control(cls, knobs: list[Knob], info: ValidationInfo) -> list[Knob]:
        control = info.data.get("kind") is AgentKind.CONTROL
        if control and not knobs:
            raise ValueError("a control agent needs knobs to mutate")
        if knobs and not control:
            raise ValueError("only a control agent takes knobs")
        return knobs

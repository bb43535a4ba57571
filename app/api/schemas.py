"""What the API returns. The same models serialise the JSONL export, so export round-trips."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from app.domain.states import Decision, Label, SearchStatus, TrialStatus
from app.store.models import Search, Trial
from app.store.searches import SearchStats

T = TypeVar("T")


class PageOut(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None
    total: int
    prev_cursor: str | None = None  # listings that page backwards (trials) say where


class StatsOut(BaseModel):
    trials_total: int
    trials_finished: int
    trials_ok: int
    cost_usd: float
    wallclock_s: float = Field(description="Sandbox seconds of every training run.")
    eval_s: float = Field(description="Sandbox seconds of every evaluation.")
    baseline_score: float | None
    best_score: float | None


class AgentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    kind: str
    spec: dict[str, Any]


class SearchOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    status: SearchStatus
    spec: dict[str, Any]
    base_commit: str
    best_trial_id: int | None
    halt_reason: str | None
    noise_sd: float | None = Field(
        default=None, description="The baseline's spread over seeds, when the spec sets noise."
    )
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    agents: list[AgentOut]
    stats: StatsOut
    warnings: list[str] = Field(
        default_factory=list,
        description="What keeps the search from progressing, and what to do (one search "
        "only; lists leave it empty): an agent failing every proposal, work no worker takes.",
    )

    @classmethod
    def build(cls, search: Search, stats: SearchStats, warnings: list[str] | None = None) -> Self:
        names = [name for name in cls.model_fields if name not in ("stats", "warnings")]
        fields = {name: getattr(search, name) for name in names}
        return cls.model_validate({**fields, "stats": vars(stats), "warnings": warnings or []})


class CheckOut(BaseModel):
    field: str = Field(description="The spec field checked, dotted (`agents.0.surface.paths.0`).")
    message: str


class SearchCreatedOut(SearchOut):
    """A new search, with every check its spec passed against the recipe and the server."""

    checks: list[CheckOut]


class TrialSummaryOut(BaseModel):
    """A row of the trials table: everything but the bulky diff and log."""

    id: int
    search_id: int
    number: int
    parent_id: int | None
    agent: str | None
    hypothesis: str
    commit_sha: str | None
    status: TrialStatus
    label: Label | None
    label_reason: str | None
    decision: Decision | None = Field(
        default=None, description="baseline, keep (the new best), discard, pending_confirmation."
    )
    score: float | None
    delta: float | None = Field(
        default=None, description="Improvement over the parent's score (positive is better)."
    )
    expected_delta: float | None = Field(
        default=None, description="The improvement the proposing agent expected, for calibration."
    )
    metrics: dict[str, Any]
    params: dict[str, float | str] | None = Field(
        default=None,
        description="The declared knobs' values in its recipe (whoever edited it), by name.",
    )
    wallclock_s: float | None = Field(
        default=None, description="Sandbox seconds of its training runs (every seed, preflight)."
    )
    eval_s: float | None = Field(default=None, description="Sandbox seconds of its evaluations.")
    cpu_s: float | None = Field(
        default=None,
        description="CPU seconds of its training runs' processes (kernel-counted; None where "
        "the trial host cannot count them).",
    )
    artifact_bytes: int | None
    image: str | None
    image_digest: str | None
    isolated: bool | None
    tokens_in: int
    tokens_out: int
    tokens_cached: int = Field(
        description="Of tokens_in, those the endpoint served from its prompt cache."
    )
    cost_usd: float
    attempts: int
    worker: str | None
    created_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def build(cls, trial: Trial) -> Self:
        fields = {name: getattr(trial, name) for name in cls.model_fields if name != "agent"}
        return cls.model_validate({**fields, "agent": trial.agent.name if trial.agent else None})


class TrialOut(TrialSummaryOut):
    """One trial, whole: what an auditor needs to judge it."""

    diff: str
    log_tail: str
    notes: str | None = Field(
        default=None, description="What the agent submitted beside its hypothesis."
    )
    transcript: list[dict[str, Any]] | None = Field(
        default=None,
        description="The agent's messages in full, in order: role, content, tool calls, and "
        "for each model call its usage (tokens_in, tokens_out, tokens_cached).",
    )


class LineageNode(BaseModel):
    id: int
    number: int
    parent_id: int | None
    agent: str | None
    status: TrialStatus
    label: Label | None
    score: float | None
    hypothesis: str


class LineageEdge(BaseModel):
    parent: int
    child: int


class LineageOut(BaseModel):
    search_id: int
    best_trial_id: int | None
    best_path: list[int]
    nodes: list[LineageNode]
    edges: list[LineageEdge]
    next_cursor: str | None
    total: int


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    search_id: int
    trial_id: int | None
    kind: str
    actor: str
    data: dict[str, Any]
    created_at: datetime


class HealthOut(BaseModel):
    status: str
    database: str
    schema_revision: str | None


class ReportOut(BaseModel):
    """Why a search stopped (or where it stands), what it found, and at what cost."""

    search_id: int
    status: SearchStatus
    halt_reason: str | None
    trials: int
    baseline_score: float | None
    best_score: float | None
    best_trial_id: int | None
    improvement: float | None = Field(description="Best over baseline; positive is better.")
    keeps: int = Field(description="New bests kept after the baseline.")
    labels: dict[str, int]
    cost_usd: float
    cost_per_point: float | None = Field(description="Dollars per unit of improvement.")
    sandbox_seconds: float = Field(description="Every run: training and evaluation.")
    train_seconds: float
    eval_seconds: float
    sandbox_seconds_per_point: float | None
    confirm_seconds: float = Field(
        default=0.0,
        description="Of sandbox_seconds, those spent confirming nominees on fresh seeds.",
    )
    cpu_seconds: float | None = Field(
        default=None,
        description="CPU time of training (every process of every run), summed over the "
        "cpu_trials trials whose host could count it; null when none could.",
    )
    cpu_trials: int = Field(default=0, description="Trials whose CPU time was counted.")


class FieldProblem(BaseModel):
    field: str = Field(description="The dotted path of the bad field, e.g. budgets.trial.cpus.")
    message: str


class ErrorOut(BaseModel):
    """Every error the API returns: its kind and what a user can act on."""

    error: str = Field(
        description="Unauthorized, SignInRequired, NotFound, Conflict, InvalidSpec or "
        "InvalidRequest (422), SchemaOutdated."
    )
    detail: str | list[FieldProblem] | dict[str, Any] = Field(
        description="The reason; for a 422, every bad field with its message."
    )


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "A write without the bearer token (or a read, on "
          "a private server)."},
    404: {"model": ErrorOut, "description": "No such search or trial."},
    409: {"model": ErrorOut, "description": "Not in this state: e.g. resuming a running "
          "search, re-running a trial that never ran."},
    422: {"model": ErrorOut, "description": "Bad input: every bad field named by its path."},
}  # fmt: skip

"""The search spec: what a user submits, validated once at the door.

Everything the loop later relies on (a parseable gate, a knob regex with one
group, agent names that are unique, surfaces that cannot reach outside the
repo) is checked here or in the two modules it is built from: the bounded
field types and strict base model (`app.domain.fields`) and the roster of
agents, surfaces and knobs (`app.domain.roster`). A bad spec is a 422
naming its field rather than a trial failing hours later. What can only be
checked against the recipe or the server's settings is checked by the import
service (`app.domain.admission`).
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import (
    ByteSize,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from app.domain.fields import (
    MAX_COUNT,
    MAX_USD,
    SPEC_MAX_BYTES,
    Bytes,
    Duration,
    RepoGlob,
    SearchName,
    StrictModel,
    is_url,
)
from app.domain.noise import NoiseRule
from app.domain.roster import AgentSpec
from app.domain.selection import ParentSelection
from app.domain.states import Direction
from app.errors import InvalidSpec

DEFAULT_IMAGE = "trialforge/sandbox:latest"
TRIALS_QUEUE = "trials"  # the trial queue every trial host shares unless told otherwise
PROPOSE_QUEUE = "propose"  # the proposal workers' queue (and the scheduler's ticks)
_GATE_RE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|==|!=|>|<)\s*(\S+)\s*$")


class Gate(StrictModel):
    """A legality condition on one evaluator metric, written `"val_acc >= 0.94"`."""

    metric: str
    op: Literal[">=", "<=", "==", "!=", ">", "<"]
    value: float

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if isinstance(data, str):
            match = _GATE_RE.match(data)
            if not match:
                raise ValueError(f"not a gate: {data!r} (use e.g. 'val_acc >= 0.94')")
            metric, op, value = match.groups()
            return {"metric": metric, "op": op, "value": value}
        return data

    @model_serializer
    def _to_text(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"

    def __str__(self) -> str:
        return self._to_text()


class ModelWorker(StrictModel):
    """Split evaluation: the trial's own code serves its model to the scorer.

    For recipes whose checkpoint only their own code can rebuild (the agents
    edit the architecture): the worker runs in the trial's image with the
    trial's commit and output read-only and no held-out data, and answers the
    evaluator's requests over a socket (`sandbox/split/trialforge_model.py`);
    the evaluator never imports trial code and computes the metric itself.
    """

    command: str = Field(
        default="python3 -m trialforge_model serve predict:predict",
        min_length=1,
        description="Run in /work; serves the model (default: predict() of predict.py).",
    )
    memory: Bytes | None = Field(default=None, description="Default: the trial's memory.")
    cpus: float | None = Field(default=None, gt=0, le=1024, description="Default: the trial's.")


class EvaluatorSpec(StrictModel):
    """The scorer the service owns: agents never see, edit or run it."""

    path: str = Field(description="Directory holding the evaluator's files (outside the recipe).")
    command: str = Field(min_length=1, description="Run in /evaluator; prints one JSON object.")
    metric: str = Field(min_length=1, description="The key of the score in that JSON object.")
    direction: Direction
    gates: list[Gate] = Field(default_factory=list)
    data: str | None = Field(default=None, description="Held-out data directory, read-only.")
    protected: list[RepoGlob] = Field(
        default_factory=list, description="Recipe paths (globs) no agent may edit."
    )
    wallclock_s: Duration = Field(default=300.0, description="The evaluator's own time limit.")
    memory: Bytes = Field(default=ByteSize(2 * 1024**3), gt=16 * 1024**2)
    image: str | None = Field(
        default=None,
        description="The evaluator's own image (e.g. with torch); default: the trial's.",
    )
    cpus: float | None = Field(
        default=None, gt=0, le=1024, description="The evaluator's CPUs; default: the trial's."
    )
    worker: ModelWorker | None = Field(
        default=None,
        description="Split evaluation: the trial's code answers the evaluator over a socket "
        "and never runs beside the held-out data (the evaluator then gets no /output).",
    )


class Preflight(StrictModel):
    """A cheap run before the full one (a syntax check, a few steps, the real size check).

    It runs in the sandbox like the trial, with its own small budget; a trial
    that fails it never takes a full-budget run.
    """

    command: str = Field(min_length=1, description="Run in /work, like `run`.")
    wallclock_s: Duration = Field(default=60.0, description="The preflight's own time limit.")


class NoiseSpec(StrictModel):
    """How a new best must clear seed noise (see `app.domain.noise`)."""

    seed_env: str = Field(
        default="SEED", pattern=r"^[A-Z_][A-Z0-9_]*$", description="Set to the run's seed."
    )
    baseline_runs: int = Field(default=8, ge=2, le=100, description="Seeds of the baseline.")
    confirm_runs: int = Field(
        default=5, ge=1, le=100, description="Fresh seeds that decide a nominated candidate."
    )
    rule: NoiseRule = NoiseRule.SPREAD
    k: float = Field(default=2.5, gt=0, le=100, description="spread rule: standard errors.")
    alpha: float = Field(default=0.02, gt=0, lt=0.5, description="welch rule: test level.")
    gates_on_mean: bool = Field(
        default=False,
        description="Check the evaluator's gates on the mean over seeds, not on each run.",
    )
    nominate_k: float = Field(
        default=1.0,
        ge=0,
        le=100,
        description="Confirm a candidate only when its first run beats the best's mean by "
        "this many noise floors (the baseline's spread); 0 confirms any gain.",
    )


class BudgetUnit(StrEnum):
    WALLCLOCK = "wallclock"  # seconds of the run command, measured by the runner
    CPU_SECONDS = "cpu_seconds"  # CPU time of the run's processes, counted by the kernel
    STEPS = "steps"  # training steps the evaluator verifies from the artifact or logs
    TOKENS = "tokens"  # training tokens, likewise

    @property
    def evaluator_counts(self) -> bool:
        """Steps and tokens are the evaluator's to report; time is ours to measure."""
        return self in (BudgetUnit.STEPS, BudgetUnit.TOKENS)


class TrialBudget(StrictModel):
    """What one trial may use. `wallclock_s` always bounds the run command (it is killed
    there); with `unit` cpu_seconds, the run is also killed once its processes used
    `limit` seconds of CPU (fair on a shared host, where wall-clock measures the
    neighbours too); with steps or tokens, the budget that counts is the evaluator's
    own measure, in its metric `unit_metric`, which must not exceed `limit`."""

    wallclock_s: Duration = 600.0
    memory: Bytes = Field(default=ByteSize(2 * 1024**3), gt=16 * 1024**2)
    cpus: float = Field(default=1.0, gt=0, le=1024)
    gpus: int = Field(default=0, ge=0, le=64)
    artifact_max_bytes: Bytes | None = Field(default=None, gt=0)
    unit: BudgetUnit = BudgetUnit.WALLCLOCK
    limit: float | None = Field(
        default=None, gt=0, le=1e18, description="For cpu_seconds, steps or tokens."
    )
    unit_metric: str | None = Field(
        default=None, description="The evaluator metric that reports the steps or tokens used."
    )
    queue: str = Field(
        default=TRIALS_QUEUE,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="The trial queue whose workers run this search: `trials`, shared by "
        "every trial host, or one host's own (the TRIALFORGE_TRIAL_QUEUE it consumes).",
    )

    @model_validator(mode="after")
    def _unit_needs_a_measure(self) -> Self:
        if self.unit.evaluator_counts and (self.limit is None or not self.unit_metric):
            raise ValueError(f"a {self.unit} budget needs `limit` and `unit_metric`")
        if self.unit is BudgetUnit.CPU_SECONDS and (self.limit is None or self.unit_metric):
            raise ValueError("a cpu_seconds budget needs `limit` (seconds) and no `unit_metric`")
        if self.unit is BudgetUnit.WALLCLOCK and (self.limit is not None or self.unit_metric):
            raise ValueError("`limit` and `unit_metric` are for cpu_seconds, steps or tokens")
        return self


class SearchBudget(StrictModel):
    max_trials: int = Field(default=100, ge=1, le=MAX_COUNT)
    max_concurrent: int = Field(default=2, ge=1, le=1000)
    max_cost_usd: float | None = Field(default=None, ge=0, le=MAX_USD)
    deadline: Duration | None = Field(default=None, description="Seconds from the search's start.")
    stagnation_trials: int | None = Field(
        default=None,
        ge=1,
        le=MAX_COUNT,
        description="Stop after this many finished trials without a new best.",
    )
    stagnation_s: Duration | None = Field(
        default=None, description="Stop after this long without a new best."
    )


class Budgets(StrictModel):
    trial: TrialBudget = Field(default_factory=TrialBudget)
    search: SearchBudget = Field(default_factory=SearchBudget)


class Feedback(StrEnum):
    FULL = "full"  # best line, own and others' trials, failures with logs, leaderboard
    BEST_ONLY = "best_only"  # only the best trial and how it was reached


class RepeatIdeas(StrEnum):
    REFUSE = "refuse"  # an idea already tried (the same changed lines) is a duplicate anywhere
    ALLOW = "allow"  # an idea may be re-tried on a new parent; only an identical recipe is not


class SearchSpec(StrictModel):
    name: SearchName
    description: str = ""
    repo: str = Field(min_length=1, description="Git URL or local path of the starting recipe.")
    ref: str | None = Field(default=None, description="Branch, tag or sha; default: HEAD.")
    run: str = Field(min_length=1, description="The trial command, run in /work.")
    preflight: Preflight | None = None
    noise: NoiseSpec | None = Field(
        default=None, description="Repeat seeds and promote only past the noise floor."
    )
    image: str = DEFAULT_IMAGE
    evaluator: EvaluatorSpec
    budgets: Budgets = Field(default_factory=Budgets)
    agents: list[AgentSpec] = Field(min_length=1)
    selection: ParentSelection = Field(
        default=ParentSelection.RATCHET, description="How each proposal picks its parent."
    )
    feedback: Feedback = Field(
        default=Feedback.FULL,
        description="What agents see of the lineage: full, or best_only (a control study).",
    )
    repeat_ideas: RepeatIdeas = Field(
        default=RepeatIdeas.REFUSE,
        description="An idea already tried (the same changed lines, on any parent): refuse it "
        "as a duplicate, or allow it again on a new parent.",
    )

    @model_validator(mode="before")
    @classmethod
    def _bounded(cls, data: Any) -> Any:
        """A whole spec is small: refuse a huge one before validating its parts."""
        if isinstance(data, dict):
            try:
                size = len(json.dumps(data, default=str))
            except RecursionError as exc:
                raise ValueError("the spec nests deeper than any spec field does") from exc
            if size > SPEC_MAX_BYTES:
                raise ValueError(f"the spec is {size} bytes as JSON; at most {SPEC_MAX_BYTES}")
        return data

    @field_validator("agents")
    @classmethod
    def _unique_agents(cls, agents: list[AgentSpec]) -> list[AgentSpec]:
        names = [agent.name for agent in agents]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"agent names must be unique; repeated: {', '.join(duplicates)}")
        return agents

    def local_paths(self) -> dict[str, str]:
        """Field -> local path for every path the server must read (URLs excluded)."""
        paths = {"evaluator.path": self.evaluator.path}
        if self.evaluator.data:
            paths["evaluator.data"] = self.evaluator.data
        if not is_url(self.repo):
            paths["repo"] = self.repo
        return paths

    def resolved_against(self, base: Path) -> SearchSpec:
        """A copy with relative local paths made absolute against `base` (the spec's folder)."""
        resolved = {
            field: str((base / path).resolve()) for field, path in self.local_paths().items()
        }
        evaluator = self.evaluator.model_copy(
            update={k.split(".")[1]: v for k, v in resolved.items() if k.startswith("evaluator.")}
        )
        return self.model_copy(
            update={"repo": resolved.get("repo", self.repo), "evaluator": evaluator}
        )


def error_fields(exc: ValidationError) -> list[dict[str, str]]:
    """Pydantic errors as `[{"field": "budgets.trial.wallclock_s", "message": ...}]`."""
    return [
        {
            "field": ".".join(str(part) for part in error["loc"]) or "spec",
            "message": error["msg"],
        }
        for error in exc.errors(include_url=False)
    ]


def parse_spec(data: Any) -> SearchSpec:
    try:
        return SearchSpec.model_validate(data)
    except ValidationError as exc:
        fields = error_fields(exc)
        summary = "; ".join(f"{item['field']}: {item['message']}" for item in fields)
        raise InvalidSpec(f"invalid search spec: {summary}", detail=fields) from exc


def load_spec_file(path: Path) -> SearchSpec:
    """Read a YAML (or JSON) spec file, resolving its relative paths against its folder."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InvalidSpec(f"cannot read spec file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise InvalidSpec(f"spec file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidSpec(f"spec file {path} must hold a mapping, not {type(data).__name__}")
    return parse_spec(data).resolved_against(path.resolve().parent)

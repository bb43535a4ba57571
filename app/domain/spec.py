"""The search spec: what a user submits, validated once at the door.

Everything the loop later relies on (a parseable gate, a knob regex with one
group, agent names that are unique, surfaces that cannot reach outside the
repo) is checked here, so a bad spec is a 422 naming its field rather than a
trial failing hours later. `extra="forbid"` everywhere: a typo is an error,
not a silently ignored setting. Every number is finite and every duration,
size, count and cost has a ceiling (a runner handed 1e308 seconds crashes);
every string is bounded and free of control characters (Postgres refuses
NUL in text and JSON, and a page would carry whatever we store). What can
only be checked against the recipe or the server's settings is checked by
the import service (`app.domain.admission`).
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from app.domain.noise import NoiseRule
from app.domain.regex import compile_linear
from app.domain.selection import ParentSelection
from app.domain.states import Direction
from app.errors import InvalidSpec

DEFAULT_IMAGE = "trialforge/sandbox:latest"
TRIALS_QUEUE = "trials"  # the trial queue every trial host shares unless told otherwise
NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
ENV_NAME_PATTERN = r"^[A-Z_][A-Z0-9_]{0,63}$"
SPEC_MAX_BYTES = 1_000_000  # a whole spec, as JSON
TEXT_MAX_CHARS = 10_000  # any one string in a spec (a description, a brief, a command)
NAME_MAX_CHARS = 100  # a search's name: one line in lists and pages
LIST_MAX_ITEMS = 100  # any one list in a spec (agents, paths, gates, knobs, choices)
MAX_DURATION_S = 366 * 86_400.0  # a year: any longer budget or deadline is a typo
MAX_BYTES = 4 * 1024**4  # 4 TiB: a memory or artifact cap above this is a typo
MAX_COUNT = 1_000_000  # trials, stagnation trials
MAX_USD = 1_000_000.0  # a cost budget
MAX_USD_PER_MTOK = 10_000.0  # a model's price
# C0 controls (but tab, newline, carriage return), DEL and C1: never in a spec's text.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_BREAK = re.compile(r"[\t\n\r]")
_DURATION_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_GATE_RE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|==|!=|>|<)\s*(\S+)\s*$")
_URL_RE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|[\w.-]+@[\w.-]+:)", re.IGNORECASE)


def parse_duration(value: Any) -> Any:
    """Seconds from `3600`, `"90s"`, `"30m"`, `"48h"` or `"2d"`; other input is left to pydantic."""
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if not match:
            raise ValueError(f"not a duration: {value!r} (use e.g. 600, '90s', '30m', '48h', '2d')")
        return float(match.group(1)) * _DURATION_UNITS_S[match.group(2) or "s"]
    return value


Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0, le=MAX_DURATION_S)]
Bytes = Annotated[ByteSize, Field(le=MAX_BYTES)]


def is_url(source: str) -> bool:
    """True for anything git fetches over a transport (https, ssh, scp-style, file)."""
    return bool(_URL_RE.match(source))


def _check_repo_glob(pattern: str) -> str:
    parts = pattern.split("/")
    if not pattern or pattern.startswith("/") or ".." in parts:
        raise ValueError(f"{pattern!r} must be a path relative to the recipe, without '..'")
    return pattern


RepoGlob = Annotated[str, BeforeValidator(_check_repo_glob)]


def _one_line(text: str) -> str:
    if _BREAK.search(text):
        raise ValueError("must be one line (no tab, newline or carriage return)")
    return text


SearchName = Annotated[
    str, Field(min_length=1, max_length=NAME_MAX_CHARS), AfterValidator(_one_line)
]


def _check_text(field: str, value: Any) -> Any:
    """Bound every string and list of a spec and refuse control characters in its text."""
    if isinstance(value, list) and len(value) > LIST_MAX_ITEMS:
        raise ValueError(f"{field} has {len(value)} entries; at most {LIST_MAX_ITEMS}")
    texts = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    for index, text in enumerate(item for item in texts if isinstance(item, str)):
        where = field if isinstance(value, str) else f"{field}[{index}]"
        if len(text) > TEXT_MAX_CHARS:
            raise ValueError(f"{where} is {len(text)} characters; at most {TEXT_MAX_CHARS}")
        if found := _CONTROL.search(text):
            raise ValueError(
                f"{where} holds a control character (U+{ord(found.group()):04X} at "
                f"{found.start()}); remove it"
            )
    return value


class StrictModel(BaseModel):
    # Every float of a spec is finite: JSON's Infinity and NaN are refused at the door.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _bounded_text(cls, value: Any, info: ValidationInfo) -> Any:
        return _check_text(info.field_name or "value", value)


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
    STEPS = "steps"  # training steps the evaluator verifies from the artifact or logs
    TOKENS = "tokens"  # training tokens, likewise


class TrialBudget(StrictModel):
    """What one trial may use. `wallclock_s` always bounds the run command (it is killed
    there); with `unit` steps or tokens, the budget that counts is the evaluator's own
    measure, in its metric `unit_metric`, which must not exceed `limit`."""

    wallclock_s: Duration = 600.0
    memory: Bytes = Field(default=ByteSize(2 * 1024**3), gt=16 * 1024**2)
    cpus: float = Field(default=1.0, gt=0, le=1024)
    gpus: int = Field(default=0, ge=0, le=64)
    artifact_max_bytes: Bytes | None = Field(default=None, gt=0)
    unit: BudgetUnit = BudgetUnit.WALLCLOCK
    limit: float | None = Field(default=None, gt=0, le=1e18, description="For steps or tokens.")
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
        counted = self.unit is not BudgetUnit.WALLCLOCK
        if counted and (self.limit is None or not self.unit_metric):
            raise ValueError(f"a {self.unit} budget needs `limit` and `unit_metric`")
        if not counted and (self.limit is not None or self.unit_metric):
            raise ValueError("`limit` and `unit_metric` are for steps or tokens budgets")
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


class AgentKind(StrEnum):
    LLM = "llm"
    CONTROL = "control"
    COMBINER = "combiner"


class Feedback(StrEnum):
    FULL = "full"  # best line, own and others' trials, failures with logs, leaderboard
    BEST_ONLY = "best_only"  # only the best trial and how it was reached


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

"""The label function: one table row per outcome, and the precedence between them.

Invariant: every finished trial gets exactly one label, a score only when the
evaluator produced a valid number, and a reason a human (and the next agent)
can act on. Our own failures are `infra_error`, the only retryable label.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest

from app.domain.labels import Verdict, label, metric_value, preflight_verdict, run_verdict
from app.domain.spec import SearchSpec, parse_spec
from app.domain.states import Label
from app.errors import InvalidSpec
from app.store.models import Trial
from app.store.transitions import budget_used
from sandbox import EvalResult, RunResult

CLEAN_RUN = RunResult(
    exit_code=0,
    oom_killed=False,
    timed_out=False,
    wallclock_s=1.5,
    artifact_bytes=1000,
    log_tail="epoch 3 done\n",
    image_digest="sha256:abc",
    isolated=True,
    infra_error=None,
)


def scored(**metrics: Any) -> EvalResult:
    return EvalResult(
        exit_code=0, timed_out=False, metrics=metrics, error=None, log_tail="", infra_error=None
    )


def make_spec(direction: str = "maximize") -> SearchSpec:
    return parse_spec(
        {
            "name": "labels",
            "repo": "/recipe",
            "run": "python train.py",
            "evaluator": {
                "path": "/evaluator",
                "command": "python evaluate.py",
                "metric": "val_acc",
                "direction": direction,
                "gates": ["val_acc >= 0.5", "seconds < 60"],
            },
            "budgets": {"trial": {"wallclock_s": 30, "memory": "1GiB", "artifact_max_bytes": 2000}},
            "agents": [{"name": "a", "kind": "llm", "model": "m", "surface": {"paths": ["*"]}}],
        }
    )


SPEC = make_spec()
PASSING = scored(val_acc=0.9, seconds=12)

CASES: list[tuple[str, RunResult, EvalResult | None, Label, float | None, str]] = [
    ("ok", CLEAN_RUN, PASSING, Label.OK, 0.9, "val_acc = 0.9"),
    ("ok with an int metric", CLEAN_RUN, scored(val_acc=1, seconds=1), Label.OK, 1.0, ""),
    (
        "crash",
        replace(CLEAN_RUN, exit_code=1, log_tail="Traceback\nValueError: bad shape\n"),
        None,
        Label.CRASH,
        None,
        "exited with code 1: Traceback | ValueError: bad shape",
    ),
    (
        "budget_overrun",
        replace(CLEAN_RUN, exit_code=137, timed_out=True, wallclock_s=30.2),
        None,
        Label.BUDGET_OVERRUN,
        None,
        "30s wall-clock budget",
    ),
    (
        "oom",
        replace(CLEAN_RUN, exit_code=137, oom_killed=True),
        None,
        Label.OOM,
        None,
        "out of memory",
    ),
    (
        "size_failure",
        replace(CLEAN_RUN, artifact_bytes=2001),
        None,
        Label.SIZE_FAILURE,
        None,
        "2001 bytes, over the 2000-byte cap",
    ),
    (
        "size_failure: writes past the output cap failed, and the run crashed on them",
        replace(
            CLEAN_RUN,
            exit_code=1,
            output_full=True,
            artifact_bytes=2001,
            log_tail="OSError: [Errno 28] No space left on device\n",
        ),
        None,
        Label.SIZE_FAILURE,
        None,
        "wrote past its 2000-byte output cap (the writes failed in the sandbox)",
    ),  # fmt: skip
    (
        "size at the cap is fine",
        replace(CLEAN_RUN, artifact_bytes=2000),
        PASSING,
        Label.OK,
        0.9,
        "",
    ),
    (
        "gate_miss keeps the score",
        CLEAN_RUN,
        scored(val_acc=0.4, seconds=12),
        Label.GATE_MISS,
        0.4,
        "val_acc = 0.4 fails val_acc >= 0.5",
    ),
    (
        "gate_miss names every failed gate",
        CLEAN_RUN,
        scored(val_acc=0.4, seconds=61),
        Label.GATE_MISS,
        0.4,
        "seconds = 61 fails seconds < 60",
    ),
    (
        "evaluator_error: evaluator failed",
        CLEAN_RUN,
        EvalResult(1, False, None, "evaluator exited with code 1", "boom", None),
        Label.EVALUATOR_ERROR,
        None,
        "evaluator exited with code 1",
    ),
    (
        "crash: the evaluator says the trial's output is invalid",
        CLEAN_RUN,
        scored(valid=False, reason="state_dict has no decoder weights", val_acc=0.0),
        Label.CRASH,
        None,
        "the evaluator found the trial's output invalid: state_dict has no decoder weights",
    ),
    (
        "ok: the evaluator says the output is valid",
        CLEAN_RUN,
        scored(valid=True, val_acc=0.95, seconds=1),
        Label.OK,
        0.95,
        "val_acc = 0.95",
    ),
    (
        "evaluator_error: 'valid' is not a boolean",
        CLEAN_RUN,
        scored(valid="no", val_acc=0.95),
        Label.EVALUATOR_ERROR,
        None,
        "'valid' is 'no', not true or false",
    ),
    (
        "evaluator_error: metric missing",
        CLEAN_RUN,
        scored(accuracy=0.9, seconds=1),
        Label.EVALUATOR_ERROR,
        None,
        "metric 'val_acc' missing from the evaluator's output (it gave: accuracy, seconds)",
    ),
    (
        "evaluator_error: metric not a number",
        CLEAN_RUN,
        scored(val_acc="0.9", seconds=1),
        Label.EVALUATOR_ERROR,
        None,
        "not a number",
    ),
    (
        "evaluator_error: a boolean is not a score",
        CLEAN_RUN,
        scored(val_acc=True, seconds=1),
        Label.EVALUATOR_ERROR,
        None,
        "not a number",
    ),
    (
        "evaluator_error: gate metric missing",
        CLEAN_RUN,
        scored(val_acc=0.9),
        Label.EVALUATOR_ERROR,
        0.9,
        "gate seconds < 60: metric 'seconds' missing",
    ),
    (
        "infra_error in the run",
        replace(CLEAN_RUN, exit_code=None, infra_error="ImageNotFound: no such image"),
        None,
        Label.INFRA_ERROR,
        None,
        "sandbox failed: ImageNotFound",
    ),
    (
        "infra_error in the evaluation",
        CLEAN_RUN,
        EvalResult(None, False, None, None, "", "APIError: daemon gone"),
        Label.INFRA_ERROR,
        None,
        "evaluator sandbox failed: APIError",
    ),
]


@pytest.mark.parametrize(
    ("run", "evaluation", "expected_label", "expected_score", "reason_part"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_each_outcome_gets_its_label_score_and_reason(
    run: RunResult,
    evaluation: EvalResult | None,
    expected_label: Label,
    expected_score: float | None,
    reason_part: str,
) -> None:
    verdict = label(run, evaluation, SPEC)

    assert verdict.label is expected_label
    assert verdict.score == expected_score
    assert reason_part in verdict.reason


def test_every_label_a_run_or_evaluator_can_cause_has_a_row() -> None:
    covered = {case[3] for case in CASES}
    # patch_rejected, illegal_edit and duplicate are decided before anything runs.
    decided_before_running = {
        Label.PATCH_REJECTED,
        Label.ILLEGAL_EDIT,
        Label.DUPLICATE,
        Label.NO_SUBMISSION,
        Label.PREFLIGHT_CRASH,  # decided by `preflight_verdict`, below
    }

    assert covered == set(Label) - decided_before_running


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        # A killed trial's exit code is the kill's: the deadline is the cause.
        (replace(CLEAN_RUN, exit_code=137, timed_out=True, oom_killed=True), Label.BUDGET_OVERRUN),
        (replace(CLEAN_RUN, exit_code=137, oom_killed=True, artifact_bytes=10**9), Label.OOM),
        (replace(CLEAN_RUN, exit_code=2, artifact_bytes=10**9), Label.CRASH),
        # Our failure means the trial proved nothing, whatever else was observed.
        (replace(CLEAN_RUN, timed_out=True, infra_error="daemon died"), Label.INFRA_ERROR),
    ],
    ids=["deadline over oom", "oom over size", "crash over size", "infra over all"],
)
def test_the_cause_wins_over_its_symptoms(run: RunResult, expected: Label) -> None:
    assert label(run, None, SPEC).label is expected


def test_a_run_that_passed_needs_an_evaluation_to_be_labelled() -> None:
    assert run_verdict(CLEAN_RUN, SPEC.budgets.trial) is None
    with pytest.raises(ValueError, match="without its evaluation"):
        label(CLEAN_RUN, None, SPEC)


def test_the_direction_does_not_change_the_label_only_the_spec_decides_gates() -> None:
    minimizing = make_spec("minimize")

    assert label(CLEAN_RUN, PASSING, minimizing) == Verdict(Label.OK, 0.9, "val_acc = 0.9")


def test_only_infra_errors_are_retryable() -> None:
    retryable = {case[3] for case in CASES if label(case[1], case[2], SPEC).retryable}

    assert retryable == {Label.INFRA_ERROR}


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_non_finite_metric_is_refused(value: float) -> None:
    score, problem = metric_value({"val_acc": value}, "val_acc")

    assert score is None
    assert "not a finite number" in problem


@pytest.mark.parametrize(
    ("run", "expected", "reason_part"),
    [
        (replace(CLEAN_RUN, exit_code=1, log_tail="SyntaxError: bad\n"), Label.PREFLIGHT_CRASH,
         "preflight exited with code 1: SyntaxError"),
        (replace(CLEAN_RUN, exit_code=137, timed_out=True), Label.PREFLIGHT_CRASH,
         "preflight killed at its"),
        (replace(CLEAN_RUN, exit_code=137, oom_killed=True), Label.PREFLIGHT_CRASH,
         "preflight out of memory"),
        (replace(CLEAN_RUN, artifact_bytes=5000), Label.SIZE_FAILURE, "at preflight: artifact"),
        (replace(CLEAN_RUN, infra_error="daemon gone"), Label.INFRA_ERROR, "sandbox failed"),
    ],
    ids=["crash", "overrun", "oom", "oversized", "infra"],
)  # fmt: skip
def test_a_failed_preflight_gets_its_own_label(
    run: RunResult, expected: Label, reason_part: str
) -> None:
    verdict = preflight_verdict(run, SPEC.budgets.trial)

    assert verdict is not None and verdict.label is expected
    assert reason_part in verdict.reason


def test_a_passing_preflight_lets_the_full_run_go_ahead() -> None:
    assert preflight_verdict(CLEAN_RUN, SPEC.budgets.trial) is None


def steps_spec() -> SearchSpec:
    raw = SPEC.model_dump(mode="json")
    raw["budgets"]["trial"].update(unit="steps", limit=1000, unit_metric="steps")
    return parse_spec(raw)


@pytest.mark.parametrize(
    ("metrics", "expected", "reason_part"),
    [
        ({"val_acc": 0.9, "seconds": 1, "steps": 1000}, Label.OK, "val_acc = 0.9"),
        ({"val_acc": 0.9, "seconds": 1, "steps": 1200}, Label.BUDGET_OVERRUN,
         "used 1200 steps of its 1000"),
        ({"val_acc": 0.9, "seconds": 1}, Label.EVALUATOR_ERROR, "budget: metric 'steps' missing"),
    ],
    ids=["within", "over", "unreported"],
)  # fmt: skip
def test_a_steps_budget_is_checked_against_what_the_evaluator_measured(
    metrics: dict[str, Any], expected: Label, reason_part: str
) -> None:
    verdict = label(CLEAN_RUN, scored(**metrics), steps_spec())

    assert verdict.label is expected
    assert reason_part in verdict.reason


def test_a_steps_budget_needs_its_limit_and_metric() -> None:
    raw = SPEC.model_dump(mode="json")
    raw["budgets"]["trial"]["unit"] = "tokens"

    with pytest.raises(InvalidSpec) as refused:
        parse_spec(raw)

    assert refused.value.detail[0]["field"] == "budgets.trial"
    assert "needs `limit` and `unit_metric`" in refused.value.detail[0]["message"]


def cpu_spec(**trial: Any) -> SearchSpec:
    raw = SPEC.model_dump(mode="json")
    raw["budgets"]["trial"].update(unit="cpu_seconds", **trial)
    return parse_spec(raw)


def test_a_cpu_seconds_budget_is_what_the_kernel_counted_not_what_the_evaluator_says() -> None:
    """Issue 20: on a shared host wall-clock measures the neighbours; CPU time does not."""
    spec = cpu_spec(limit=30)
    killed = replace(CLEAN_RUN, exit_code=137, cpu_overrun=True, cpu_s=30.4, wallclock_s=17.0)

    over = label(killed, None, spec)
    within = label(replace(CLEAN_RUN, cpu_s=12.0), PASSING, spec)

    assert over.label is Label.BUDGET_OVERRUN
    assert over.reason == "killed at its 30 CPU-seconds budget (ran 17.0s)"
    assert within.label is Label.OK  # no evaluator metric is asked for


@pytest.mark.parametrize(
    ("trial", "message"),
    [({}, "needs `limit` (seconds) and no `unit_metric`"),
     ({"limit": 30, "unit_metric": "cpu"}, "needs `limit` (seconds) and no `unit_metric`")],
    ids=["no limit", "a metric"],
)  # fmt: skip
def test_a_cpu_seconds_budget_needs_a_limit_and_no_metric(
    trial: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidSpec) as refused:
        cpu_spec(**trial)

    assert message in refused.value.detail[0]["message"]


def test_a_cpu_count_the_daemon_sampled_says_so_in_the_trials_budget_record() -> None:
    """Where the kernel's counter is not ours (systemd's cgroups, a worker in a container), the
    daemon's once-a-second samples stand in, and the record must not pass them off as exact."""
    budget = cpu_spec(limit=30).budgets.trial
    exact = budget_used(budget, Trial(), replace(CLEAN_RUN, cpu_s=12.0))
    sampled = budget_used(budget, Trial(), replace(CLEAN_RUN, cpu_s=11.4, cpu_sampled=True))

    assert exact["used"] == 12.0 and "counted by the kernel" in str(exact["covers"])
    assert sampled["used"] == 11.4 and "sampled by the Docker daemon" in str(sampled["covers"])

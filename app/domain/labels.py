"""Turns what the sandbox measured and what the evaluator printed into one verdict.

Pure: no Docker, no database. Every trial that ran ends here, so this is the
one place that decides what counts as a failure and which failure it was.

Precedence follows causality: our own failure (infra) first, because then the
trial proved nothing; then what stopped the run (deadline, memory, crash);
then what the runner measured afterwards (artifact size); only then the
evaluator's metrics and the gates on them. A deadline beats an exit code
because a killed trial's exit code is the kill's, not the trial's.

The score is recorded whenever the evaluator produced a valid one, including
for a gate miss (the user wants to see *how far* it missed), but only `ok`
trials are ever eligible for best.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass

from app.domain.spec import EvaluatorSpec, Gate, SearchSpec, TrialBudget
from app.domain.states import Label
from sandbox.contract import EvalResult, RunResult

REASON_LOG_LINES = 3  # of the log's last lines quoted in a crash reason
REASON_LINE_CHARS = 300

_GATE_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}


@dataclass(frozen=True)
class Verdict:
    label: Label
    score: float | None
    reason: str

    @property
    def retryable(self) -> bool:
        """Whether the trial should run again: only when the failure was ours."""
        return self.label is Label.INFRA_ERROR


def label(run: RunResult, evaluation: EvalResult | None, spec: SearchSpec) -> Verdict:
    """The verdict on a finished trial.

    `evaluation` may be None only when `run_verdict` already decided (the
    evaluator is never started for a run that failed).
    """
    verdict = run_verdict(run, spec.budgets.trial)
    if verdict is not None:
        return verdict
    if evaluation is None:
        raise ValueError("a run that passed cannot be labelled without its evaluation")
    return _score(evaluation, spec.evaluator, spec.budgets.trial)


def run_verdict(run: RunResult, budget: TrialBudget) -> Verdict | None:
    """The verdict the run alone decides, or None when it passed and awaits evaluation."""
    if run.infra_error is not None:
        return Verdict(Label.INFRA_ERROR, None, f"sandbox failed: {run.infra_error}")
    if run.cpu_overrun:
        return Verdict(
            Label.BUDGET_OVERRUN,
            None,
            f"killed at its {budget.limit:g} CPU-seconds budget (ran {run.wallclock_s:.1f}s)",
        )
    if run.timed_out:
        return Verdict(
            Label.BUDGET_OVERRUN,
            None,
            f"killed at its {budget.wallclock_s:g}s wall-clock budget (ran {run.wallclock_s:.1f}s)",
        )
    if run.oom_killed:
        return Verdict(
            Label.OOM, None, f"out of memory: exceeded its {int(budget.memory)}-byte limit"
        )
    cap = budget.artifact_max_bytes
    if run.output_full and cap is not None:  # its writes failed; a crash that follows is that
        return Verdict(
            Label.SIZE_FAILURE,
            None,
            f"wrote past its {int(cap)}-byte output cap (the writes failed in the sandbox)",
        )
    if run.exit_code != 0:
        return Verdict(
            Label.CRASH, None, f"exited with code {run.exit_code}{_last_lines(run.log_tail)}"
        )
    if cap is not None and run.artifact_bytes > cap:
        return Verdict(
            Label.SIZE_FAILURE,
            None,
            f"artifact is {run.artifact_bytes} bytes, over the {int(cap)}-byte cap",
        )
    return None


def preflight_verdict(run: RunResult, budget: TrialBudget) -> Verdict | None:
    """The verdict of a failed preflight, or None when the full run may go ahead.

    A preflight that crashes, overruns its own budget or runs out of memory is
    `preflight_crash`; one that already leaves an artifact over the cap is
    `size_failure` (the paper's costliest waste: full runs of oversized models).
    """
    verdict = run_verdict(run, budget)
    if verdict is None or verdict.label in (Label.INFRA_ERROR,):
        return verdict
    if verdict.label is Label.SIZE_FAILURE:
        return Verdict(Label.SIZE_FAILURE, None, f"at preflight: {verdict.reason}")
    return Verdict(Label.PREFLIGHT_CRASH, None, f"preflight {verdict.reason}")


def _score(evaluation: EvalResult, evaluator: EvaluatorSpec, budget: TrialBudget) -> Verdict:
    if evaluation.infra_error is not None:
        reason = f"evaluator sandbox failed: {evaluation.infra_error}"
        return Verdict(Label.INFRA_ERROR, None, reason)
    if evaluation.error is not None or evaluation.metrics is None:
        return Verdict(Label.EVALUATOR_ERROR, None, evaluation.error or "evaluator gave no metrics")
    invalid = _invalid(evaluation.metrics)
    if invalid is not None:
        return invalid
    score, problem = metric_value(evaluation.metrics, evaluator.metric)
    if score is None:
        return Verdict(Label.EVALUATOR_ERROR, None, problem)
    if budget.unit.evaluator_counts:
        assert budget.unit_metric is not None and budget.limit is not None  # the spec ensures
        used, problem = metric_value(evaluation.metrics, budget.unit_metric)
        if used is None:
            return Verdict(Label.EVALUATOR_ERROR, score, f"budget: {problem}")
        if used > budget.limit:
            reason = f"used {used:g} {budget.unit} of its {budget.limit:g}"
            return Verdict(Label.BUDGET_OVERRUN, score, reason)
    misses = []
    for gate in evaluator.gates:
        value, problem = metric_value(evaluation.metrics, gate.metric)
        if value is None:
            return Verdict(Label.EVALUATOR_ERROR, score, f"gate {gate}: {problem}")
        if not gate_passes(gate, value):
            misses.append(f"{gate.metric} = {value:g} fails {gate}")
    if misses:
        return Verdict(Label.GATE_MISS, score, "; ".join(misses))
    return Verdict(Label.OK, score, f"{evaluator.metric} = {score:g}")


def _invalid(metrics: dict[str, object]) -> Verdict | None:
    """The trial's failure when the evaluator says its output is broken (`"valid": false`).

    That is the trial's fault (a `crash`, with the evaluator's reason), not the
    evaluator's: an evaluator that cannot score at all is an `evaluator_error`.
    """
    if "valid" not in metrics:
        return None
    valid, reason = metrics["valid"], metrics.get("reason")
    if not isinstance(valid, bool):
        return Verdict(Label.EVALUATOR_ERROR, None, f"'valid' is {valid!r}, not true or false")
    if valid:
        return None
    said = str(reason)[:REASON_LINE_CHARS] if reason else "no reason given"
    return Verdict(Label.CRASH, None, f"the evaluator found the trial's output invalid: {said}")


def gate_passes(gate: Gate, value: float) -> bool:
    return _GATE_OPS[gate.op](value, gate.value)


def metric_value(metrics: dict[str, object], name: str) -> tuple[float | None, str]:
    """The finite number `metrics[name]`, else (None, why not).

    Booleans are refused although Python counts them as ints: `true` is not a
    score, and accepting it would let a buggy evaluator rank trials.
    """
    if name not in metrics:
        keys = ", ".join(sorted(metrics)) or "none"
        return None, f"metric {name!r} missing from the evaluator's output (it gave: {keys})"
    value = metrics[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, f"metric {name!r} is {value!r}, not a number"
    if not math.isfinite(value):
        return None, f"metric {name!r} is {value!r}, not a finite number"
    return float(value), ""


def _last_lines(log_tail: str) -> str:
    lines = [line for line in log_tail.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    quoted = " | ".join(line[:REASON_LINE_CHARS] for line in lines[-REASON_LOG_LINES:])
    return f": {quoted}"

"""A trial's runs over seeds, folded into one outcome: which seeds run, and what they add up to.

Pure: the run itself is passed in (`run_once(seed)`), so the rule (the
baseline runs `baseline_runs` seeds to measure the noise floor; a candidate
is nominated by its first run and confirmed on fresh seeds; gates on the
mean) is testable without a sandbox.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from app.domain.labels import Verdict, gate_passes, metric_value
from app.domain.noise import mean
from app.domain.promotion import nominated
from app.domain.spec import Gate, NoiseSpec
from app.domain.states import Direction, Label
from sandbox.contract import EvalResult, RunResult


@dataclass(frozen=True)
class Execution:
    """The verdict and what it was decided from; `run` is None when the edit never ran.

    `evaluator_digest` is what the evaluator and held-out data hashed to when
    this trial was scored; `evaluator_changed` says it differed from the
    search's, which fails the trial and deserves an event of its own.
    """

    verdict: Verdict
    run: RunResult | None = None
    evaluation: EvalResult | None = None
    evaluator_digest: str | None = None
    evaluator_changed: bool = False
    runs: tuple[float, ...] = ()  # scores of every seed run, the first one first
    confirmation: tuple[float, ...] = ()  # the fresh-seed runs that decide a nominated candidate


def repeat_seeds(
    run_once: Callable[[int], Execution],
    noise: NoiseSpec | None,
    *,
    baseline: bool,
    best_runs: Sequence[float],
    direction: Direction,
    nominate: Callable[[], object] = lambda: None,
    mean_gates: Sequence[Gate] = (),
) -> Execution:
    """Run seed 0, then the seeds the noise spec asks for; one Execution for them all.

    The baseline runs `baseline_runs` seeds (its spread is the noise floor). A
    candidate whose first run beats the best's mean is nominated (`nominate`
    is called, e.g. to show it as pending) and runs `confirm_runs` fresh seeds,
    which then decide. A seed that fails ends the trial with that failure:
    a recipe that crashes on some seeds is not a result. `mean_gates` are
    checked on the mean over the seeds instead of on each run (a run that
    misses one alone still counts).
    """

    def score_of(execution: Execution) -> float | None:
        if execution.runs:
            return execution.runs[0]
        if mean_gates and execution.verdict.label is Label.GATE_MISS:
            return execution.verdict.score
        return None

    first = run_once(0)
    first_score = score_of(first)
    if noise is None or first_score is None:
        return first
    if baseline:
        seeds = range(1, noise.baseline_runs)
    else:
        if not nominated(first_score, best_runs, direction):
            return first
        nominate()
        seeds = range(1, noise.confirm_runs + 1)
    executions = [first]
    for seed in seeds:
        more = run_once(seed)
        if score_of(more) is None:
            reason = f"seed {seed}: {more.verdict.reason}"
            return replace(more, verdict=replace(more.verdict, reason=reason))
        executions.append(more)
    runs = tuple(score for e in executions if (score := score_of(e)) is not None)
    centre = mean(runs)
    verdict = Verdict(Label.OK, centre, f"mean {centre:.6g} over {len(runs)} seeds")
    misses = [
        f"{gate.metric} = {value:g} (mean) fails {gate}"
        for gate in mean_gates
        if not gate_passes(gate, value := mean([_metric(e, gate.metric) for e in executions]))
    ]
    if misses:
        verdict = Verdict(Label.GATE_MISS, centre, f"over {len(runs)} seeds: " + "; ".join(misses))
    confirmation = () if baseline else runs[1:]
    return replace(first, verdict=verdict, runs=runs, confirmation=confirmation)


def _metric(execution: Execution, name: str) -> float:
    assert execution.evaluation is not None and execution.evaluation.metrics is not None
    value, _ = metric_value(execution.evaluation.metrics, name)
    return float("nan") if value is None else value

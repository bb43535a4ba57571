"""A trial's runs over seeds, folded into one outcome: which seeds run, and what they add up to.

Pure: the run itself is passed in (`run_once(seed)`), so the rules are
testable without a sandbox:
- the baseline runs seeds 0 .. `baseline_runs`-1; their spread is the noise floor;
- a candidate runs seed 0 first; it is nominated for confirmation only when
  that run beats the best's mean by `nominate_k` noise floors, and is then
  confirmed on fresh seeds: ones that neither its nominating run nor any of
  the best's runs used;
- every run's outcome (seed, label, score) is kept. A trial fails when any
  of its seeds fails (the first failure gives its label, and the reason
  names the seed); later seeds are then not run, and the ones that scored
  stay on the record;
- gates may apply to the mean over seeds instead of each run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from app.domain.labels import Verdict, gate_passes, metric_value
from app.domain.noise import mean
from app.domain.promotion import nominated
from app.domain.spec import Gate, NoiseSpec
from app.domain.states import Direction, Label
from sandbox.contract import EvalResult, RunResult

FIRST_SEED = 0  # every trial's first run, the baseline's included


@dataclass(frozen=True)
class SeedRun:
    """One run's outcome: the seed it got, and its label and score."""

    seed: int
    label: Label
    score: float | None
    reason: str


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
    runs: tuple[float, ...] = ()  # scores of every seed run that scored, the first one first
    confirmation: tuple[float, ...] = ()  # the fresh-seed runs that decide a nominated candidate
    seeds: tuple[SeedRun, ...] = ()  # every run's outcome, in the order they ran
    train_s: float = 0.0  # sandbox seconds of every training run (preflights included)
    eval_s: float = 0.0  # sandbox seconds of every evaluation
    confirm_s: float = 0.0  # of those, what confirming a nominee on fresh seeds took
    cpu_s: float | None = None  # CPU time of every training run's processes; None: unmeasured

    def plus_time_of(self, others: Iterable[Execution]) -> Execution:
        """This outcome, with the sandbox time of `others` (the other seeds) added to its own."""
        spent = list(others)
        measured = [e.cpu_s for e in [self, *spent] if e.cpu_s is not None]
        return replace(
            self,
            train_s=self.train_s + sum(e.train_s for e in spent),
            eval_s=self.eval_s + sum(e.eval_s for e in spent),
            cpu_s=sum(measured) if measured else None,
        )


def fresh_seeds(count: int, used: Iterable[int]) -> list[int]:
    """The `count` smallest seeds not in `used`: what a confirmation runs on."""
    taken, seeds, candidate = set(used), list[int](), 0
    while len(seeds) < count:
        if candidate not in taken:
            seeds.append(candidate)
        candidate += 1
    return seeds


def repeat_seeds(
    run_once: Callable[[int], Execution],
    noise: NoiseSpec | None,
    *,
    baseline: bool,
    best_runs: Sequence[float],
    direction: Direction,
    best_seeds: Sequence[int] = (FIRST_SEED,),
    noise_sd: float = 0.0,
    nominate: Callable[[], object] = lambda: None,
    mean_gates: Sequence[Gate] = (),
) -> Execution:
    """Run seed 0, then the seeds the noise spec asks for; one Execution for them all.

    `best_runs` and `best_seeds` are the current best's scores and seeds;
    `noise_sd` the measured noise floor; `nominate` is called when a candidate
    earns confirmation (e.g. to show it as pending).
    """

    def score_of(execution: Execution) -> float | None:
        if execution.runs:
            return execution.runs[0]
        if mean_gates and execution.verdict.label is Label.GATE_MISS:
            return execution.verdict.score
        return None

    def outcome(seed: int, execution: Execution) -> SeedRun:
        verdict = execution.verdict
        return SeedRun(seed, verdict.label, verdict.score, verdict.reason)

    first = run_once(FIRST_SEED)
    first_score = score_of(first)
    if noise is None or first_score is None:
        return replace(first, seeds=(outcome(FIRST_SEED, first),))
    if baseline:
        seeds = list(range(FIRST_SEED + 1, noise.baseline_runs))
    else:
        margin = noise.nominate_k * noise_sd
        if not nominated(first_score, best_runs, direction, margin=margin):
            return replace(first, seeds=(outcome(FIRST_SEED, first),))
        nominate()
        seeds = fresh_seeds(noise.confirm_runs, used={FIRST_SEED, *best_seeds})
    executions, outcomes = [first], [outcome(FIRST_SEED, first)]
    for seed in seeds:
        more = run_once(seed)
        outcomes.append(outcome(seed, more))
        if score_of(more) is None:  # one failed seed fails the trial; the scored ones stay
            reason = f"seed {seed}: {more.verdict.reason}"
            scored = tuple(s for e in executions if (s := score_of(e)) is not None)
            failed = replace(
                more,
                verdict=replace(more.verdict, reason=reason),
                runs=scored,
                seeds=tuple(outcomes),
            )
            spent = failed.plus_time_of(executions)
            return (
                spent if baseline else replace(spent, confirm_s=_seconds([more, *executions[1:]]))
            )
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
    folded = replace(
        first,
        verdict=verdict,
        runs=runs,
        confirmation=confirmation,
        seeds=tuple(outcomes),
        confirm_s=0.0 if baseline else _seconds(executions[1:]),
    )
    return folded.plus_time_of(executions[1:])


def _seconds(executions: Iterable[Execution]) -> float:
    return sum(e.train_s + e.eval_s for e in executions)


def _metric(execution: Execution, name: str) -> float:
    assert execution.evaluation is not None and execution.evaluation.metrics is not None
    value, _ = metric_value(execution.evaluation.metrics, name)
    return float("nan") if value is None else value

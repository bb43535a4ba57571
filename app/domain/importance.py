"""Which declared knobs mattered to the score: Optuna's PED-ANOVA over the scored trials.

PED-ANOVA (Watanabe et al., IJCAI 2023) asks how differently each param is
spread among the best trials than among all of them; it needs no surrogate
model (fANOVA would bring in scikit-learn) and is quick at a few thousand
trials. The trials become an in-memory Optuna study for the estimate only.
An estimate from a handful of trials is noise, so below MIN_TRIALS none is given.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

from app.domain.states import Direction

optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created" per page

MIN_TRIALS = 20  # scored trials with params, fewer gives no estimate
Value = float | int | str | bool


@dataclass(frozen=True)
class Importance:
    name: str
    share: float  # of the total importance, 0..1; the shares sum to 1


def importances(
    rows: Sequence[tuple[Mapping[str, Value], float]], names: Sequence[str], direction: Direction
) -> list[Importance] | None:
    """Each param's share of the importance, largest first; None below MIN_TRIALS rows.

    A param that never varied gets no share; so does one with no spread among the rows.
    """
    usable = [(params, score) for params, score in rows if math.isfinite(score)]
    if len(usable) < MIN_TRIALS:
        return None
    spaces = {name: _space([p[name] for p, _ in usable if name in p]) for name in names}
    varied = {name: space for name, space in spaces.items() if space is not None}
    if not varied:
        return []
    study = optuna.create_study(
        direction="maximize" if direction.higher_is_better else "minimize",
        storage=optuna.storages.InMemoryStorage(),
    )
    study.add_trials(
        optuna.trial.create_trial(
            params={name: _as(varied[name], params[name]) for name in varied if name in params},
            distributions={name: varied[name] for name in varied if name in params},
            value=score,
        )
        for params, score in usable
    )
    with warnings.catch_warnings():
        # "regime" and equal-importance notices concern inputs this module already shapes.
        warnings.simplefilter("ignore")
        found = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator())
    shares = [Importance(name, float(share)) for name, share in found.items()]
    return sorted(shares, key=lambda item: (-item.share, item.name))


def _as(space: BaseDistribution, value: Value) -> Value:
    return str(value) if isinstance(space, CategoricalDistribution) else value


def _space(values: list[Value]) -> BaseDistribution | None:
    """The param's range as seen (a number's low..high, a choice's values); None if fixed."""
    if len(set(map(repr, values))) < 2:
        return None
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(numbers) < len(values):
        return CategoricalDistribution(sorted({str(v) for v in values}))
    if all(isinstance(v, int) for v in numbers):
        return IntDistribution(int(min(numbers)), int(max(numbers)))
    return FloatDistribution(float(min(numbers)), float(max(numbers)))

"""Is a candidate really better than the best, or is it seed noise? A pure decision.

In the paper many "new bests" were smaller than the spread between seeds of
the same recipe. Here the baseline runs K seeds, which measures that spread;
a candidate that beats the best once is re-run on fresh seeds (the first
run only nominates it: it was selected for being high, so it is biased), and
is kept only if the difference of the means clears the noise:

- `spread`: by more than `k` standard errors of that difference, computed
  from the measured spread: `k * sd * sqrt(1/n_candidate + 1/n_best)`;
- `welch`: by a one-sided Welch t-test at level `alpha` (when both sides
  have at least two runs; otherwise the spread rule decides).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum

from app.domain.states import Direction

CONTINUED_FRACTION_STEPS = 200
EPSILON = 3e-14


class NoiseRule(StrEnum):
    SPREAD = "spread"
    WELCH = "welch"


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def spread(values: Sequence[float]) -> float:
    """The sample standard deviation (0 for fewer than two values)."""
    if len(values) < 2:
        return 0.0
    centre = mean(values)
    return math.sqrt(sum((v - centre) ** 2 for v in values) / (len(values) - 1))


def beats(
    candidate: Sequence[float],
    best: Sequence[float],
    *,
    noise_sd: float,
    direction: Direction,
    rule: NoiseRule = NoiseRule.SPREAD,
    k: float = 2.5,
    alpha: float = 0.02,
) -> bool:
    """Whether `candidate`'s runs beat `best`'s by more than the noise allows."""
    gain = direction.gain(mean(candidate), mean(best))
    if gain <= 0:
        return False
    if rule is NoiseRule.WELCH and len(candidate) >= 2 and len(best) >= 2:
        return welch_one_sided_p(candidate, best, direction=direction) < alpha
    margin = k * noise_sd * math.sqrt(1 / len(candidate) + 1 / len(best))
    return gain > margin


def welch_one_sided_p(a: Sequence[float], b: Sequence[float], *, direction: Direction) -> float:
    """P-value of "mean(a) is better than mean(b)" under Welch's unequal-variance t-test."""
    var_a, var_b = spread(a) ** 2 / len(a), spread(b) ** 2 / len(b)
    se = math.sqrt(var_a + var_b)
    diff = direction.gain(mean(a), mean(b))
    if se == 0:
        return 0.0 if diff > 0 else 1.0
    t = diff / se
    dof = (var_a + var_b) ** 2 / (var_a**2 / (len(a) - 1) + var_b**2 / (len(b) - 1) or EPSILON)
    return student_t_sf(t, dof)


def student_t_sf(t: float, dof: float) -> float:
    """P(T > t) for Student's t with `dof` degrees of freedom."""
    x = dof / (dof + t * t)
    tail = 0.5 * regularized_beta(x, dof / 2, 0.5)
    return tail if t > 0 else 1.0 - tail


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b) by its continued fraction (Numerical Recipes, betacf)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(x, a, b) / a
    return 1.0 - front * _beta_fraction(1 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float) -> float:
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > EPSILON else EPSILON)
    result = d
    for m in range(1, CONTINUED_FRACTION_STEPS):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > EPSILON else EPSILON)
            c = 1.0 + numerator / c
            c = c if abs(c) > EPSILON else EPSILON
            result *= d * c
        if abs(d * c - 1.0) < EPSILON:
            break
    return result

"""Which scored trial becomes the new best: the keep rule, as pure functions.

Without a noise spec a strict improvement (by the metric's direction) is
kept. With one, the first run only nominates a candidate (it was selected
for being high, so it is biased) and its fresh-seed confirmation runs must
beat the best's runs past the measured noise floor (`app.domain.noise.beats`).
A trial that finished before the baseline was kept provisionally; it stays
kept only if it strictly beats the baseline, and never under a noise spec,
whose floor was not measured when it ran.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.domain.noise import beats, mean
from app.domain.spec import NoiseSpec
from app.domain.states import Direction


def nominated(
    first: float, best_runs: Sequence[float], direction: Direction, *, margin: float = 0.0
) -> bool:
    """Whether a candidate's first run earns it confirmation seeds: it beats the best's
    mean by more than `margin` (in the metric's units), so confirmation budget goes to
    real candidates and not to every lucky draw."""
    return bool(best_runs) and direction.gain(first, mean(best_runs)) > margin


def keeps(
    score: float,
    *,
    best_score: float | None,
    best_runs: Sequence[float],
    confirmation: Sequence[float],
    noise: NoiseSpec | None,
    noise_sd: float,
    direction: Direction,
) -> bool:
    """Whether a scored trial becomes the new best (`best_score` None: there is none yet)."""
    if best_score is None:
        return True
    if noise is None:
        return direction.better(score, best_score)
    return bool(confirmation) and beats(
        confirmation,
        best_runs or [best_score],
        noise_sd=noise_sd,
        direction=direction,
        rule=noise.rule,
        k=noise.k,
        alpha=noise.alpha,
    )


def survives_baseline(
    score: float, baseline: float, *, noise: NoiseSpec | None, direction: Direction
) -> bool:
    """Whether a trial kept before the baseline was scored stays kept once it is."""
    return noise is None and direction.better(score, baseline)

"""Which kept trial the next proposal builds on: a pure choice over scored candidates.

The default is the paper's best-so-far ratchet: every proposal starts from the
current best, so gains compound and nobody builds on a discarded idea. A
tournament (best of k random kept trials) trades some of that pressure for
diversity when the ratchet stalls. Ties go to the earlier trial, so the
choice is reproducible for a given seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from random import Random

from app.domain.states import Direction

TOURNAMENT_SIZE = 3


class ParentSelection(StrEnum):
    RATCHET = "ratchet"
    TOURNAMENT = "tournament"


@dataclass(frozen=True)
class Candidate:
    """A kept (label ok) trial; `number` orders trials within their search."""

    trial_id: int
    number: int
    score: float


def best_of(candidates: Sequence[Candidate], direction: Direction) -> Candidate | None:
    return min(candidates, key=lambda c: (direction.rank(c.score), c.number), default=None)


def select_parent(
    candidates: Sequence[Candidate],
    *,
    fallback: int,
    direction: Direction,
    strategy: ParentSelection,
    rng: Random,
) -> int:
    """The parent trial's id; `fallback` (the baseline) when nothing is kept yet."""
    if strategy is ParentSelection.TOURNAMENT and len(candidates) > TOURNAMENT_SIZE:
        candidates = rng.sample(list(candidates), TOURNAMENT_SIZE)
    best = best_of(candidates, direction)
    return fallback if best is None else best.trial_id

"""Parent choice: the ratchet builds on the best; a tournament on the best of a sample."""

from __future__ import annotations

from random import Random

from app.domain.selection import Candidate, ParentSelection, select_parent
from app.domain.states import Direction

KEPT = [Candidate(10, 1, 0.5), Candidate(11, 2, 0.7), Candidate(12, 3, 0.7), Candidate(13, 4, 0.6)]


def choose(direction: Direction, strategy: ParentSelection, seed: int = 0) -> int:
    return select_parent(KEPT, fallback=1, direction=direction, strategy=strategy, rng=Random(seed))


def test_the_ratchet_takes_the_best_and_the_earlier_of_a_tie() -> None:
    assert choose(Direction.MAXIMIZE, ParentSelection.RATCHET) == 11
    assert choose(Direction.MINIMIZE, ParentSelection.RATCHET) == 10


def test_with_nothing_kept_the_baseline_is_the_parent() -> None:
    chosen = select_parent(
        [],
        fallback=1,
        direction=Direction.MAXIMIZE,
        strategy=ParentSelection.RATCHET,
        rng=Random(0),
    )

    assert chosen == 1


def test_a_tournament_sometimes_builds_on_a_trial_that_is_not_the_best() -> None:
    chosen = {choose(Direction.MAXIMIZE, ParentSelection.TOURNAMENT, seed) for seed in range(30)}

    assert 11 in chosen and chosen - {11}
    assert chosen <= {11, 12, 13}  # the worst of four never wins a 3-way tournament

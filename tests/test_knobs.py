"""The control arm moves exactly one declared knob to a new in-range value.

Invariant: only the captured value changes, numeric values stay within
[low, high] (log-scaled knobs too), a choice knob switches to another
choice, and the same seed gives the same move.
"""

from __future__ import annotations

import re
from random import Random

import pytest

from app.domain.edits import MalformedEdit, render_diff
from app.domain.knobs import mutate
from app.domain.roster import Knob

TRAIN = "LR = 0.1  # learning rate\nBATCH = 64\nOPT = 'adam'\n"
LR = Knob.model_validate(
    {
        "name": "lr",
        "file": "train.py",
        "pattern": r"^LR = (\S+)",
        "kind": "float",
        "low": 0.001,
        "high": 1.0,
        "log": True,
    }
)
BATCH = Knob.model_validate(
    {
        "name": "batch",
        "file": "train.py",
        "pattern": r"^BATCH = (\d+)$",
        "kind": "int",
        "low": 16,
        "high": 256,
    }
)
OPT = Knob.model_validate(
    {
        "name": "opt",
        "file": "train.py",
        "pattern": r"^OPT = '(\w+)'$",
        "kind": "choice",
        "choices": ["adam", "sgd", "lion"],
    }
)


def read(path: str) -> str | None:
    return TRAIN if path == "train.py" else None


def apply(knob: Knob, seed: int) -> str:
    draft = mutate([knob], read, Random(seed))
    (edit,) = draft.edits
    render_diff(draft.edits, read)  # it is a valid, non-empty edit
    return TRAIN.replace(edit.search, edit.replace)  # type: ignore[union-attr]


@pytest.mark.parametrize("seed", range(20))
def test_a_numeric_knob_moves_within_its_range_and_nothing_else_changes(seed: int) -> None:
    lr_text = apply(LR, seed)
    batch_text = apply(BATCH, seed)

    lr = float(re.search(r"^LR = (\S+)", lr_text, re.M).group(1))  # type: ignore[union-attr]
    batch = int(re.search(r"^BATCH = (\d+)", batch_text, re.M).group(1))  # type: ignore[union-attr]
    assert 0.001 <= lr <= 1.0 and lr != 0.1
    assert 16 <= batch <= 256 and batch != 64
    assert lr_text.replace(re.search(r"LR = \S+", lr_text).group(0), "LR = 0.1") == TRAIN  # type: ignore[union-attr]
    assert "# learning rate" in lr_text


def test_a_choice_knob_switches_to_another_choice() -> None:
    values = {re.search(r"OPT = '(\w+)'", apply(OPT, seed)).group(1) for seed in range(20)}  # type: ignore[union-attr]

    assert values == {"sgd", "lion"}


def test_the_same_seed_makes_the_same_move() -> None:
    assert apply(LR, 7) == apply(LR, 7)
    assert mutate([LR, BATCH, OPT], read, Random(3)) == mutate([LR, BATCH, OPT], read, Random(3))


def test_a_knob_whose_pattern_matches_nothing_is_refused() -> None:
    gone = LR.model_copy(update={"pattern": r"^ETA = (\S+)"})

    with pytest.raises(MalformedEdit, match="matches nothing"):
        mutate([gone], read, Random(0))

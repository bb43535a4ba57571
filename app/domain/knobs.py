"""The control arm's move: change one declared knob of the parent recipe at random.

No model, no lineage beyond the parent: it is what the specialists must beat
to show that reading the lineage is worth its tokens. Numeric knobs move by a
Gaussian step (in log space for `log` knobs) of a fifth of their range and
are clipped into it; choice knobs switch to another choice. Pure: the parent's
files come in, a search/replace edit goes out, the RNG is passed in.

A knob is usable when its pattern matches exactly once in its file (twice
would leave which one moves to chance) and a numeric knob's value reads as a
number; `locate` is that rule, for each move and for the check at submit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import islice
from random import Random

from app.domain.edits import Draft, MalformedEdit, Replace
from app.domain.regex import Match, compile_linear
from app.domain.roster import AgentSpec, Knob, KnobKind

STEP_FRACTION = 0.2  # standard deviation of a move, as a fraction of the knob's range
MAX_DRAWS = 20  # a numeric draw that rounds back to the current value is redrawn


def mutate(knobs: Sequence[Knob], read: Callable[[str], str | None], rng: Random) -> Draft:
    """One knob moved to a new value, as a draft ready for `render_diff`."""
    knob = rng.choice(list(knobs))
    content = read(knob.file)
    if content is None:
        raise MalformedEdit(f"knob {knob.name}: file {knob.file!r} does not exist")
    match, current = locate(knob, content)
    new = _new_value(knob, current, rng)
    line_start = content.rfind("\n", 0, match.start()) + 1
    line_end = content.find("\n", match.end())
    line = content[line_start : len(content) if line_end < 0 else line_end]
    start, end = match.start(1) - line_start, match.end(1) - line_start
    edit = Replace(knob.file, line, line[:start] + new + line[end:])
    return Draft(f"control: set {knob.name} from {current} to {new}", (edit,))


def locate(knob: Knob, content: str) -> tuple[Match, str]:
    """The one match of the knob's pattern in `content` and the value it captures.

    Raises `MalformedEdit` saying why there is none.
    """
    found = list(islice(compile_linear(knob.pattern, multiline=True).finditer(content), 2))
    if len(found) != 1:
        where = "matches nothing" if not found else "matches more than once"
        raise MalformedEdit(f"knob {knob.name}: pattern {knob.pattern!r} {where} in {knob.file}")
    current = found[0].group(1)
    if current is None:
        raise MalformedEdit(f"knob {knob.name}: the group of {knob.pattern!r} captures nothing")
    if knob.kind is not KnobKind.CHOICE:
        _number(knob, current)
    return found[0], current


def _number(knob: Knob, current: str) -> float:
    try:
        return float(current)
    except ValueError as error:
        raise MalformedEdit(f"knob {knob.name}: {current!r} is not a number") from error


def _new_value(knob: Knob, current: str, rng: Random) -> str:
    if knob.kind is KnobKind.CHOICE:
        return rng.choice([choice for choice in knob.choices if choice != current])
    assert knob.low is not None and knob.high is not None  # the spec guarantees a range
    value = _number(knob, current)
    for _ in range(MAX_DRAWS):
        text = _format(knob, _step(knob, value, knob.low, knob.high, rng))
        if text != current:
            return text
    raise MalformedEdit(f"knob {knob.name}: no different value found near {current}")


def _step(knob: Knob, value: float, low: float, high: float, rng: Random) -> float:
    if knob.log:
        lo, hi = math.log(low), math.log(high)
        moved = math.log(min(max(value, low), high)) + rng.gauss(0, STEP_FRACTION * (hi - lo))
        return math.exp(min(max(moved, lo), hi))
    return min(max(value + rng.gauss(0, STEP_FRACTION * (high - low)), low), high)


def _format(knob: Knob, value: float) -> str:
    if knob.kind is KnobKind.INT:
        return str(round(value))
    return f"{value:.4g}"


def declared(agents: Sequence[AgentSpec]) -> list[Knob]:
    """Every knob the roster declares, once each by name, in roster order."""
    seen: dict[str, Knob] = {}
    for agent in agents:
        for knob in agent.knobs:
            seen.setdefault(knob.name, knob)
    return list(seen.values())


def knob_values(knobs: Sequence[Knob], read: Callable[[str], str | None]) -> dict[str, float | str]:
    """Each knob's value in a recipe, as a number (a choice as its text): the trial's params,
    whoever edited it. A knob its file no longer holds once is left out."""
    values: dict[str, float | str] = {}
    for knob in knobs:
        content = read(knob.file)
        if content is None:
            continue
        try:
            _, current = locate(knob, content)
        except MalformedEdit:
            continue
        values[knob.name] = current if knob.kind is KnobKind.CHOICE else float(current)
    return values

"""Colours of the dashboard, keyed by the domain's own enums.

`LABEL_COLOURS` covers every `Label` (a test fails when one is added without
a colour), and the badge styles are generated from it, so the charts, the
legend and the badges can never drift from the enum or from each other.
"""

from __future__ import annotations

from app.domain.states import Label

LABEL_COLOURS: dict[Label, str] = {
    Label.OK: "#59a14f",
    Label.PATCH_REJECTED: "#bab0ac",
    Label.ILLEGAL_EDIT: "#b07aa1",
    Label.DUPLICATE: "#d3d3d3",
    Label.NO_SUBMISSION: "#8cd17d",
    Label.PREFLIGHT_CRASH: "#ff9d9a",
    Label.CRASH: "#e15759",
    Label.BUDGET_OVERRUN: "#f28e2b",
    Label.OOM: "#9c755f",
    Label.SIZE_FAILURE: "#edc948",
    Label.GATE_MISS: "#ff9da7",
    Label.EVALUATOR_ERROR: "#76b7b2",
    Label.INFRA_ERROR: "#4e4e4e",
}
UNKNOWN_COLOUR = "#888888"
BADGE_TINT = 0.75  # how far a badge's background is mixed towards white, so its text stays legible


def label_colour(label: str | None) -> str:
    """The colour of a label's marks; unknown text (not a label) gets a neutral grey."""
    try:
        return LABEL_COLOURS[Label(label)] if label else UNKNOWN_COLOUR
    except ValueError:
        return UNKNOWN_COLOUR


def badge_css() -> str:
    """One `.label-<name>` rule per label: a light tint of its colour behind dark text."""
    return "\n".join(
        f".label-{label.value} {{ background: {_tint(colour, BADGE_TINT)}; }}"
        for label, colour in LABEL_COLOURS.items()
    )


def _tint(colour: str, amount: float) -> str:
    channels = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return "#" + "".join(f"{round(c + (255 - c) * amount):02x}" for c in channels)

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
# Agents' colours: hues no label uses, so an agent's dot never reads as an outcome.
AGENT_COLOURS = (
    "#1f77b4", "#17becf", "#6a3d9a", "#2ca02c", "#08306b",
    "#c51b7d", "#7f7f00", "#005f5f", "#9467bd", "#3182bd",
)  # fmt: skip
BASELINE_COLOUR = "#333333"


def agent_colours(agents: list[str]) -> dict[str, str]:
    """Each agent's colour, in roster order, and the baseline's."""
    colours = {name: AGENT_COLOURS[i % len(AGENT_COLOURS)] for i, name in enumerate(agents)}
    colours["baseline"] = BASELINE_COLOUR
    return colours


BADGE_TINT = 0.75  # how far a badge's background is mixed towards white, so its text stays legible


def label_colour(label: str | None) -> str:
    """The colour of a label's marks; unknown text (not a label) gets a neutral grey."""
    try:
        return LABEL_COLOURS[Label(label)] if label else UNKNOWN_COLOUR
    except ValueError:
        return UNKNOWN_COLOUR


MARK_CONTRAST = 3.0  # WCAG's least for marks that carry meaning, against the white chart


def mark_colour(label: str | None) -> str:
    """A label's colour darkened until it stands out from white by MARK_CONTRAST: the
    failure marks drawn in the pale ones (duplicate, size_failure) could not be seen."""
    colour = label_colour(label)
    while contrast(colour, "#ffffff") < MARK_CONTRAST:
        colour = _tint(colour, -0.08)
    return colour


def contrast(first: str, second: str) -> float:
    """WCAG's contrast ratio of two colours, 1 to 21."""
    lighter, darker = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def _luminance(colour: str) -> float:
    def linear(channel: int) -> float:
        value = channel / 255
        return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4

    red, green, blue = (linear(int(colour[i : i + 2], 16)) for i in (1, 3, 5))
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def badge_css() -> str:
    """One `.label-<name>` rule per label: a light tint of its colour behind dark text."""
    return "\n".join(
        f".label-{label.value} {{ background: {_tint(colour, BADGE_TINT)}; }}"
        for label, colour in LABEL_COLOURS.items()
    )


def _tint(colour: str, amount: float) -> str:
    """Mixed towards white by `amount` (0 to 1), or towards black when it is negative."""
    channels = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    target = 255 if amount >= 0 else 0
    return "#" + "".join(f"{round(c + (target - c) * abs(amount)):02x}" for c in channels)

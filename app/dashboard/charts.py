"""Charts as plain SVG, drawn on the server from already-aggregated data.

No chart library and no JavaScript: the pages render complete without
scripts, work offline, and cost the same at 100 trials or 100k, because the
inputs are buckets (at most a few hundred per series) rather than trials.
Pure functions: data in, SVG markup out (escaped; node links are ours), as
`Markup`: templates insert it as is, and a page's JSON leaves it out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

from app.dashboard import tree
from app.dashboard.palette import LABEL_COLOURS, label_colour, mark_colour
from app.domain.importance import Importance
from app.domain.states import Decision, Direction

WIDTH, HEIGHT = 900, 300
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 56, 16, 16, 36
FAIL_BAND = 14  # px at the bottom of the progress chart where failures are marked
TREE_COLUMN, TREE_ROW = 18, 30  # px per leaf column and per generation in the lineage tree
TREE_COLUMN_MAX = 70  # px between neighbouring leaves at most, in a small tree
NUMBERED_NODES = 60  # up to this many nodes, every node shows its trial number
HOVER_CHARS = 160  # of a hypothesis, in a node's hover text


@dataclass(frozen=True)
class Bucket:
    """Finished trials with numbers in [first, last], of one agent and one label."""

    first: int
    last: int
    agent: str  # "baseline" for trial 0
    label: str
    count: int
    best: float | None  # best score among them (by direction), ok trials only


@dataclass(frozen=True)
class Node:
    trial_id: int
    number: int
    parent_id: int | None
    agent: str
    label: str | None
    score: float | None
    hypothesis: str = ""
    decision: str | None = None


def progress_chart(
    buckets: Sequence[Bucket],
    *,
    direction: Direction,
    colours: Mapping[str, str],
    last_number: int,
) -> Markup:
    """Best-so-far step line over trial number, bucket bests coloured by agent, failures below."""
    scored = sorted((b for b in buckets if b.label == "ok" and b.best is not None),
                    key=lambda b: b.first)  # fmt: skip
    parts = [_frame("progress", "Best so far over trials")]
    if not scored:
        parts.append(_note("no scored trials yet"))
        return _svg(parts)
    values = [b.best for b in scored if b.best is not None]
    low, high = min(values), max(values)
    if high == low:
        low, high = low - 0.5 * (abs(low) or 1), high + 0.5 * (abs(high) or 1)
    x = _scale(0, max(last_number, 1), PAD_LEFT, WIDTH - PAD_RIGHT)
    y = _scale(low, high, HEIGHT - PAD_BOTTOM - FAIL_BAND, PAD_TOP)
    parts.append(_axes(low, high, last_number, y))
    steps = " ".join(
        f"{x(n):.1f},{y(v):.1f}" for n, v in best_so_far(scored, direction, last_number)
    )
    parts.append(f'<polyline class="best" points="{steps}"/>')
    for bucket in scored:
        assert bucket.best is not None
        title = (
            f"trials {bucket.first}-{bucket.last} by {bucket.agent}: best {bucket.best:.6g} "
            f"of {bucket.count}"
        )
        parts.append(
            f'<circle class="point" cx="{x((bucket.first + bucket.last) / 2):.1f}" '
            f'cy="{y(bucket.best):.1f}" r="3.5" fill="{colours.get(bucket.agent, "#888")}">'
            f"<title>{escape(title)}</title></circle>"
        )
    band = HEIGHT - PAD_BOTTOM - FAIL_BAND / 2
    failed: dict[int, dict[str, int]] = {}  # one mark per stretch of trials, whatever the agent
    for bucket in buckets:
        if bucket.label != "ok":
            labels = failed.setdefault(bucket.first, {})
            labels[bucket.label] = labels.get(bucket.label, 0) + bucket.count
    span = {bucket.first: bucket.last for bucket in buckets}
    for first, labels in sorted(failed.items()):
        worst = max(labels, key=lambda label: labels[label])
        title = f"trials {first}-{span[first]}: " + ", ".join(
            f"{count} {label}" for label, count in sorted(labels.items())
        )
        cx = x((first + span[first]) / 2)
        parts.append(
            f'<path class="fail" d="M{cx - 3:.1f},{band - 3:.1f}l6,6m0,-6l-6,6" '
            f'stroke="{mark_colour(worst)}">'
            f"<title>{escape(title)}</title></path>"
        )
    return _svg(parts)


def best_so_far(
    buckets: Sequence[Bucket], direction: Direction, last_number: int
) -> list[tuple[float, float]]:
    """The corners of the best-so-far step line, (trial number, best), to `last_number`."""
    scored = sorted((b for b in buckets if b.label == "ok" and b.best is not None),
                    key=lambda b: b.first)  # fmt: skip
    best: float | None = None
    corners: list[tuple[float, float]] = []
    for bucket in scored:
        assert bucket.best is not None
        if best is None or direction.better(bucket.best, best):
            if best is not None:
                corners.append((bucket.first, best))
            best = bucket.best
            corners.append((bucket.first, best))
    if best is not None:
        corners.append((last_number, best))
    return corners


@dataclass(frozen=True)
class Series:
    """One search's best-so-far line in a comparison."""

    name: str
    colour: str
    corners: list[tuple[float, float]]


def comparison_chart(series: Sequence[Series]) -> Markup:
    """Several searches' best-so-far lines on shared axes, a colour each, with a legend."""
    parts = [_frame("comparison-chart", "Best so far, every search on the same axes")]
    values = [v for line in series for _, v in line.corners]
    if not values:
        parts.append(_note("no scored trials yet"))
        return _svg(parts)
    low, high = min(values), max(values)
    if high == low:
        low, high = low - 0.5 * (abs(low) or 1), high + 0.5 * (abs(high) or 1)
    last = max(int(n) for line in series for n, _ in line.corners)
    x = _scale(0, max(last, 1), PAD_LEFT, WIDTH - PAD_RIGHT)
    y = _scale(low, high, HEIGHT - PAD_BOTTOM, PAD_TOP)
    parts.append(_axes(low, high, last, y))
    for index, line in enumerate(series):
        points = " ".join(f"{x(n):.1f},{y(v):.1f}" for n, v in line.corners)
        parts.append(
            f'<polyline class="series" points="{points}" stroke="{line.colour}" fill="none" '
            f'stroke-width="2"><title>{escape(line.name)}</title></polyline>'
            f'<text x="{PAD_LEFT + 8}" y="{PAD_TOP + 12 + 14 * index}" fill="{line.colour}">'
            f"{escape(line.name)}</text>"
        )
    return _svg(parts)


@dataclass(frozen=True)
class Point:
    """A scored trial in the parameter space."""

    trial_id: int
    number: int
    params: Mapping[str, float | str]
    score: float


def _positions(points: Sequence[Point], name: str) -> tuple[dict[float | str, float], list[str]]:
    """Each value of one param on a 0..1 axis (numbers by value, choices by name), and the
    tick labels (low, high; or every choice)."""
    values = [p.params[name] for p in points if name in p.params]
    numbers = [v for v in values if isinstance(v, int | float)]
    if numbers and len(numbers) == len(values):
        low, high = min(numbers), max(numbers)
        span = (high - low) or 1.0
        return {v: (v - low) / span for v in numbers}, [f"{low:.4g}", f"{high:.4g}"]
    names = sorted({str(v) for v in values})
    step = 1 / max(len(names) - 1, 1)
    return {v: names.index(str(v)) * step for v in values}, names


def parallel_coordinates(points: Sequence[Point], params: Sequence[str],
                         direction: Direction) -> Markup:  # fmt: skip
    """One line per scored trial across an axis per param and the score; the better the
    score, the darker the line, the best in the accent colour."""
    parts = [_frame("parallel", "Params and score, one line per scored trial", linked=True)]
    if not points or not params:
        parts.append(_note("no scored trial with params yet"))
        return _svg(parts)
    axes = [*params, "score"]
    scores = [p.score for p in points]
    best = direction.best(scores)
    low, high = min(scores), max(scores)
    x = _scale(0, max(len(axes) - 1, 1), PAD_LEFT + 20, WIDTH - PAD_RIGHT - 20)
    y = _scale(0, 1, HEIGHT - PAD_BOTTOM, PAD_TOP)
    places = {name: _positions(points, name) for name in params}
    for index, name in enumerate(axes):
        ticks = [f"{low:.4g}", f"{high:.4g}"] if name == "score" else places[name][1]
        parts.append(
            f'<line class="axis" x1="{x(index):.1f}" y1="{PAD_TOP}" x2="{x(index):.1f}" '
            f'y2="{HEIGHT - PAD_BOTTOM}"/><text x="{x(index):.1f}" y="{HEIGHT - 8}" '
            f'text-anchor="middle">{escape(name)}</text>'
            f'<text x="{x(index) + 4:.1f}" y="{HEIGHT - PAD_BOTTOM:.1f}">{escape(ticks[0])}</text>'
            f'<text x="{x(index) + 4:.1f}" y="{PAD_TOP + 10}">{escape(ticks[-1])}</text>'
        )
    span = (high - low) or 1.0
    for point in sorted(points, key=lambda p: direction.rank(p.score), reverse=True):
        goodness = direction.gain(point.score, low if direction.higher_is_better else high) / span
        corners = [
            (x(i), y(places[name][0].get(point.params.get(name, ""), 0.5)))
            for i, name in enumerate(params)
        ] + [(x(len(params)), y((point.score - low) / span))]
        colour = "#0969da" if point.score == best else _tint_grey(goodness)
        title = f"trial {point.number}: score {point.score:.6g}; " + ", ".join(
            f"{name} {point.params[name]}" for name in params if name in point.params
        )
        parts.append(
            f'<a href="/trials/{point.trial_id}"><polyline class="param-line" fill="none" '
            f'stroke="{colour}" stroke-width="{2.5 if point.score == best else 1.2}" points="'
            + " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in corners)
            + f'"><title>{escape(title)}</title></polyline></a>'
        )
    return _svg(parts)


def param_scatter(points: Sequence[Point], name: str) -> Markup:
    """Score against one param, a dot per scored trial that has it."""
    having = [p for p in points if name in p.params]
    parts = [_frame(f"scatter-{name}", f"Score against {name}", linked=True)]
    if not having:
        parts.append(_note(f"no scored trial has {name} yet"))
        return _svg(parts)
    place, ticks = _positions(having, name)
    scores = [p.score for p in having]
    low, high = min(scores), max(scores)
    if high == low:
        low, high = low - 0.5 * (abs(low) or 1), high + 0.5 * (abs(high) or 1)
    x = _scale(0, 1, PAD_LEFT + 10, WIDTH - PAD_RIGHT - 10)
    y = _scale(low, high, HEIGHT - PAD_BOTTOM, PAD_TOP)
    bottom = HEIGHT - PAD_BOTTOM
    parts.append(
        f'<line class="axis" x1="{PAD_LEFT}" y1="{PAD_TOP}" x2="{PAD_LEFT}" y2="{bottom}"/>'
        f'<line class="axis" x1="{PAD_LEFT}" y1="{bottom}" x2="{WIDTH - PAD_RIGHT}" y2="{bottom}"/>'
        + "".join(f'<text x="{PAD_LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.4g}</text>'
                  for v in (low, high))
        + f'<text x="{PAD_LEFT + 10}" y="{bottom + 18}">{escape(ticks[0])}</text>'
        f'<text x="{WIDTH - PAD_RIGHT - 10}" y="{bottom + 18}" text-anchor="end">'
        f"{escape(ticks[-1])}</text>"
        f'<text x="{WIDTH / 2}" y="{bottom + 18}" text-anchor="middle">{escape(name)}</text>'
    )  # fmt: skip
    for point in having:
        value = point.params[name]
        title = f"trial {point.number}: {name} {value}, score {point.score:.6g}"
        parts.append(
            f'<a href="/trials/{point.trial_id}"><circle class="point" cx="{x(place[value]):.1f}" '
            f'cy="{y(point.score):.1f}" r="3.5" fill="#0969da"><title>{escape(title)}</title>'
            "</circle></a>"
        )
    return _svg(parts)


def importance_chart(shares: Sequence[Importance]) -> Markup:
    """A bar per param, its share of the importance, largest first."""
    bar_h, gap = 22, 8
    height = PAD_TOP * 2 + max(len(shares), 1) * (bar_h + gap)
    left = 180
    parts = [
        f'<svg class="chart" id="importance" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg"><title>Param importance (PED-ANOVA)</title>'
    ]
    room = WIDTH - left - PAD_RIGHT - 60
    for row, share in enumerate(shares):
        top = PAD_TOP + row * (bar_h + gap)
        parts.append(
            f'<text x="{left - 8}" y="{top + bar_h / 2 + 4}" text-anchor="end">'
            f"{escape(share.name)}</text>"
            f'<rect class="share" x="{left}" y="{top}" width="{max(room * share.share, 1):.1f}" '
            f'height="{bar_h}" fill="#0969da"><title>{escape(share.name)}: '
            f"{100 * share.share:.1f}%</title></rect>"
            f'<text x="{left + room * share.share + 6:.1f}" y="{top + bar_h / 2 + 4}">'
            f"{100 * share.share:.1f}%</text>"
        )
    return _svg(parts)


@dataclass(frozen=True)
class MetricPoint:
    """One finished trial's value of one reported metric."""

    trial_id: int
    number: int
    agent: str
    label: str
    value: float


def metric_chart(points: Sequence[MetricPoint], name: str, colours: Mapping[str, str]) -> Markup:
    """A reported metric over trial number, a dot per trial in its agent's colour (hollow, ringed
    in the label's colour, for a trial that failed but still reported it)."""
    parts = [_frame("metric-chart", f"{name} over trials", linked=True)]
    if not points:
        parts.append(_note(f"no finished trial reported {name}"))
        return _svg(parts)
    values = [point.value for point in points]
    low, high = min(values), max(values)
    if high == low:
        low, high = low - 0.5 * (abs(low) or 1), high + 0.5 * (abs(high) or 1)
    last = max(point.number for point in points)
    x = _scale(0, max(last, 1), PAD_LEFT, WIDTH - PAD_RIGHT)
    y = _scale(low, high, HEIGHT - PAD_BOTTOM, PAD_TOP)
    parts.append(_axes(low, high, last, y))
    for point in sorted(points, key=lambda p: p.number):
        ok = point.label == "ok"
        fill = colours.get(point.agent, "#888") if ok else "#ffffff"
        stroke = "none" if ok else mark_colour(point.label)
        title = f"trial {point.number} by {point.agent} ({point.label}): {name} {point.value:.6g}"
        parts.append(
            f'<a href="/trials/{point.trial_id}"><circle class="point" cx="{x(point.number):.1f}" '
            f'cy="{y(point.value):.1f}" r="3.5" fill="{fill}" stroke="{stroke}" '
            f'stroke-width="1.5"><title>{escape(title)}</title></circle></a>'
        )
    return _svg(parts)


def _tint_grey(goodness: float) -> str:
    """A grey from light (a poor score) to near black (a good one)."""
    level = round(200 - 160 * min(max(goodness, 0.0), 1.0))
    return f"#{level:02x}{level:02x}{level:02x}"


def failure_strips(
    buckets: Sequence[Bucket], *, agents: Sequence[str], last_number: int, columns: int = 60
) -> Markup:
    """One strip per agent: for each stretch of trials, its labels stacked by count."""
    columns = min(columns, last_number + 1)
    row_h, gap = 26, 8
    height = PAD_TOP + len(agents) * (row_h + gap) + PAD_BOTTOM
    width = (last_number // columns + 1) if last_number else 1
    grid: dict[tuple[str, int], dict[str, int]] = {}
    for bucket in buckets:
        cell = grid.setdefault((bucket.agent, bucket.first // width), {})
        cell[bucket.label] = cell.get(bucket.label, 0) + bucket.count
    col_w = (WIDTH - PAD_LEFT - PAD_RIGHT) / columns
    parts = [
        f'<svg class="chart" id="failures" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg"><title>Outcomes per agent over time</title>'
    ]
    for row, agent in enumerate(agents):
        top = PAD_TOP + row * (row_h + gap)
        parts.append(
            f'<text x="{PAD_LEFT - 6}" y="{top + row_h / 2 + 4}" text-anchor="end">'
            f"{escape(agent)}</text>"
        )
        for column in range(columns):
            found = grid.get((agent, column))
            if not found:
                continue
            cell, total, offset = found, sum(found.values()), 0.0
            for label, colour in LABEL_COLOURS.items():
                count = cell.get(label, 0)
                if not count:
                    continue
                h = row_h * count / total
                first, last = column * width, column * width + width - 1
                parts.append(
                    f'<rect x="{PAD_LEFT + column * col_w:.1f}" y="{top + offset:.1f}" '
                    f'width="{max(col_w - 1, 1):.1f}" height="{h:.1f}" '
                    f'fill="{colour}"><title>trials {first}-{last}: {count} '
                    f"{label}</title></rect>"
                )
                offset += h
    return _svg(parts)


def lineage_graph(
    nodes: Sequence[Node], best_path: Sequence[int], colours: Mapping[str, str]
) -> Markup:
    """Trials as a tree (parent above child, `app.dashboard.tree`), dots coloured by agent and
    ringed by outcome, the best path bold, runs of discards folded into one "+N" mark.

    Every dot links to its trial page, a fold to the parent whose children it holds.
    """
    placed = tree.layout(nodes, best_path)
    wide = max(placed.columns * TREE_COLUMN + PAD_LEFT + PAD_RIGHT, WIDTH)
    height = PAD_TOP * 2 + max(placed.rows, 1) * TREE_ROW
    # A small tree keeps its families close (at most TREE_COLUMN_MAX apart), centred.
    step = min((wide - PAD_LEFT - PAD_RIGHT) / max(placed.columns - 1, 1), TREE_COLUMN_MAX)
    start = (wide - step * max(placed.columns - 1, 0)) / 2
    x = _scale(0, 1, start, start + step)

    def pos(trial_id: int) -> tuple[float, float]:
        return x(placed.column[trial_id]), PAD_TOP + 8 + placed.depth[trial_id] * TREE_ROW

    on_path = set(best_path)
    by_id = {node.trial_id: node for node in nodes if node.trial_id in placed.column}  # unfolded
    # Wider than the page: it keeps its size (legible) and its section scrolls.
    style = f' style="min-width:{wide}px"' if wide > WIDTH else ""
    parts = [
        f'<svg class="chart" id="lineage" viewBox="0 0 {wide} {height}" {_role(True)}{style} '
        f'xmlns="http://www.w3.org/2000/svg"><title>Lineage: each trial below its parent'
        "</title>"
    ]
    for node in by_id.values():
        x2, y2 = pos(node.trial_id)
        parent = by_id.get(node.parent_id) if node.parent_id is not None else None
        if parent is None:
            if node.parent_id is not None:  # its ancestors are older than the graph draws
                parts.append(f'<path class="edge stub" d="M{x2:.1f},{y2 - 16:.1f}V{y2:.1f}">'
                             "<title>earlier ancestors not drawn</title></path>")  # fmt: skip
            continue
        x1, y1 = pos(parent.trial_id)
        kind = "edge best" if node.trial_id in on_path and parent.trial_id in on_path else "edge"
        mid = (y1 + y2) / 2
        parts.append(
            f'<path class="{kind}" d="M{x1:.1f},{y1:.1f} C{x1:.1f},{mid:.1f} '
            f'{x2:.1f},{mid:.1f} {x2:.1f},{y2:.1f}"/>'
        )
    for fold, column, row in placed.folds:
        x1, y1 = pos(fold.parent_id)
        fx, fy = x(column), PAD_TOP + 8 + row * TREE_ROW
        outcomes = ", ".join(f"{count} {label}" for label, count in sorted(fold.labels.items()))
        title = (f"{len(fold.numbers)} discarded trials, {fold.numbers[0]}-{fold.numbers[-1]}: "
                 f"{outcomes} (open the parent for each)")  # fmt: skip
        parts.append(
            f'<path class="edge" d="M{x1:.1f},{y1:.1f} C{x1:.1f},{(y1 + fy) / 2:.1f} '
            f'{fx:.1f},{(y1 + fy) / 2:.1f} {fx:.1f},{fy:.1f}"/>'
            f'<a href="/trials/{fold.parent_id}#children" class="fold" '
            f'data-parent="{fold.parent_id}" data-count="{len(fold.numbers)}">'
            f'<rect x="{fx - 11:.1f}" y="{fy - 8:.1f}" width="22" height="16" rx="8"/>'
            f'<text class="num" x="{fx:.1f}" y="{fy + 3:.1f}" text-anchor="middle">'
            f"+{len(fold.numbers)}</text><title>{escape(title)}</title></a>"
        )
    numbered = len(nodes) <= NUMBERED_NODES
    for node in sorted(by_id.values(), key=lambda n: n.number):
        cx, cy = pos(node.trial_id)
        ok = node.label == "ok"
        fill = colours.get(node.agent, "#888") if ok or node.label is None else "#ffffff"
        stroke = "#222" if node.trial_id in on_path else label_colour(node.label)
        score = "" if node.score is None else f", score {node.score:.6g}"
        decision = f" ({node.decision})" if node.decision else ""
        title = f"trial {node.number} by {node.agent}: {node.label or 'pending'}{decision}{score}"
        if node.hypothesis:
            title += f"\n{node.hypothesis[:HOVER_CHARS]}"
        number = ""
        if numbered or node.trial_id in on_path or node.decision == Decision.KEEP:
            number = (f'<text class="num" x="{cx + 8:.1f}" y="{cy - 6:.1f}">'
                      f"{node.number}</text>")  # fmt: skip
        parts.append(
            f'<a href="/trials/{node.trial_id}" class="node" data-trial="{node.trial_id}">'
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{6 if node.trial_id in on_path else 4.5}" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="2"><title>{escape(title)}</title>'
            f"</circle>{number}</a>"
        )
    return _svg(parts)


def _svg(parts: list[str]) -> Markup:
    """The finished chart, marked safe for templates: every text in it was escaped here."""
    return Markup("".join(parts) + "</svg>")


def _frame(chart_id: str, title: str, *, linked: bool = False) -> str:
    return (
        f'<svg class="chart" id="{chart_id}" viewBox="0 0 {WIDTH} {HEIGHT}" {_role(linked)} '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    )


def _role(linked: bool) -> str:
    """A picture is an image; a chart whose marks are links is a group of them (links inside
    role=img would be hidden from assistive technology)."""
    return 'role="group"' if linked else 'role="img"'


def _note(text: str) -> str:
    return f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">{escape(text)}</text>'


def _axes(low: float, high: float, last: int, y: _Scale) -> str:
    bottom = HEIGHT - PAD_BOTTOM
    ticks = "".join(
        f'<text x="{PAD_LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.4g}</text>'
        for v in (low, (low + high) / 2, high)
    )
    return (
        f'<line class="axis" x1="{PAD_LEFT}" y1="{PAD_TOP}" x2="{PAD_LEFT}" y2="{bottom}"/>'
        f'<line class="axis" x1="{PAD_LEFT}" y1="{bottom}" x2="{WIDTH - PAD_RIGHT}" '
        f'y2="{bottom}"/>{ticks}'
        f'<text x="{PAD_LEFT}" y="{bottom + 18}">0</text>'
        f'<text x="{WIDTH - PAD_RIGHT}" y="{bottom + 18}" text-anchor="end">trial {last}</text>'
    )


class _Scale:
    def __init__(self, lo: float, hi: float, out_lo: float, out_hi: float) -> None:
        self.lo, self.span = lo, (hi - lo) or 1.0
        self.out_lo, self.out_span = out_lo, out_hi - out_lo

    def __call__(self, value: float) -> float:
        return self.out_lo + (value - self.lo) / self.span * self.out_span


def _scale(lo: float, hi: float, out_lo: float, out_hi: float) -> _Scale:
    return _Scale(lo, hi, out_lo, out_hi)

"""What each dashboard page shows, read from the store in a bounded number of queries.

Nothing here loads a search's trials whole: the charts and the leaderboard
read a few hundred buckets (`GROUP BY number // width, agent, label`) summed
from the stored blocks of settled trials (`app.store.rollup`) and the live tail,
the lineage graph the best path plus the most recent trials, the table one
keyset page. So a page costs about the same at 100k trials as at 100.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import Executable, func, select
from sqlalchemy.orm import Session

from app.dashboard.charts import HOVER_CHARS, Bucket, MetricPoint, Node, Point
from app.domain.digest import TrialNote
from app.domain.leaderboard import BASELINE_AGENT, Standing, label_counts, standings
from app.domain.spec import SearchSpec
from app.domain.states import Direction, Label, TrialStatus, can_rerun
from app.gitstore import GitStore
from app.store.health import search_warnings
from app.store.lineage import Notes
from app.store.models import Agent, Search, Trial, TrialRollup
from app.store.ordering import best_of
from app.store.rollup import BLOCK, tallies
from app.store.trials import ancestry

CHART_BUCKETS = 300  # per chart: the x resolution of the progress curve
LINEAGE_RECENT = 250  # most recent trials drawn in the lineage graph, besides the best path
LINEAGE_BEST_STEPS = 100  # latest steps of the best path drawn in the lineage graph


@dataclass(frozen=True)
class SearchView:
    search: Search
    spec: SearchSpec
    agents: list[str]
    leaderboard: list[Standing]
    buckets: list[Bucket]
    nodes: list[Node]
    best_path: list[int]
    best_path_hidden: bool  # the best path is longer than the graph draws
    last_number: int
    labels: dict[str, int] = field(default_factory=dict)
    # The top kept trials as the agents read them (`app.store.lineage`): (trial id, note).
    kept: list[tuple[int, TrialNote]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # `app.domain.health`


def search_view(session: Session, search: Search) -> SearchView:
    spec = search.search_spec
    direction = spec.evaluator.direction
    last = session.scalar(select(func.max(Trial.number)).where(Trial.search_id == search.id)) or 0
    rows = _rows(session, search, direction, last)
    names: dict[int | None, str] = {
        agent_id: name
        for agent_id, name in session.execute(
            select(Agent.id, Agent.name).where(Agent.search_id == search.id).order_by(Agent.id)
        )
    }
    shown = (
        ancestry(session, search.best_trial_id, limit=LINEAGE_BEST_STEPS)
        if search.best_trial_id
        else []
    )
    counted = tallies(session, search)
    baseline = session.scalar(
        select(Trial.score).where(Trial.search_id == search.id, Trial.number == 0)
    )
    kept = Notes(session, search.id).kept(direction, baseline)
    ids = {
        number: trial_id
        for number, trial_id in session.execute(
            select(Trial.number, Trial.id).where(
                Trial.search_id == search.id, Trial.number.in_([note.number for note in kept])
            )
        )
    }
    return SearchView(
        search=search,
        spec=spec,
        agents=[agent.name for agent in spec.agents],
        leaderboard=standings(counted, [(a.name, a.kind) for a in spec.agents]),
        buckets=[
            Bucket(
                r.first,
                min(r.last, last),
                names.get(r.agent_id, BASELINE_AGENT),
                str(r.label),
                r.count,
                r.best if r.label == Label.OK else None,
            )
            for r in rows
            if r.label is not None
        ],  # fmt: skip
        nodes=lineage_nodes(session, search.id, shown),
        best_path=shown,
        best_path_hidden=len(shown) == LINEAGE_BEST_STEPS,
        last_number=last,
        labels=label_counts(counted),
        kept=[(ids[note.number], note) for note in kept],
        warnings=search_warnings(session, search),
    )


@dataclass(frozen=True)
class _Row:
    """Trials of one bucket of numbers, one agent, one label (None: not finished)."""

    agent_id: int | None
    label: str | None
    count: int
    best: float | None
    first: int
    last: int


def _rows(session: Session, search: Search, direction: Direction, last: int) -> list[_Row]:
    """The stored blocks of settled trials (`app.store.rollup`), re-bucketed, plus the rest live."""
    width = _bucket_width(last)
    stored = search.rollup_blocks * BLOCK if width >= BLOCK else 0
    rows = _stored(session, search.id, direction, width) if stored else []
    return _merged(rows + _rollup(session, search.id, direction, width, stored), direction)


def _bucket_width(last: int) -> int:
    """The smallest power of two that draws every trial in at most CHART_BUCKETS buckets.

    A power of two, so that a bucket at least a block wide is made of whole
    stored blocks, and a search that grows changes its width only when it doubles.
    """
    return 1 << (-(-(last + 1) // CHART_BUCKETS) - 1).bit_length()


def _stored(session: Session, search_id: int, direction: Direction, width: int) -> list[_Row]:
    slot = (TrialRollup.block // (width // BLOCK)).label("slot")
    query = (
        select(
            slot,
            TrialRollup.agent_id,
            TrialRollup.label,
            func.sum(TrialRollup.count),
            best_of(TrialRollup.best, direction),
        )
        .where(TrialRollup.search_id == search_id, TrialRollup.status == TrialStatus.FINISHED)
        .group_by(slot, TrialRollup.agent_id, TrialRollup.label)
    )
    return _as_rows(session, query, width)


def _rollup(
    session: Session, search_id: int, direction: Direction, width: int, low: int
) -> list[_Row]:
    """The live aggregate of trials numbered from `low` on, unfinished ones included.

    An index-only range scan of `ix_trial_rollup`; buckets are `width` trials wide.
    """
    slot = (Trial.number // width).label("slot")
    query = (
        select(slot, Trial.agent_id, Trial.label, func.count(), best_of(Trial.score, direction))
        .where(
            Trial.search_id == search_id,
            Trial.number >= low,
            Trial.status != TrialStatus.CANCELLED,
        )
        .group_by(slot, Trial.agent_id, Trial.label)
    )
    return _as_rows(session, query, width)


def _as_rows(session: Session, query: Executable, width: int) -> list[_Row]:
    # A bucket's span comes from its slot: no min/max per group (each aggregate costs a pass).
    return [
        _Row(agent_id, label, count, score, slot * width, slot * width + width - 1)
        for slot, agent_id, label, count, score in session.execute(query)
    ]


def _merged(rows: list[_Row], direction: Direction) -> list[_Row]:
    """One row per bucket, agent and label: a bucket can straddle the stored line."""
    merged: dict[tuple[int, int | None, str | None], _Row] = {}
    for row in rows:
        key = (row.first, row.agent_id, row.label)
        seen = merged.get(key)
        merged[key] = (
            row
            if seen is None
            else replace(row, count=seen.count + row.count, best=_better(direction, seen, row))
        )
    return list(merged.values())


def _better(direction: Direction, a: _Row, b: _Row) -> float | None:
    if a.best is None or b.best is None:
        return b.best if a.best is None else a.best
    return direction.best((a.best, b.best))


def lineage_nodes(session: Session, search_id: int, best_path: list[int]) -> list[Node]:
    recent = select(Trial.id).where(Trial.search_id == search_id)
    recent_ids = set(session.scalars(recent.order_by(Trial.number.desc()).limit(LINEAGE_RECENT)))
    wanted = recent_ids | set(best_path)
    parents = set(session.scalars(select(Trial.parent_id).where(Trial.id.in_(wanted)))) - {None}
    rows = session.execute(
        select(
            Trial.id, Trial.number, Trial.parent_id, Agent.name, Trial.label, Trial.score,
            func.substr(Trial.hypothesis, 1, HOVER_CHARS), Trial.decision,
        )
        .outerjoin(Agent, Trial.agent_id == Agent.id)
        .where(Trial.id.in_(wanted | parents))
    )  # fmt: skip
    return [
        Node(
            trial_id,
            number,
            parent_id,
            agent or BASELINE_AGENT,
            label,
            score,
            hypothesis or "",
            decision,
        )  # fmt: skip
        for trial_id, number, parent_id, agent, label, score, hypothesis, decision in rows
    ]


@dataclass(frozen=True)
class TrialView:
    trial: Trial
    search: Search
    parent: Trial | None
    children: list[tuple[int, int, str | None]]  # (id, number, label)
    delta: float | None  # over the parent, as stored when the trial finished (by direction)
    metrics: dict[str, Any]
    rerun_refusal: str | None = None  # why it cannot be re-run; None: the page offers it


def trial_view(session: Session, trial: Trial) -> TrialView:
    search = session.get(Search, trial.search_id)
    assert search is not None
    parent = session.get(Trial, trial.parent_id) if trial.parent_id else None
    children = [
        (row.id, row.number, row.label)
        for row in session.execute(
            select(Trial.id, Trial.number, Trial.label)
            .where(Trial.parent_id == trial.id)
            .order_by(Trial.number)
            .limit(200)
        )
    ]
    refusal = can_rerun(trial.status, trial.label, trial.commit_sha is not None, search.status)
    metrics = dict(trial.metrics or {})
    return TrialView(trial, search, parent, children, trial.delta, metrics, refusal)


PARAM_POINTS = 2000  # latest scored trials drawn in the parameter charts


def param_points(session: Session, search: Search) -> list[Point]:
    """The latest scored trials that have params: where the search looked, and what it got."""
    rows = session.execute(
        select(Trial.id, Trial.number, Trial.params, Trial.score)
        .where(
            Trial.search_id == search.id,
            Trial.label == Label.OK,
            Trial.score.is_not(None),
            Trial.params.is_not(None),
        )
        .order_by(Trial.number.desc())
        .limit(PARAM_POINTS)
    )
    return [
        Point(trial_id, number, params or {}, float(score))
        for trial_id, number, params, score in rows
        if score is not None and params
    ]


@dataclass(frozen=True)
class Reported:
    """The scalars the evaluator reported for the latest finished trials, by metric name."""

    names: list[str]  # the search's own metric first, then by name
    points: dict[str, list[MetricPoint]]


def reported(session: Session, search: Search) -> Reported:
    """Every numeric scalar of the latest finished trials' metrics (an evaluator may report
    more than its metric: an accuracy beside a loss, a parameter count, a step time)."""
    rows = session.execute(
        select(Trial.id, Trial.number, Agent.name, Trial.label, Trial.metrics)
        .outerjoin(Agent, Trial.agent_id == Agent.id)
        .where(Trial.search_id == search.id, Trial.status == TrialStatus.FINISHED)
        .order_by(Trial.number.desc())
        .limit(PARAM_POINTS)
    )
    points: dict[str, list[MetricPoint]] = {}
    for trial_id, number, agent, label, metrics in rows:
        for name, value in (metrics or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                point = MetricPoint(trial_id, number, agent or BASELINE_AGENT, str(label),
                                    float(value))  # fmt: skip
                points.setdefault(name, []).append(point)
    own = search.search_spec.evaluator.metric
    return Reported(sorted(points, key=lambda name: (name != own, name)), points)


def numbers_of(session: Session, trial_ids: list[int]) -> dict[int, int]:
    """Trial id -> its number in its search, for the rows a page shows."""
    if not trial_ids:
        return {}
    rows = session.execute(select(Trial.id, Trial.number).where(Trial.id.in_(trial_ids)))
    return {trial_id: number for trial_id, number in rows}


def from_baseline(session: Session, view: TrialView) -> tuple[TrialView, str]:
    """`view` set beside the search's baseline instead of its parent, and the diff of every
    edit between them (git's, over the whole line of keeps that led to the trial)."""
    baseline = session.scalar(
        select(Trial).where(Trial.search_id == view.search.id, Trial.number == 0)
    )
    assert baseline is not None and baseline.commit_sha is not None
    score, base = view.trial.score, baseline.score
    direction = view.search.search_spec.evaluator.direction
    gain = None if score is None or base is None else direction.gain(score, base)
    beside = replace(view, parent=baseline, delta=gain)
    if view.trial.commit_sha is None:
        return beside, ""
    store = GitStore(Path(view.search.repo_path))
    return beside, store.diff(baseline.commit_sha, view.trial.commit_sha)


def diff_lines(diff: str) -> list[tuple[str, str]]:
    """(css class, line) for a unified diff, so the page can colour it without scripts."""
    classes = []
    for line in diff.splitlines():
        if line.startswith(("diff --git", "index ", "--- ", "+++ ", "new file", "deleted file")):
            kind = "meta"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "ctx"
        classes.append((kind, line))
    return classes


def metric_text(value: Any) -> str:
    """A metric as a reader wants it: six significant digits, nested values as JSON (never
    Python's repr), true and false as JSON says them."""

    def rounded(item: Any) -> Any:
        if isinstance(item, float):
            return float(f"{item:.6g}")
        if isinstance(item, dict):
            return {key: rounded(inner) for key, inner in item.items()}
        if isinstance(item, list | tuple):
            return [rounded(inner) for inner in item]
        return item

    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return json.dumps(rounded(value), default=str)
    return f"{value:.6g}" if isinstance(value, float) else str(value)

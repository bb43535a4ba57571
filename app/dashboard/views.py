"""What each dashboard page shows, read from the store in a bounded number of queries.

Nothing here loads a search's trials whole: the charts read a few hundred
aggregated buckets (`GROUP BY number // width, agent, label`), the lineage
graph the best path plus the most recent trials, the leaderboard one grouped
query, the table one keyset page. So a page costs about the same at 100k
trials as at 100.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, aliased

from app.dashboard.charts import Bucket, Node
from app.models import Agent, Search, Trial
from app.spec import SearchSpec
from app.states import Direction, Label, TrialStatus
from app.trials import ancestry

CHART_BUCKETS = 300  # per chart: the x resolution of the progress curve
LINEAGE_RECENT = 250  # most recent trials drawn in the lineage graph, besides the best path


@dataclass(frozen=True)
class AgentRow:
    name: str
    kind: str
    trials: int
    ok: int
    wins: int  # ok trials that beat their parent
    best_delta: float | None  # the largest improvement over a parent
    failure_rate: float
    tokens: int
    cost_usd: float


@dataclass(frozen=True)
class SearchView:
    search: Search
    spec: SearchSpec
    agents: list[str]
    leaderboard: list[AgentRow]
    buckets: list[Bucket]
    nodes: list[Node]
    best_path: list[int]
    last_number: int
    labels: dict[str, int] = field(default_factory=dict)


def search_view(session: Session, search: Search) -> SearchView:
    spec = SearchSpec.model_validate(search.spec)
    direction = Direction(spec.evaluator.direction)
    last = session.scalar(select(func.max(Trial.number)).where(Trial.search_id == search.id)) or 0
    best_path = ancestry(session, search.best_trial_id) if search.best_trial_id else []
    return SearchView(
        search=search,
        spec=spec,
        agents=[agent.name for agent in spec.agents],
        leaderboard=leaderboard(session, search.id, direction),
        buckets=buckets(session, search.id, direction, last),
        nodes=lineage_nodes(session, search.id, best_path),
        best_path=best_path,
        last_number=last,
        labels=label_counts(session, search.id),
    )


def buckets(session: Session, search_id: int, direction: Direction, last: int) -> list[Bucket]:
    width = max(1, -(-(last + 1) // CHART_BUCKETS))
    slot = (Trial.number // width).label("slot")
    best = func.max(Trial.score) if direction is Direction.MAXIMIZE else func.min(Trial.score)
    rows = session.execute(
        select(
            slot,
            Agent.name,
            Trial.label,
            func.count(),
            best,
            func.min(Trial.number),
            func.max(Trial.number),
        )  # fmt: skip
        .outerjoin(Agent, Trial.agent_id == Agent.id)
        .where(Trial.search_id == search_id, Trial.status == TrialStatus.FINISHED)
        .group_by(slot, Agent.name, Trial.label)
    )
    return [
        Bucket(
            first=first,
            last=last_in,
            agent=agent or "baseline",
            label=str(label),
            count=count,
            best=score if label == Label.OK else None,
        )
        for _, agent, label, count, score, first, last_in in rows
    ]


def leaderboard(session: Session, search_id: int, direction: Direction) -> list[AgentRow]:
    parent = aliased(Trial)
    delta = (
        Trial.score - parent.score
        if direction is Direction.MAXIMIZE
        else parent.score - Trial.score
    )
    improved = (Trial.label == Label.OK) & (delta > 0)
    finished = Trial.status == TrialStatus.FINISHED
    failed = finished & (Trial.label != Label.OK)
    rows = session.execute(
        select(
            Agent.name,
            Agent.kind,
            func.count(Trial.id),
            func.count(case((Trial.label == Label.OK, 1))),
            func.count(case((improved, 1))),
            func.max(case((Trial.label == Label.OK, delta))),
            func.count(case((failed, 1))),
            func.count(case((finished, 1))),
            func.coalesce(func.sum(Trial.tokens_in + Trial.tokens_out), 0),
            func.coalesce(func.sum(Trial.cost_usd), 0.0),
        )
        .outerjoin(Trial, Trial.agent_id == Agent.id)
        .outerjoin(parent, Trial.parent_id == parent.id)
        .where(Agent.search_id == search_id)
        .group_by(Agent.id, Agent.name, Agent.kind)
        .order_by(Agent.id)
    )
    return [
        AgentRow(
            name=name,
            kind=kind,
            trials=trials,
            ok=ok,
            wins=wins,
            best_delta=best_delta,
            failure_rate=(failures / done) if done else 0.0,
            tokens=int(tokens),
            cost_usd=float(cost),
        )
        for name, kind, trials, ok, wins, best_delta, failures, done, tokens, cost in rows
    ]


def lineage_nodes(session: Session, search_id: int, best_path: list[int]) -> list[Node]:
    recent = select(Trial.id).where(Trial.search_id == search_id)
    recent_ids = set(session.scalars(recent.order_by(Trial.number.desc()).limit(LINEAGE_RECENT)))
    wanted = recent_ids | set(best_path)
    parents = set(session.scalars(select(Trial.parent_id).where(Trial.id.in_(wanted)))) - {None}
    rows = session.execute(
        select(Trial.id, Trial.number, Trial.parent_id, Agent.name, Trial.label, Trial.score)
        .outerjoin(Agent, Trial.agent_id == Agent.id)
        .where(Trial.id.in_(wanted | parents))
    )
    return [
        Node(trial_id, number, parent_id, agent or "baseline", label, score)
        for trial_id, number, parent_id, agent, label, score in rows
    ]


def label_counts(session: Session, search_id: int) -> dict[str, int]:
    rows = session.execute(
        select(Trial.label, func.count())
        .where(Trial.search_id == search_id, Trial.label.is_not(None))
        .group_by(Trial.label)
    )
    return {str(label): count for label, count in rows}


@dataclass(frozen=True)
class TrialView:
    trial: Trial
    search: Search
    parent: Trial | None
    children: list[tuple[int, int, str | None]]  # (id, number, label)
    delta: float | None
    metrics: dict[str, Any]


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
    delta = None
    if trial.score is not None and parent is not None and parent.score is not None:
        delta = trial.score - parent.score
    return TrialView(trial, search, parent, children, delta, dict(trial.metrics or {}))


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

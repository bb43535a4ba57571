"""Search service: create a search from a spec, list and read them, move them through their states.

Creating a search imports the recipe into the search's own bare repo and
records trial 0, the baseline (no edit), so the lineage has its root before
any agent proposes. State changes are compare-and-set updates: two clients
pressing pause and cancel at once cannot both win.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from app import events
from app.errors import Conflict, InvalidSpec, NotFound
from app.fingerprint import directory_digest
from app.gitstore import GitStore, redact_url
from app.models import Agent, Search, Trial, TrialRollup, utcnow
from app.pagination import Page, decode_cursor, encode_cursor
from app.rollup import BLOCK
from app.spec import SearchSpec, is_url
from app.states import (
    SEARCH_TRANSITIONS,
    UNFINISHED,
    Label,
    SearchAction,
    SearchStatus,
    TrialStatus,
)

BASELINE_HYPOTHESIS = "Baseline: the recipe as submitted, with no edit."
TERMINAL = frozenset({SearchStatus.CANCELLED, SearchStatus.FINISHED})
ACTIVE = (SearchStatus.RUNNING, SearchStatus.PAUSED)


@dataclass(frozen=True)
class SearchStats:
    """Counts shown next to each search; computed for a whole page in one query."""

    trials_total: int = 0
    trials_finished: int = 0
    trials_ok: int = 0
    cost_usd: float = 0.0
    wallclock_s: float = 0.0  # sandbox time of all runs, for GPU-seconds
    baseline_score: float | None = None
    best_score: float | None = None


def check_local_paths(spec: SearchSpec, roots: Sequence[Path] = ()) -> None:
    """Local paths must be absolute (the server knows no caller's cwd) and must exist.

    With import roots set, they must also lie under one (after symlinks are
    resolved), `file://` repos included: a caller of the API must not make
    the service read whatever directory it can.
    """
    errors = []
    paths = spec.local_paths()
    if spec.repo.startswith("file://"):
        paths["repo"] = unquote(urlsplit(spec.repo).path)
    for field, path in paths.items():
        if not Path(path).is_absolute():
            message = "must be an absolute path on the server (or a git URL for repo)"
        elif not Path(path).is_dir():
            message = f"no such directory on the server: {path}"
        elif roots and not any(Path(path).resolve().is_relative_to(r.resolve()) for r in roots):
            allowed = ", ".join(str(root) for root in roots)
            message = f"{path} is outside the server's import roots ({allowed})"
        else:
            continue
        errors.append({"field": field, "message": message})
    if errors:
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise InvalidSpec(f"invalid search spec: {summary}", detail=errors)


def create_search(
    session: Session,
    spec: SearchSpec,
    *,
    repos_dir: Path,
    actor: str,
    import_roots: Sequence[Path] = (),
) -> Search:
    check_local_paths(spec, import_roots)
    stored = spec.model_copy(update={"repo": redact_url(spec.repo)}) if is_url(spec.repo) else spec
    search = Search(
        name=spec.name,
        status=SearchStatus.RUNNING,
        spec=stored.model_dump(mode="json"),
        repo_path="",
        base_commit="",
        agents=[
            Agent(name=agent.name, kind=agent.kind, spec=agent.model_dump(mode="json"))
            for agent in spec.agents
        ],
    )
    session.add(search)
    session.flush()

    # A unique suffix: SQLite may reuse the id of a search whose transaction rolled back.
    repo_path = repos_dir.resolve() / f"search-{search.id}-{uuid.uuid4().hex[:8]}.git"
    try:
        store, base_sha = GitStore.create(repo_path, spec.repo, spec.ref)
        search.repo_path, search.base_commit = str(repo_path), base_sha
        search.evaluator_digest = directory_digest(
            Path(spec.evaluator.path), Path(spec.evaluator.data) if spec.evaluator.data else None
        )
        baseline = Trial(
            search_id=search.id,
            number=0,
            hypothesis=BASELINE_HYPOTHESIS,
            commit_sha=base_sha,
            edit_hash=store.tree_of(base_sha),
            status=TrialStatus.READY,
            image=spec.image,
        )
        session.add(baseline)
        session.flush()
        store.create_ref(f"refs/trials/{baseline.id}", base_sha)
    except BaseException:
        shutil.rmtree(repo_path, ignore_errors=True)
        raise
    events.record(
        session,
        search_id=search.id,
        kind="search.created",
        actor=actor,
        data={"name": spec.name, "base_commit": base_sha},
    )
    return search


def get_search(session: Session, search_id: int) -> Search:
    search = session.get(Search, search_id)
    if search is None:
        raise NotFound(f"no search {search_id}")
    return search


def list_searches(
    session: Session, *, limit: int, cursor: str | None, status: SearchStatus | None = None
) -> Page[Search]:
    """Newest first."""
    query = select(Search)
    if status is not None:
        query = query.where(Search.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    if cursor is not None:
        (last_id,) = decode_cursor(cursor, 1)
        query = query.where(Search.id < int(last_id))
    rows = list(session.scalars(query.order_by(Search.id.desc()).limit(limit + 1)))
    next_cursor = encode_cursor([rows[limit - 1].id]) if len(rows) > limit else None
    return Page(items=rows[:limit], next_cursor=next_cursor, total=total)


def search_stats(session: Session, search_ids: list[int]) -> dict[int, SearchStats]:
    if not search_ids:
        return {}
    # Settled trials from their stored blocks (`app.rollup`), the rest live.
    stored = select(
        TrialRollup.search_id,
        func.sum(TrialRollup.count),
        func.sum(case((TrialRollup.status == TrialStatus.FINISHED, TrialRollup.count), else_=0)),
        func.sum(case((TrialRollup.label == Label.OK, TrialRollup.count), else_=0)),
        func.sum(TrialRollup.cost_usd),
        func.sum(TrialRollup.wallclock_s),
    ).where(TrialRollup.search_id.in_(search_ids))
    live = (
        select(
            Trial.search_id,
            func.count(),
            func.count(case((Trial.status == TrialStatus.FINISHED, 1))),
            func.count(case((Trial.label == Label.OK, 1))),
            func.sum(Trial.cost_usd),
            func.sum(Trial.wallclock_s),
        )
        .join(Search, Search.id == Trial.search_id)
        .where(Trial.search_id.in_(search_ids), Trial.number >= Search.rollup_blocks * BLOCK)
    )
    counts: dict[int, tuple[int, int, int, float, float]] = {}
    for query in (stored.group_by(TrialRollup.search_id), live.group_by(Trial.search_id)):
        for search_id, total, finished, ok, cost, busy in session.execute(query):
            seen = counts.get(search_id, (0, 0, 0, 0.0, 0.0))
            counts[search_id] = (
                seen[0] + int(total),
                seen[1] + int(finished or 0),
                seen[2] + int(ok or 0),
                seen[3] + float(cost or 0.0),
                seen[4] + float(busy or 0.0),
            )
    baseline = dict(
        session.execute(
            select(Trial.search_id, Trial.score).where(
                Trial.search_id.in_(search_ids), Trial.number == 0
            )
        ).all()
    )
    best = dict(
        session.execute(
            select(Search.id, Trial.score)
            .join(Trial, Search.best_trial_id == Trial.id)
            .where(Search.id.in_(search_ids))
        ).all()
    )
    return {
        search_id: SearchStats(
            *counts.get(search_id, (0, 0, 0, 0.0, 0.0)),
            baseline_score=baseline.get(search_id),
            best_score=best.get(search_id),
        )
        for search_id in search_ids
    }


def apply_action(session: Session, search_id: int, action: SearchAction, *, actor: str) -> Search:
    """Move a search by compare-and-set; an illegal move is a Conflict naming the current status."""
    sources, target = SEARCH_TRANSITIONS[action]
    now = utcnow()
    values: dict[str, object] = {"status": target, "updated_at": now}
    if target in TERMINAL:
        values["finished_at"] = now
    moved = session.execute(
        update(Search)
        .where(Search.id == search_id, Search.status.in_(sources))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        current = get_search(session, search_id).status
        raise Conflict(
            f"cannot {action} a search that is {current}",
            detail={"action": action, "status": current},
        )
    if target is SearchStatus.CANCELLED:
        session.execute(
            update(Trial)
            # Running trials too: their workers see it at the next heartbeat and kill the run.
            .where(Trial.search_id == search_id, Trial.status.in_(UNFINISHED))
            .values(status=TrialStatus.CANCELLED, finished_at=now)
            .execution_options(synchronize_session=False)
        )
    events.record(session, search_id=search_id, kind=f"search.{action}", actor=actor)
    session.flush()
    search = session.get(Search, search_id, populate_existing=True)
    assert search is not None  # the CAS above just matched it
    return search


def rerun_trial(session: Session, trial_id: int, *, actor: str) -> Trial:
    """Queue the same commit again as a new trial (to check a result against noise).

    Only a search that can still run takes it; the copy keeps the original's
    parent and agent, so it sits beside it in the lineage.
    """
    original = session.get(Trial, trial_id)
    if original is None:
        raise NotFound(f"no trial {trial_id}")
    if original.commit_sha is None or original.status != TrialStatus.FINISHED:
        raise Conflict(f"trial {trial_id} has no finished run to repeat")
    locked = session.execute(
        update(Search)
        .where(Search.id == original.search_id, Search.status.in_(ACTIVE))
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if locked.rowcount != 1:  # type: ignore[attr-defined]
        status = get_search(session, original.search_id).status
        raise Conflict(f"cannot re-run a trial of a search that is {status}")
    number = session.scalar(
        select(func.max(Trial.number)).where(Trial.search_id == original.search_id)
    )
    copy = Trial(
        search_id=original.search_id,
        number=(number or 0) + 1,
        parent_id=original.parent_id,
        agent_id=original.agent_id,
        hypothesis=f"re-run of trial {original.number}: {original.hypothesis}",
        diff=original.diff,
        commit_sha=original.commit_sha,
        edit_hash=original.edit_hash,
        status=TrialStatus.READY,
        image=original.image,
    )
    session.add(copy)
    session.flush()
    search = get_search(session, original.search_id)
    GitStore(Path(search.repo_path)).create_ref(f"refs/trials/{copy.id}", original.commit_sha)
    events.record(
        session,
        search_id=search.id,
        trial_id=copy.id,
        kind="trial.rerun",
        actor=actor,
        data={"of": original.id},
    )
    return copy

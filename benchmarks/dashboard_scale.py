"""Dashboard and API response times for a search with 100k synthetic trials.

Seeds one running search (four agents, realistic label mix, a ratcheting
best path, a small diff and log tail per trial, its last trials still
running) straight into the store, then requests
every page and JSON endpoint `--runs` times in-process (FastAPI TestClient,
so no network in the figures) and prints p50/p95 per endpoint in ms.

    PYTHONPATH=. python benchmarks/dashboard_scale.py --trials 100000
    PYTHONPATH=. python benchmarks/dashboard_scale.py --database-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import insert, select, text

from app.config import Settings
from app.db import get_engine, session_scope
from app.domain.spec import parse_spec
from app.domain.states import Label, TrialStatus
from app.server import create_app
from app.services.import_recipe import create_search
from app.store import rollup
from app.store.models import Agent, Search, Trial
from benchmarks.scratch import scratch_store
from testing.factories import NO_MODEL, make_recipe, spec_dict

BATCH = 5000
LIVE = 4  # trials still running when the dashboard is read
FAILURES = [Label.CRASH, Label.GATE_MISS, Label.BUDGET_OVERRUN, Label.OOM, Label.DUPLICATE,
            Label.ILLEGAL_EDIT, Label.PATCH_REJECTED]  # fmt: skip
DIFF = (
    "diff --git a/train.py b/train.py\n--- a/train.py\n+++ b/train.py\n"
    "@@ -1 +1 @@\n-LR = 0.1\n+LR = {lr}\n"
)


def seed(url: str, root: Path, trials: int) -> tuple[int, int]:
    """(search id, id of a trial in the middle) after inserting `trials` trials."""
    settings = Settings(database_url=url, data_dir=root / "data", llm_base_url=NO_MODEL)
    rng = random.Random(0)
    with session_scope(url) as session:
        created = create_search(
            session, parse_spec(spec_dict(make_recipe(root))), settings=settings, actor="bench"
        )
        search_id = created.search.id
        agents = list(session.scalars(select(Agent.id).where(Agent.search_id == search_id)))
        baseline = session.scalar(select(Trial).where(Trial.search_id == search_id))
        assert baseline is not None
        baseline.status, baseline.label, baseline.score = TrialStatus.FINISHED, Label.OK, 0.5
        best_id, best_score, next_id = baseline.id, 0.5, baseline.id + 1
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for first in range(1, trials, BATCH):
        rows = []
        for number in range(first, min(first + BATCH, trials)):
            live = number >= trials - LIVE  # the search is still running its last trials
            ok = rng.random() < 0.7 and not live
            score = best_score + rng.gauss(-0.03, 0.01) if ok else None  # ~1 keep in 700
            rows.append({
                "id": next_id, "search_id": search_id, "number": number, "parent_id": best_id,
                "agent_id": rng.choice(agents), "hypothesis": f"synthetic idea {number}",
                "diff": DIFF.format(lr=round(rng.uniform(0.01, 1), 4)),
                "status": TrialStatus.RUNNING if live else TrialStatus.FINISHED,
                "label": None if live else Label.OK if ok else rng.choice(FAILURES),
                "label_reason": "" if ok else "synthetic failure", "score": score,
                "delta": None if score is None else score - best_score,
                "metrics": {"val_acc": score} if ok else {}, "wallclock_s": 60.0,
                "log_tail": "epoch 1\nepoch 2\n", "tokens_in": 3000, "tokens_out": 400,
                "cost_usd": 0.002, "attempts": 1,
                "created_at": start + timedelta(seconds=number),
                "finished_at": start + timedelta(seconds=number + 60),
            })  # fmt: skip
            if score is not None and score > best_score:
                best_id, best_score = next_id, score
            next_id += 1
        with session_scope(url) as session:
            session.execute(insert(Trial), rows)
    with session_scope(url) as session:
        stored = session.get(Search, search_id)
        assert stored is not None
        stored.best_trial_id = best_id
        # What the scheduler's ticks did block by block while the search ran.
        rollup.advance(session, stored)
    return search_id, best_id


def settle(url: str) -> None:
    """What a live database has done by itself long before anyone audits 100k trials:
    statistics for the planner, and (Postgres) a vacuumed visibility map for index-only scans.
    """
    engine = get_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE trial"))
    else:
        with engine.begin() as connection:
            connection.execute(text("ANALYZE"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--database-url", help="a Postgres server (a scratch DB is made on it)")
    args = parser.parse_args()
    with scratch_store(args.database_url) as (url, root):
        started = time.perf_counter()
        search_id, trial_id = seed(url, root, args.trials)
        seeded_s = time.perf_counter() - started
        settle(url)
        report(url, root, search_id, trial_id, args, seeded_s)


def report(
    url: str, root: Path, search_id: int, trial_id: int, args: argparse.Namespace, seeded_s: float
) -> None:
    endpoints = {
        "page /": "/",
        "page search": f"/searches/{search_id}",
        "page trials": f"/searches/{search_id}/trials",
        "page trials label=crash sort=best": f"/searches/{search_id}/trials?label=crash&sort=best",
        "page trial": f"/trials/{trial_id}",
        "page compare": f"/trials/{trial_id}/compare",
        "api searches": "/api/searches",
        "api search": f"/api/searches/{search_id}",
        "api trials sort=best": f"/api/searches/{search_id}/trials?sort=best",
        "api trials agent+label": f"/api/searches/{search_id}/trials?agent=opt&label=ok",
        "api trial": f"/api/trials/{trial_id}",
        "api lineage page": f"/api/searches/{search_id}/lineage?limit=500",
    }
    backend = "postgres" if url.startswith("postgresql") else "sqlite"
    print(f"{backend}: {args.trials} trials seeded in {seeded_s:.0f}s; {args.runs} requests each")  # noqa: T201
    # No response cache: the first request after a start costs what the twentieth does.
    print(f"{'endpoint':<36} {'first':>8} {'p50':>8} {'p95':>8}")  # noqa: T201
    settings = Settings(database_url=url, data_dir=root / "data")
    with TestClient(create_app(settings)) as client:
        for name, path in endpoints.items():
            times = []
            for _ in range(args.runs):
                begun = time.perf_counter()
                response = client.get(path)
                times.append((time.perf_counter() - begun) * 1000)
                assert response.status_code == 200, path
            print(  # noqa: T201
                f"{name:<36} {times[0]:>8.1f} {_p(times, 0.5):>8.1f} {_p(times, 0.95):>8.1f}"
            )


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


if __name__ == "__main__":
    main()

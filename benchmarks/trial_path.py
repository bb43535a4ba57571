"""Our own time per trial on the trial path, the sandbox's time left out (issue 19).

A runner that answers at once (a no-op run and a passing evaluation)
stands in for the sandbox, so what is timed is ours: the claim, the sweep,
the commit's protected-path check, the export of its tree, the evaluator's
digest, the labelling, the finish and the tick that follows it, as a trial
worker's slot does them one after another. Each `--lineage` size is a search
grown to that many finished trials (inserted in bulk), then `--measure`
trials run through the real path one at a time; the figures are per trial.
With `--profile`, the slowest calls of the last size are printed too.

    PYTHONPATH=. python benchmarks/trial_path.py --lineage 100 --lineage 10000
    PYTHONPATH=. python benchmarks/trial_path.py --lineage 100 --lineage 10000 \
        --database-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import statistics
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert, select, text

from app.config import Settings
from app.db import session_scope
from app.domain.spec import parse_spec
from app.domain.states import Decision, Label, TrialStatus
from app.services import run_trial
from app.services.import_recipe import create_search
from app.store import tick
from app.store.models import Agent, Search, Trial, utcnow
from benchmarks.scratch import scratch_store
from testing.loop_harness import CONTROL_ONLY, loop_spec, make_loop_recipe
from testing.runners import InstantRunner


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def grown_search(url: str, root: Path, lineage: int) -> tuple[Settings, int]:
    """A running search with `lineage` finished trials, as a long search leaves them."""
    (root / f"at-{lineage}").mkdir()
    repo, evaluator = make_loop_recipe(root / f"at-{lineage}")
    raw = loop_spec(repo, evaluator, CONTROL_ONLY, max_trials=lineage + 10_000)
    settings = Settings(database_url=url, data_dir=root / f"data-{lineage}")
    with session_scope(url) as session:
        search = create_search(session, parse_spec(raw), settings=settings, actor="bench").search
        baseline = session.scalar(
            select(Trial).where(Trial.search_id == search.id, Trial.number == 0)
        )
        assert baseline is not None
        baseline.status, baseline.label, baseline.score = TrialStatus.FINISHED, Label.OK, 0.5
        baseline.decision = Decision.BASELINE
        search.best_trial_id = baseline.id
        agent = session.scalar(select(Agent.id).where(Agent.search_id == search.id))
        rng, ran = random.Random(lineage), utcnow()
        rows = [
            {"search_id": search.id, "number": number, "agent_id": agent,
             "parent_id": baseline.id, "hypothesis": f"knob change {number}", "diff": "",
             "status": TrialStatus.FINISHED, "label": rng.choice([Label.OK, Label.CRASH]),
             "score": rng.uniform(0.3, 0.49), "decision": Decision.DISCARD,
             "commit_sha": baseline.commit_sha, "wallclock_s": 1.0,
             "started_at": ran - timedelta(seconds=1), "finished_at": ran}
            for number in range(1, lineage)
        ]  # fmt: skip
        for start in range(0, len(rows), 5000):
            session.execute(insert(Trial), rows[start : start + 5000])
    if url.startswith("postgresql"):  # as autovacuum keeps a long-lived database's statistics
        with session_scope(url) as session:
            session.execute(text("ANALYZE trial"))
    return settings, search.id


def queue_trials(url: str, search_id: int, count: int) -> list[int]:
    """`count` trials queued for a slot, each the baseline's recipe (committed, checked)."""
    with session_scope(url) as session:
        search = session.get(Search, search_id)
        assert search is not None and search.best_trial_id is not None
        baseline = session.get(Trial, search.best_trial_id)
        assert baseline is not None
        last = session.scalar(select(Trial.number).order_by(Trial.number.desc()).limit(1)) or 0
        made = [
            Trial(search_id=search_id, number=last + 1 + index, parent_id=baseline.id,
                  agent_id=baseline.agent_id, hypothesis="timed", diff="",
                  commit_sha=baseline.commit_sha, status=TrialStatus.QUEUED,
                  queued_at=utcnow(), sent_at=utcnow())
            for index in range(count)
        ]  # fmt: skip
        session.add_all(made)
        session.flush()
        return [trial.id for trial in made]


def timed_trials(settings: Settings, search_id: int, count: int) -> list[float]:
    """Seconds per trial: the slot's run of it, then the tick it asks for."""
    runner = InstantRunner()
    url = settings.resolved_database_url
    spent = []
    for trial_id in queue_trials(url, search_id, count):
        began = time.perf_counter()
        ticked = run_trial.run(settings, runner, trial_id, worker="bench:1", process_index=0)
        assert ticked == search_id
        with session_scope(url) as session:
            tick.tick(
                session, search_id, heartbeat_s=settings.heartbeat_s,
                max_attempts=settings.max_attempts,
            )  # fmt: skip
        spent.append(time.perf_counter() - began)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lineage", type=int, action="append", help="trials in the search")
    parser.add_argument("--measure", type=int, default=100, help="trials timed at each size")
    parser.add_argument("--database-url", help="a Postgres server (a scratch DB is made on it)")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    sizes = args.lineage or [100, 10_000]

    lines, medians = ["our time per trial (instant sandbox), seconds"], {}
    with scratch_store(args.database_url) as (url, root):
        for size in sizes:
            settings, search_id = grown_search(url, root, size)
            timed_trials(settings, search_id, 5)  # warm: imports, caches, connections
            profile = cProfile.Profile() if args.profile and size == sizes[-1] else None
            if profile:
                profile.enable()
            spent = timed_trials(settings, search_id, args.measure)
            if profile:
                profile.disable()
            medians[size] = statistics.median(spent)
            lines.append(
                f"  lineage {size:>7}: p50 {medians[size]:.4f}  p99 {percentile(spent, 0.99):.4f}"
                f"  mean {statistics.fmean(spent):.4f}  ({args.measure} trials)"
            )
    first, last = sizes[0], sizes[-1]
    lines.append(f"p50 ratio lineage {last} / {first}: {medians[last] / medians[first]:.2f}x")
    print("\n".join(lines))  # noqa: T201
    if profile:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(25)
        print(out.getvalue())  # noqa: T201


if __name__ == "__main__":
    main()

"""Slot utilisation and dispatch overhead of the search loop, with synthetic trials.

Starts a real deployment (scheduler and a Celery trial worker with `--slots`
processes, plus a proposal worker) on the given database and its broker
(the embedded SQLite broker beside SQLite, Redis beside Postgres), runs a
search of `--trials` trials that each sleep `--trial-s` seconds in the
Docker sandbox, proposed by the control arm, and reports:

- slot utilisation: time trials held a slot / (slots x span from the first
  start to the last finish);
- dispatch overhead: trial queued -> claimed by a worker, p50 and p99
  (the container starts within milliseconds of the claim);
- per-trial orchestration: claimed -> finished minus the sleep.

    PYTHONPATH=. python benchmarks/loop_throughput.py --slots 4 --trial-s 10 --trials 20
    PYTHONPATH=. python benchmarks/loop_throughput.py --database-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sqlalchemy import select

from app.config import Settings
from app.db import session_scope
from app.domain.spec import parse_spec
from app.domain.states import SearchStatus
from app.services.import_recipe import create_search
from app.store.models import Search, Trial
from benchmarks.scratch import scratch_store
from testing.loop_harness import CONTROL_ONLY, deployment, loop_spec, make_loop_recipe


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--trial-s", type=float, default=10.0)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--database-url", help="a Postgres server (a scratch DB is made on it)")
    args = parser.parse_args()

    with scratch_store(args.database_url) as (url, root):
        report = run(url, root, args)
    print(report)  # noqa: T201


def run(url: str, root: Path, args: argparse.Namespace) -> str:
    repo, evaluator = make_loop_recipe(root)
    raw = loop_spec(
        repo, evaluator, CONTROL_ONLY, max_trials=args.trials, max_concurrent=args.slots
    )
    raw["run"] = f"sleep {args.trial_s} && python3 train.py"
    raw["budgets"]["trial"]["wallclock_s"] = args.trial_s + 60
    with deployment(url, root / "data", sandbox_backend="docker") as running:
        # Workers first: a trial queued while its worker still boots would time the boot.
        running.start("worker", "--queues=propose", "--concurrency=2")
        running.start("worker", "--queues=trials", f"--concurrency={args.slots}")
        running.wait_for(lambda: running.logs().count(" ready.") >= 2, 120, "workers ready")
        with session_scope(url) as session:
            settings = Settings(database_url=url, data_dir=root / "data")
            created = create_search(session, parse_spec(raw), settings=settings, actor="bench")
            search_id = created.search.id
        running.start("scheduler", "--interval=1")

        def finished() -> bool:
            with session_scope(url) as session:
                found = session.get(Search, search_id)
                return found is not None and found.status == SearchStatus.FINISHED

        running.wait_for(finished, 60 + 3 * args.trials * args.trial_s / args.slots, "finished")
    with session_scope(url) as session:
        trials = list(session.scalars(select(Trial).where(Trial.search_id == search_id)))
    ran = [t for t in trials if t.started_at and t.finished_at and t.queued_at]
    spans = [(t.started_at.timestamp(), t.finished_at.timestamp()) for t in ran]  # type: ignore[union-attr]
    first, last_start = min(s for s, _ in spans), max(s for s, _ in spans)
    end = max(f for _, f in spans)
    busy = sum(f - s for s, f in spans)
    span = end - first
    # While work was waiting (until the last trial started), every slot should be busy;
    # after that, slots idle only because the search has nothing left to run.
    pending = last_start - first
    busy_pending = sum(max(0.0, min(f, last_start) - s) for s, f in spans)
    dispatch = [(t.started_at - t.queued_at).total_seconds() for t in ran]  # type: ignore[operator]
    slowest = sorted(zip(dispatch, (t.number for t in ran), strict=True), reverse=True)[:3]
    overhead = [
        (t.finished_at - t.started_at).total_seconds() - args.trial_s  # type: ignore[operator]
        for t in ran
    ]
    backend = "postgres+redis" if url.startswith("postgresql") else "sqlite+embedded broker"
    return "\n".join(
        [
            f"{backend}: {len(ran)} trials of {args.trial_s:g}s on {args.slots} slots",
            f"slot utilisation while trials were waiting: "
            f"{busy_pending / (args.slots * pending):.3f} "
            f"(busy {busy_pending:.1f}s over {args.slots} x {pending:.1f}s)",
            f"slot utilisation over the whole run, drain included: "
            f"{busy / (args.slots * span):.3f} (busy {busy:.1f}s over {args.slots} x {span:.1f}s)",
            f"dispatch queued->claimed: p50 {percentile(dispatch, 0.5):.3f}s "
            f"p99 {percentile(dispatch, 0.99):.3f}s (slowest: "
            + ", ".join(f"#{number} {seconds:.2f}s" for seconds, number in slowest)
            + ")",
            f"per-trial overhead beyond the sleep (sandbox + evaluator + store): "
            f"p50 {percentile(overhead, 0.5):.3f}s p99 {percentile(overhead, 0.99):.3f}s",
        ]
    )


if __name__ == "__main__":
    main()

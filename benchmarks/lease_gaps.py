"""How late a lease renewal comes on a loaded host: what the reaper's stale threshold must allow.

Holds `--leases` trial leases through the workers' own code (`hosts.leased`)
on a scratch store while `--writers` threads write to it as fast as they can
(SQLite's single write lock is the contention an embedded install sees) and
`--burners` processes keep every core busy. A monitor reads each lease's
`heartbeat_at` (the database clock, which the reaper judges by) ten times a
second; the gaps between its successive values are printed (p50, p99, max),
in heartbeats, beside the threshold `app.store.tick.STALE_HEARTBEATS`: a
healthy trial is taken back only if a gap reaches it.

    python -m benchmarks.lease_gaps [--heartbeat 2] [--seconds 60] [--postgres URL]
"""

from __future__ import annotations

import argparse
import multiprocessing
import threading
import time
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from app.config import Settings
from app.db import session_scope
from app.domain.states import SearchStatus, TrialStatus
from app.services.hosts import leased
from app.store.models import Event, Search, Trial
from app.store.tick import STALE_HEARTBEATS
from benchmarks.scratch import scratch_store

WORKER = "bench-host:1"
MONITOR_S = 0.1


def _burn(seconds: float) -> None:
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        pass


def _leases(url: str, count: int) -> tuple[int, list[int]]:
    with session_scope(url) as session:
        search = Search(name="leases", status=SearchStatus.RUNNING, spec={}, repo_path="",
                        base_commit="")  # fmt: skip
        session.add(search)
        session.flush()
        trials = [
            Trial(search_id=search.id, number=n, status=TrialStatus.RUNNING, worker=WORKER)
            for n in range(count)
        ]
        session.add_all(trials)
        session.flush()
        return search.id, [trial.id for trial in trials]


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heartbeat", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--leases", type=int, default=8)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--burners", type=int, default=multiprocessing.cpu_count())
    parser.add_argument("--postgres", help="a Postgres server URL (default: SQLite)")
    args = parser.parse_args()

    with scratch_store(args.postgres) as (url, root):
        settings = Settings(database_url=url, data_dir=Path(root), heartbeat_s=args.heartbeat)
        search_id, trial_ids = _leases(url, args.leases)
        stop = threading.Event()

        def write() -> None:
            while not stop.is_set():
                with session_scope(url) as session:
                    session.add(
                        Event(search_id=search_id, kind="bench.write", actor="bench", data={})
                    )

        def hold(trial_id: int) -> None:
            with leased(settings, trial_id, WORKER, on_lost=stop.set):
                stop.wait(args.seconds)

        seen: dict[int, list[datetime]] = {trial_id: [] for trial_id in trial_ids}

        def monitor() -> None:
            while not stop.is_set():
                with session_scope(url) as session:
                    rows = session.execute(
                        select(Trial.id, Trial.heartbeat_at).where(Trial.id.in_(trial_ids))
                    )
                    for trial_id, beat in rows:
                        if beat is not None and (not seen[trial_id] or seen[trial_id][-1] != beat):
                            seen[trial_id].append(beat)
                time.sleep(MONITOR_S)

        burners = [
            multiprocessing.Process(target=_burn, args=(args.seconds,)) for _ in range(args.burners)
        ]
        threads = [threading.Thread(target=write, daemon=True) for _ in range(args.writers)]
        threads += [threading.Thread(target=hold, args=(t,)) for t in trial_ids]
        threads.append(threading.Thread(target=monitor, daemon=True))
        for process in burners:
            process.start()
        for thread in threads:
            thread.start()
        time.sleep(args.seconds)
        stop.set()
        for process in burners:
            process.join()
        for thread in threads:
            thread.join()

    gaps = [
        (later - earlier).total_seconds() / args.heartbeat
        for beats in seen.values()
        for earlier, later in zip(beats, beats[1:], strict=False)
    ]
    backend = "Postgres" if args.postgres else "SQLite"
    print(  # noqa: T201 (a benchmark prints its figures)
        f"{backend}, heartbeat {args.heartbeat:g}s, {args.leases} leases, {args.writers} writers, "
        f"{args.burners} burners, {args.seconds:g}s: {len(gaps)} gaps; in heartbeats p50 "
        f"{_percentile(gaps, 0.5):.2f}, p99 {_percentile(gaps, 0.99):.2f}, max {max(gaps):.2f}; "
        f"stale threshold {STALE_HEARTBEATS}"
    )


if __name__ == "__main__":
    main()

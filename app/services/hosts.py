"""What a trial host does around its trials: name its workers, hold leases, sweep orphans.

- A worker is `host:pid`: unique among live workers, and it tells the sweep
  whether the owner died.
- The lease: a thread renews the trial's heartbeat; when the store says the
  trial is no longer this worker's (cancelled, or reaped as lost), it kills
  the trial's container at once instead of letting it run to its deadline.
- The sweep: containers of trials that are finished, or whose worker on this
  host is dead, are removed.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import select

from app.config import Settings
from app.db import session_scope
from app.domain.states import TrialStatus
from app.store.models import Trial
from app.store.transitions import heartbeat
from sandbox import Runner

logger = logging.getLogger(__name__)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@contextmanager
def leased(
    settings: Settings, runner: Runner, trial_id: int, worker: str
) -> Iterator[threading.Event]:
    """Heartbeat `trial_id` while the block runs; the event is set if the lease was lost."""
    lost, done = threading.Event(), threading.Event()

    def beat() -> None:
        while not done.wait(settings.heartbeat_s):
            with session_scope(settings.resolved_database_url) as session:
                kept = heartbeat(session, trial_id, worker)
            if not kept:
                logger.warning("trial.lease_lost trial_id=%s worker=%s", trial_id, worker)
                lost.set()
                runner.sweep([trial_id])
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield lost
    finally:
        done.set()
        thread.join()


def sweep_orphans(settings: Settings, runner: Runner) -> int:
    """Remove what dead workers of this host left; trials of live workers are untouched."""
    live = runner.live_trials()
    if not live:
        return 0
    host = socket.gethostname()
    with session_scope(settings.resolved_database_url) as session:
        rows = session.execute(
            select(Trial.id, Trial.status, Trial.worker).where(Trial.id.in_(live))
        ).all()
    orphans = [
        trial_id
        for trial_id, status, worker in rows
        if status != TrialStatus.RUNNING or _dead_here(worker, host)
    ]
    removed = runner.sweep(orphans) if orphans else 0
    logger.info("sandbox.orphans_swept trials=%s removed=%s", orphans, removed)
    return removed


def _dead_here(worker: str | None, host: str) -> bool:
    if worker is None or ":" not in worker:
        return False
    worker_host, pid = worker.rsplit(":", 1)
    if worker_host != host or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, owned by another user
    return False

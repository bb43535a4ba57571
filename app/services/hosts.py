"""What a worker host does around its trials: name its workers, hold leases, sweep what is left.

- A worker is `host:pid`: unique among live workers, and it tells a sweep
  whether the owner died.
- The lease: a thread renews a trial's (or a proposal's) heartbeat. A failed
  renewal (the database or the network away) is logged and retried at the
  next beat, never the end of the lease; only the store saying the trial is
  no longer this worker's (cancelled, or reaped as lost) ends it, and then
  `on_lost` runs at once (for a run: its containers are killed).
- The sweep, at worker start and once a heartbeat while a trial worker runs:
  containers of trials that are not running, that an earlier attempt (another
  owner) left, or whose owner on this host is dead, are removed; so are
  scratch folders of dead workers of this host.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from app.config import Settings
from app.db import session_scope
from app.domain.states import TrialStatus
from app.store.models import Trial
from app.store.transitions import heartbeat
from sandbox import Runner

logger = logging.getLogger(__name__)

SCRATCH_PATTERN = re.compile(r"^trial-(\d+)-(\d+)-")  # trial-<trial id>-<pid>-<random>
SWEEP_HEARTBEATS = 1  # a host sweeps once a heartbeat: orphans die before a lease is stale


def sweep_interval_s(heartbeat_s: float) -> float:
    """How often a trial host sweeps: well inside the reaper's stale threshold
    (`app.store.tick.STALE_HEARTBEATS`), so an orphan is gone before its retry starts."""
    return SWEEP_HEARTBEATS * heartbeat_s


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def scratch_prefix(trial_id: int) -> str:
    """The name a run's scratch folder starts with: the sweep reads its owner's pid from it."""
    return f"trial-{trial_id}-{os.getpid()}-"


@contextmanager
def leased(
    settings: Settings, trial_id: int, worker: str, on_lost: Callable[[], object]
) -> Iterator[threading.Event]:
    """Heartbeat `trial_id` while the block runs; the event is set if the lease was lost."""
    lost, done = threading.Event(), threading.Event()

    def beat() -> None:
        while not done.wait(settings.heartbeat_s):
            try:
                with session_scope(settings.resolved_database_url) as session:
                    kept = heartbeat(session, trial_id, worker)
            except (SQLAlchemyError, OSError) as error:
                logger.warning("lease.renew_failed trial_id=%s error=%r", trial_id, error)
                continue  # the store decides when a lease is stale; keep trying
            if not kept:
                logger.warning("trial.lease_lost trial_id=%s worker=%s", trial_id, worker)
                lost.set()
                on_lost()
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield lost
    finally:
        done.set()
        thread.join()


def sweep(settings: Settings, runner: Runner) -> int:
    """One sweep of this host: orphaned containers, then dead workers' scratch folders."""
    removed = sweep_orphans(settings, runner)
    sweep_scratch(settings.data_dir / "work")
    return removed


def sweep_orphans(settings: Settings, runner: Runner) -> int:
    """Remove what dead workers, or attempts that lost their lease, left on this host."""
    live = runner.live_trials()
    if not live:
        return 0
    host = socket.gethostname()
    with session_scope(settings.resolved_database_url) as session:
        current = {
            trial_id: (status, worker)
            for trial_id, status, worker in session.execute(
                select(Trial.id, Trial.status, Trial.worker).where(Trial.id.in_(live))
            )
        }
    removed = 0
    for trial_id, owners in live.items():
        status, worker = current.get(trial_id, (None, None))
        stale = {
            owner
            for owner in owners
            if status is not TrialStatus.RUNNING or owner != worker or _dead_here(owner, host)
        }
        if stale:
            removed += runner.sweep([trial_id], owners=stale)
            logger.info("sandbox.orphans_swept trial_id=%s owners=%s", trial_id, sorted(stale))
    return removed


def sweep_scratch(root: Path) -> int:
    """Remove scratch folders whose worker (a process of this host) is gone; returns how many."""
    if not root.is_dir():
        return 0
    removed = 0
    for entry in root.iterdir():
        match = SCRATCH_PATTERN.match(entry.name)
        if match and entry.is_dir() and not _alive(int(match.group(2))):
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
            logger.info("scratch.swept path=%s", entry)
    return removed


def _dead_here(worker: str | None, host: str) -> bool:
    if worker is None or ":" not in worker:
        return False
    worker_host, pid = worker.rsplit(":", 1)
    return worker_host == host and pid.isdigit() and not _alive(int(pid))


def _alive(pid: int) -> bool:
    """Whether process `pid` of this host still runs (a zombie, killed but unreaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    try:
        status = Path("/proc", str(pid), "status").read_text()
    except OSError:
        return True  # no procfs to ask: trust the signal
    return "\nState:\tZ" not in status

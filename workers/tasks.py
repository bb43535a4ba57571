"""Celery tasks: thin shells that parse ids, call one service, then schedule.

Task arguments are ids only; every service re-reads the store and claims by
compare-and-set, so a redelivered or late message finds its trial already
taken (or finished) and does nothing. Sends happen only after the
transaction that decided them has committed.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import cache
from typing import Any

from billiard.process import current_process
from celery.signals import worker_process_init, worker_ready
from kombu.exceptions import KombuError
from sqlalchemy.exc import SQLAlchemyError

from app.config import settings
from app.db import get_engine
from app.domain.spec import PROPOSE_QUEUE
from app.services import hosts
from app.services import propose as proposals
from app.services import run_trial as trials
from app.services import schedule as scheduling
from app.store.tick import Send, Task
from sandbox import Runner
from sandbox.select import make_runner
from workers.celery_app import celery

logger = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0  # the longest the scheduler waits between tries of an unavailable store


@cache
def runner() -> Runner:
    """This process's runner, chosen once (`sandbox.select`)."""
    return make_runner(settings.sandbox_backend, settings.namespace, settings.docker_runtime)


def _runs_trials() -> bool:
    return bool(set(celery.amqp.queues or {}) - {PROPOSE_QUEUE})  # a trial queue, any of them


@worker_process_init.connect
def _start_process(**_: Any) -> None:
    """Drop the database connections and the Docker client inherited through fork."""
    get_engine(settings.resolved_database_url).dispose(close=False)
    runner.cache_clear()


@worker_ready.connect
def _start_sweeping(**_: Any) -> None:
    """A trial worker sweeps its host at start and once a heartbeat after (in the main process,
    which outlives the pool processes it restarts), so what a dead pool process or an
    attempt that lost its lease left running is gone within a sweep."""
    if _runs_trials():
        threading.Thread(target=_sweep_forever, name="host-sweep", daemon=True).start()


def _sweep_forever() -> None:
    while True:
        try:
            hosts.sweep(settings, runner())
        except Exception as error:  # a sweep that failed (daemon or database away) comes again
            logger.warning("sandbox.sweep_failed error=%r", error)
        time.sleep(hosts.sweep_interval_s(settings.heartbeat_s))


def send(sends: list[Send]) -> None:
    for item in sends:
        task = propose if item.task is Task.PROPOSE else run_trial
        task.apply_async((item.trial_id,), **({"queue": item.queue} if item.queue else {}))


def schedule(search_id: int) -> None:
    """Tick the search and send what the tick decided, after it committed."""
    send(scheduling.tick(settings, search_id))


@celery.task(name="trialforge.tick")
def tick(search_id: int) -> None:
    schedule(search_id)


@celery.task(name="trialforge.propose")
def propose(trial_id: int) -> None:
    search_id = proposals.propose(settings, trial_id)
    if search_id is not None:
        schedule(search_id)


@celery.task(name="trialforge.run_trial")
def run_trial(trial_id: int) -> None:
    worker = hosts.worker_name()
    search_id = trials.run(
        settings, runner(), trial_id, worker=worker, process_index=current_process().index
    )
    if search_id is None:
        return  # a second delivery, or cancelled before it started
    # Tick beside the next task, not before it: when several slots free at once their
    # ticks serialise on the search row, and a slot process waiting on them would
    # leave the trial it is about to be handed waiting too.
    threading.Thread(target=schedule_safely, args=(search_id,), name=f"tick-{search_id}").start()


def schedule_forever(interval_s: float, stop: threading.Event) -> None:
    """The periodic sweep: ticks every active search (reaps lost trials, fills slots).

    A database that is away is waited out with backoff (and said in the log),
    never the end of the scheduler.
    """
    failures = 0
    while not stop.is_set():
        try:
            search_ids = scheduling.running_searches(settings)
        except (SQLAlchemyError, OSError) as error:
            failures += 1
            wait_s = min(interval_s * 2.0**failures, MAX_BACKOFF_S)
            logger.error("scheduler.store_unavailable error=%r retry_in_s=%.1f", error, wait_s)
            stop.wait(wait_s)
            continue
        if failures:
            logger.warning("scheduler.store_back after_failures=%s", failures)
            failures = 0
        for search_id in search_ids:
            schedule_safely(search_id)
        stop.wait(interval_s)


def schedule_safely(search_id: int) -> None:
    """Tick, and survive the tick's failure: the periodic sweep ticks again from the store."""
    try:
        schedule(search_id)
    except (SQLAlchemyError, KombuError, OSError) as error:
        # A dropped connection, a lock timeout, a broker away: expected, and passing.
        logger.error("scheduler.tick_failed search_id=%s error=%r", search_id, error)
    except Exception:  # a bug must not stop the sweep of every other search
        logger.exception("scheduler.tick_crashed search_id=%s", search_id)

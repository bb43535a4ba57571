"""Celery tasks: thin shells that parse ids, call one service, then schedule.

Task arguments are ids only; every service re-reads the store and claims by
compare-and-set, so a redelivered or late message finds its trial already
taken (or finished) and does nothing. Sends happen only after the
transaction that decided them has committed.
"""

from __future__ import annotations

import logging
import threading
from functools import cache
from typing import Any

from billiard.process import current_process
from celery.signals import worker_process_init
from kombu.exceptions import KombuError
from sqlalchemy.exc import SQLAlchemyError

from app.config import settings
from app.db import get_engine
from app.services import hosts
from app.services import propose as proposals
from app.services import run_trial as trials
from app.services import schedule as scheduling
from app.store.tick import Send, Task
from sandbox import Runner
from sandbox.select import make_runner
from workers.celery_app import PROPOSE_QUEUE, celery

logger = logging.getLogger(__name__)


@cache
def runner() -> Runner:
    """This process's runner, chosen once (`sandbox.select`)."""
    return make_runner(settings.sandbox_backend, settings.namespace)


@worker_process_init.connect
def _start_process(**_: Any) -> None:
    """Drop database connections inherited through fork, then clear what dead workers left."""
    get_engine(settings.resolved_database_url).dispose(close=False)
    if set(celery.amqp.queues or {}) - {PROPOSE_QUEUE}:  # a trial worker, of any queue
        hosts.sweep_orphans(settings, runner())


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
    """The periodic sweep: ticks every running search (reaps lost trials, fills slots)."""
    while not stop.is_set():
        for search_id in scheduling.running_searches(settings):
            schedule_safely(search_id)
        stop.wait(interval_s)


def schedule_safely(search_id: int) -> None:
    try:
        schedule(search_id)
    except (SQLAlchemyError, KombuError, OSError) as error:
        # Deliberate: one failed tick (a dropped connection, a lock timeout) must not
        # stop a sweep or a worker; the periodic sweep retries from the store.
        logger.error("scheduler.tick_failed search_id=%s error=%r", search_id, error)

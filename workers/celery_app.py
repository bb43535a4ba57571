"""The Celery application: two queues, late acks, one task at a time per process.

- `propose` (I/O bound: model calls) and the trial queue (one process per
  sandbox slot; `TRIALFORGE_TRIAL_QUEUE` lets a GPU host consume its own).
- Late acks with `reject_on_worker_lost`: a message whose worker died is
  redelivered, which is safe because every task claims its trial by
  compare-and-set in the store and a second delivery is a no-op.
- Prefetch 1, so a long trial never holds a second message hostage.
- Redis `visibility_timeout` above any trial budget, so a long trial is not
  redelivered while it is still running.
- No result backend: tasks report through the store, never through `.get()`.

With no broker configured this is kombu's SQLAlchemy transport on a SQLite
file under the data dir: real worker processes, no service to install; it
polls ten times a second.
"""

from __future__ import annotations

import time

from celery import Celery
from kombu.transport import sqlalchemy as sqlalchemy_transport
from sqlalchemy.exc import SQLAlchemyError

from app.config import Settings, settings

PROPOSE_QUEUE = "propose"
PREPARE_ATTEMPTS = 5
EMBEDDED_POLL_S = 0.1  # kombu's default 1 s would add half a second to every dispatch


def make_celery(settings: Settings) -> Celery:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = Celery("trialforge", broker=settings.resolved_broker_url, include=["workers.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue=PROPOSE_QUEUE,
        task_routes={
            "trialforge.propose": {"queue": PROPOSE_QUEUE},
            "trialforge.tick": {"queue": PROPOSE_QUEUE},
            "trialforge.run_trial": {"queue": settings.trial_queue},
        },
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    if settings.resolved_broker_url.startswith(("redis://", "rediss://")):
        app.conf.broker_transport_options = {"visibility_timeout": settings.visibility_timeout_s}
    elif settings.resolved_broker_url.startswith("sqla+"):
        # The embedded broker polls its SQLite queue table (a cheap indexed read). Its
        # transport hands every transport option to create_engine, so the interval
        # cannot travel as one: it is the transport's class default, set here.
        sqlalchemy_transport.Transport.polling_interval = EMBEDDED_POLL_S
    return app


def prepare_broker(app: Celery, settings: Settings) -> None:
    """Create the embedded broker's tables and queues once, before processes start together.

    Kombu's SQLAlchemy transport creates both on first use, and processes
    starting at once race on it (`table kombu_queue already exists`, `UNIQUE
    constraint failed: kombu_queue.name`). Harmless on Redis.
    """
    for attempt in range(PREPARE_ATTEMPTS):
        try:
            with app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=3)
                channel = connection.default_channel
                for queue in (PROPOSE_QUEUE, settings.trial_queue):
                    channel.queue_declare(queue=queue)
            return
        except SQLAlchemyError:
            # Another process created the same table or queue row first: look again.
            if attempt == PREPARE_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


celery = make_celery(settings)

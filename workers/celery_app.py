"""The Celery application: two queues, late acks, one task at a time per process.

- `propose` (I/O bound: model calls) and trial queues (one process per
  sandbox slot). Each run goes to its search's `budgets.trial.queue`:
  `trials`, shared by every trial host, or one host's own queue, which that
  host's workers consume with `TRIALFORGE_TRIAL_QUEUE` (a GPU host, say).
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
from collections.abc import Sequence

from celery import Celery
from kombu.transport import sqlalchemy as sqlalchemy_transport
from sqlalchemy.exc import SQLAlchemyError

from app.config import Settings, settings
from app.domain.spec import PROPOSE_QUEUE, TRIALS_QUEUE

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
            "trialforge.run_trial": {"queue": TRIALS_QUEUE},  # sends name the search's
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


def prepare_broker(app: Celery, settings: Settings, queues: Sequence[str] = ()) -> None:
    """Create the embedded broker's tables and queues once, before processes start together.

    Kombu's SQLAlchemy transport creates both on first use, and processes
    starting at once race on it (`table kombu_queue already exists`, `UNIQUE
    constraint failed: kombu_queue.name`); a worker names the queues it will
    consume, a search's own trial queue among them. Harmless on Redis.
    """
    for attempt in range(PREPARE_ATTEMPTS):
        try:
            with app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=3)
                channel = connection.default_channel
                for queue in {PROPOSE_QUEUE, settings.trial_queue, *queues}:
                    channel.queue_declare(queue=queue)
            return
        except SQLAlchemyError:
            # Another process created the same table or queue row first: look again.
            if attempt == PREPARE_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


celery = make_celery(settings)

"""Faults of the distributed loop: killed workers, duplicated messages, cancel mid-run.

Invariants: a trial worker SIGKILLed mid-trial leaves no trial `running` and
no container behind (the next worker sweeps the container, the reaper
re-queues the trial, and it runs to completion); a trial message delivered
twice runs its trial once; cancelling a search kills its running container
at the worker's next heartbeat.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import docker
import pytest
from sqlalchemy import func, select

from app.config import Settings
from app.db import session_scope
from app.domain.spec import parse_spec
from app.domain.states import Label, SearchAction, SearchStatus, TrialStatus
from app.services.control import apply_action
from app.services.import_recipe import create_search
from app.store import tick as ticks
from app.store.models import Event, Search, Trial
from sandbox.docker_runner import NAMESPACE_LABEL, TRIAL_LABEL
from testing.loop_harness import CONTROL_ONLY, Deployment, deployment, loop_spec, make_loop_recipe
from workers.celery_app import make_celery

pytestmark = pytest.mark.docker


def baseline_only(database_url: str, tmp_path: Path, data_dir: Path, run: str) -> tuple[int, int]:
    """A search whose only trial is its baseline, running `run`; (search id, baseline id)."""
    repo, evaluator = make_loop_recipe(tmp_path)
    raw = loop_spec(repo, evaluator, CONTROL_ONLY, max_trials=1, max_concurrent=1)
    raw["run"] = run
    with session_scope(database_url) as session:
        settings = Settings(database_url=database_url, data_dir=data_dir)
        search = create_search(session, parse_spec(raw), settings=settings, actor="t").search
        baseline = session.scalar(select(Trial.id).where(Trial.search_id == search.id))
        assert baseline is not None
        return search.id, baseline


def labelled(client: docker.DockerClient, database_url: str, trial_id: int) -> list[object]:
    """Containers of `trial_id` of this test's installation (not of anything else on the host)."""
    namespace = Settings(database_url=database_url).namespace
    labels = [f"{TRIAL_LABEL}={trial_id}", f"{NAMESPACE_LABEL}={namespace}"]
    return list(client.containers.list(all=True, ignore_removed=True, filters={"label": labels}))


def test_a_trial_worker_killed_mid_trial_leaves_nothing_running_or_behind(
    database_url: str, tmp_path: Path, docker_client: docker.DockerClient, sandbox_image: str
) -> None:
    with deployment(database_url, tmp_path / "data", sandbox_backend="docker") as running:
        data_dir = Path(running.env["TRIALFORGE_DATA_DIR"])
        # Long enough to be killed mid-run; the re-run after the kill takes as long.
        search_id, baseline = baseline_only(
            database_url, tmp_path, data_dir, "sleep 3 && python3 train.py"
        )
        running.start("scheduler", "--interval=0.3")
        worker = running.start("worker", "--queues=trials", "--concurrency=1")

        running.wait_for(
            lambda: bool(labelled(docker_client, database_url, baseline)), 60, "the trial ran"
        )
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        running.stack.forget(worker)
        assert labelled(docker_client, database_url, baseline), (
            "the kill should orphan the container"
        )

        running.start("worker", "--queues=trials", "--concurrency=1")
        running.wait_for(
            lambda: _search_status(database_url, search_id) == SearchStatus.FINISHED,
            90,
            "the search finished",
        )

    with session_scope(database_url) as session:
        trial = session.get(Trial, baseline)
        assert trial is not None
        assert (trial.status, trial.label, trial.attempts) == (TrialStatus.FINISHED, Label.OK, 2)
        requeued = session.scalar(
            select(func.count()).where(Event.trial_id == baseline, Event.kind == "trial.requeued")
        )
        assert requeued == 1
    assert labelled(docker_client, database_url, baseline) == []


def test_a_trial_message_delivered_twice_runs_its_trial_once(
    database_url: str, tmp_path: Path, sandbox_image: str
) -> None:
    with deployment(database_url, tmp_path / "data", sandbox_backend="docker") as running:
        data_dir = Path(running.env["TRIALFORGE_DATA_DIR"])
        search_id, baseline = baseline_only(database_url, tmp_path, data_dir, "python3 train.py")
        with session_scope(database_url) as session:
            sends = ticks.tick(session, search_id, heartbeat_s=1, max_attempts=3)
        assert sends == [ticks.Send(ticks.Task.RUN, baseline, "trials")]
        producer = make_celery(
            Settings(broker_url=running.env["TRIALFORGE_BROKER_URL"], data_dir=data_dir)
        )
        for _ in range(2):
            producer.send_task("trialforge.run_trial", args=[baseline], queue="trials")
        running.start("worker", "--queues=trials", "--concurrency=2")

        running.wait_for(
            lambda: _trial_status(database_url, baseline) == TrialStatus.FINISHED,
            60,
            "the trial finished",
        )
        _drain(running, producer)

    with session_scope(database_url) as session:
        trial = session.get(Trial, baseline)
        assert trial is not None and (trial.label, trial.attempts) == (Label.OK, 1)
        finishes = session.scalar(
            select(func.count()).where(Event.trial_id == baseline, Event.kind == "trial.finished")
        )
        assert finishes == 1


def _drain(running: Deployment, producer: object) -> None:
    """Let the second delivery be consumed (a no-op claim) before the workers stop."""
    marker = "trial.claim trial_id="
    running.wait_for(lambda: running.logs().count(marker) >= 2, 30, "both deliveries arrived")
    assert "won=False" in running.logs()


def _search_status(database_url: str, search_id: int) -> str | None:
    with session_scope(database_url) as session:
        search = session.get(Search, search_id)
        return search.status if search else None


def _trial_status(database_url: str, trial_id: int) -> str | None:
    with session_scope(database_url) as session:
        trial = session.get(Trial, trial_id)
        return trial.status if trial else None


def test_cancelling_a_search_kills_its_running_container_within_a_heartbeat(
    database_url: str, tmp_path: Path, docker_client: docker.DockerClient, sandbox_image: str
) -> None:
    with deployment(database_url, tmp_path / "data", sandbox_backend="docker") as running:
        data_dir = Path(running.env["TRIALFORGE_DATA_DIR"])
        search_id, baseline = baseline_only(
            database_url, tmp_path, data_dir, "sleep 60 && python3 train.py"
        )
        running.start("scheduler", "--interval=0.3")
        running.start("worker", "--queues=trials", "--concurrency=1")
        running.wait_for(
            lambda: bool(labelled(docker_client, database_url, baseline)), 60, "the trial ran"
        )

        with session_scope(database_url) as session:
            apply_action(session, search_id, SearchAction.CANCEL, actor="test")
        running.wait_for(
            lambda: not labelled(docker_client, database_url, baseline),
            10,  # two heartbeats (1 s each) and the kill, with room to spare
            "the container was killed",
        )

    with session_scope(database_url) as session:
        trial = session.get(Trial, baseline)
        assert trial is not None and trial.status == TrialStatus.CANCELLED
        assert trial.label is None  # a cancelled run is not an outcome of the idea

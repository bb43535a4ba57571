"""Fault injection on a whole deployment: kill a part mid-search, restart it, audit the search.

Shared by the fault suite (`tests/test_fault_injection.py`) and its table in
`benchmarks/RESULTS.md` (`python -m benchmarks.faults`). Each scenario runs
a real deployment (scheduler, proposal worker, two trial workers, the API)
on a Postgres and a Redis of the test's own (`testing.servers`), so killing
them touches nobody else's. After the search ends, `audit` checks what the
issue asks of every fault: every trial accounted for (finished, none lost),
no trial with two overlapping runs (from the Docker daemon's own container
start and die events), the budget reached, and no container or scratch
folder left behind.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
from sqlalchemy import func, select

from app.config import Settings
from app.db import get_engine, migrate, session_scope
from app.domain.spec import parse_spec
from app.domain.states import UNFINISHED, Label, SearchStatus, TrialStatus
from app.services.import_recipe import create_search
from app.store.models import Search, Trial
from sandbox.docker_runner import NAMESPACE_LABEL, ROLE_LABEL, TRIAL_LABEL
from testing.databases import drop_postgres_database, make_postgres_database
from testing.fake_llm import Answer, FakeLLM, Raw, reply
from testing.loop_harness import CONTROL_ONLY, Deployment, deployment, loop_spec, make_loop_recipe
from testing.servers import Server, postgres_url

MAX_TRIALS = 8
TRIAL_S = 2  # each trial sleeps this long before it trains: long enough to be hit mid-run
SEARCH_TIMEOUT_S = 240.0
SETTLE_S = 15.0  # after the search ends: time for the last sweeps to remove what is left
HEARTBEAT_S = 1.0


@dataclass
class Rig:
    """One scenario's deployment, its store and broker, and what the fault did when."""

    running: Deployment
    postgres: Server
    redis: Server
    database_url: str
    data_dir: Path
    search_id: int
    fault_at: float | None = None  # time.time() when the fault struck

    def process(self, role: str) -> Any:
        return self.running.stack.process(*ROLES[role])

    def kill(self, role: str, *, restart: bool = True) -> None:
        """SIGKILL a process of the deployment (its group: a worker and its pool).

        Supervision restarts it (after the launcher's backoff), unless it is to stay down.
        """
        process = self.process(role)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        if not restart:
            self.running.stack.forget(process)

    def finished(self) -> int:
        with session_scope(self.database_url) as session:
            return int(
                session.scalar(
                    select(func.count()).where(
                        Trial.search_id == self.search_id, Trial.status == TrialStatus.FINISHED
                    )
                )
                or 0
            )

    def wait(self, condition: Callable[[], bool], what: str, timeout_s: float) -> None:
        self.running.wait_for(condition, timeout_s, what)


ROLES: dict[str, tuple[str, ...]] = {
    "api": ("serve", "--host=127.0.0.1", "--port=0"),
    "scheduler": ("scheduler", "--interval=0.5"),
    "propose": ("worker", "--queues=propose", "--concurrency=2"),
    "trials-a": ("worker", "--queues=trials", "--concurrency=1"),
    "trials-b": ("worker", "--queues=trials", "--concurrency=1"),
}


@dataclass(frozen=True)
class Audit:
    scenario: str
    trials: int  # finished trials counted toward the budget
    labels: dict[str, int]
    unfinished: int  # trials still proposed, ready, queued or running
    overlapping: int  # trials with two runs alive at once
    runs: int  # run containers the daemon started
    containers_left: int
    scratch_left: int
    halt_reason: str | None
    recovery_s: float | None  # from the fault to the next finished trial
    restarts: int  # processes that died and were restarted (the killed one included)


# A specialist beside the control arm, for the faults that need a model in the loop.
LLM_AGENT: dict[str, Any] = {"name": "writer", "kind": "llm", "model": "fake", "mode": "single",
             "surface": {"paths": ["train.py"]}}  # fmt: skip


@contextmanager
def rig(
    postgres: Server,
    redis: Server,
    root: Path,
    *,
    llm_base_url: str | None = None,
    mode: str = "single",
    run: str = f"sleep {TRIAL_S} && python3 train.py",
) -> Iterator[Rig]:
    """A fresh database on our Postgres, a search of MAX_TRIALS, and the whole service running.

    With `llm_base_url`, an LLM specialist on that endpoint joins the control arm.
    """
    root.mkdir(parents=True, exist_ok=True)
    url, name = make_postgres_database(postgres_url(postgres))
    migrate(url)
    data_dir = root / "data"
    repo, evaluator = make_loop_recipe(root)
    specialist = {**LLM_AGENT, "mode": mode}
    agents: list[dict[str, Any]] = [*CONTROL_ONLY, specialist] if llm_base_url else CONTROL_ONLY
    raw = loop_spec(repo, evaluator, agents, max_trials=MAX_TRIALS, max_concurrent=2)
    raw["run"] = run
    llm = {"llm_base_url": llm_base_url} if llm_base_url else {}
    with session_scope(url) as session:
        settings = Settings(database_url=url, data_dir=data_dir, llm_base_url=llm_base_url)
        created = create_search(session, parse_spec(raw), settings=settings, actor="faults")
        session.flush()
        search_id = created.search.id
    broker = f"redis://127.0.0.1:{redis.port}/0"
    try:
        with deployment(url, data_dir, broker_url=broker, supervised=True,
                        sandbox_backend="docker", heartbeat_s=str(HEARTBEAT_S),
                        **llm) as running:  # fmt: skip
            setup = Rig(running, postgres, redis, url, data_dir, search_id)
            for args in ROLES.values():
                running.start(*args)
            yield setup
    finally:
        get_engine(url).dispose()
        drop_postgres_database(postgres_url(postgres), name)


def run_to_end(setup: Rig, fault: Callable[[Rig], None], *, after_finished: int = 2) -> None:
    """Let `after_finished` trials finish, strike, then wait for the search to end."""
    setup.wait(lambda: setup.finished() >= after_finished, "trials finished", SEARCH_TIMEOUT_S)
    setup.fault_at = time.time()
    fault(setup)
    setup.wait(
        lambda: _status(setup) is SearchStatus.FINISHED, "the search finished", SEARCH_TIMEOUT_S
    )


def audit(setup: Rig, scenario: str, client: docker.DockerClient, started: float) -> Audit:
    """What the issue asks of every fault, read from the store, the daemon and the disk."""
    namespace = Settings(database_url=setup.database_url).namespace
    deadline = time.monotonic() + SETTLE_S
    while _containers(client, namespace) and time.monotonic() < deadline:
        time.sleep(0.5)
    runs = _runs(client, namespace, since=started, until=time.time())
    with session_scope(setup.database_url) as session:
        search = session.get(Search, setup.search_id)
        assert search is not None
        rows = session.execute(
            select(Trial.status, Trial.label, Trial.commit_sha, Trial.finished_at).where(
                Trial.search_id == setup.search_id
            )
        ).all()
        halt = search.halt_reason
    labels: dict[str, int] = {}
    for status, label, _, _ in rows:
        key = str(label or status)
        labels[key] = labels.get(key, 0) + 1
    # What the scheduler counts toward max_trials: not cancelled, not a proposal whose model
    # endpoint (or worker) failed before any recipe existed.
    counted = sum(
        1
        for status, label, commit, _ in rows
        if status is not TrialStatus.CANCELLED
        and not (label is Label.INFRA_ERROR and commit is None)
    )
    after = sorted(
        finished.timestamp()
        for _, _, _, finished in rows
        if finished is not None and setup.fault_at is not None
        and finished.timestamp() > setup.fault_at
    )  # fmt: skip
    return Audit(
        scenario=scenario,
        trials=counted,
        labels=dict(sorted(labels.items())),
        unfinished=sum(1 for status, *_ in rows if status in UNFINISHED),
        overlapping=_overlapping(runs),
        runs=sum(len(spans) for spans in runs.values()),
        containers_left=len(_containers(client, namespace)),
        scratch_left=len(list((setup.data_dir / "work").glob("trial-*"))),
        halt_reason=halt,
        recovery_s=(after[0] - setup.fault_at) if after and setup.fault_at else None,
        restarts=sum("restarted" in line for line in setup.running.restarts),
    )


def _status(setup: Rig) -> SearchStatus | None:
    with session_scope(setup.database_url) as session:
        return session.scalar(select(Search.status).where(Search.id == setup.search_id))


def _containers(client: docker.DockerClient, namespace: str) -> list[Any]:
    labels = [TRIAL_LABEL, f"{NAMESPACE_LABEL}={namespace}"]
    return list(client.containers.list(all=True, ignore_removed=True, filters={"label": labels}))


def _runs(
    client: docker.DockerClient, namespace: str, *, since: float, until: float
) -> dict[int, list[tuple[float, float]]]:
    """trial id -> (start, die) of each of its run containers, from the daemon's events."""
    events = client.events(
        since=datetime.fromtimestamp(since, UTC),
        until=datetime.fromtimestamp(until, UTC),
        filters={"type": "container", "label": f"{NAMESPACE_LABEL}={namespace}"},
        decode=True,
    )
    started: dict[str, tuple[int, float]] = {}
    spans: dict[int, list[tuple[float, float]]] = {}
    for event in events:
        attributes = event.get("Actor", {}).get("Attributes", {})
        if attributes.get(ROLE_LABEL) != "run" or TRIAL_LABEL not in attributes:
            continue
        at = int(event["timeNano"]) / 1e9
        if event["status"] == "start":
            started[event["id"]] = (int(attributes[TRIAL_LABEL]), at)
        elif event["status"] == "die" and event["id"] in started:
            trial_id, began = started.pop(event["id"])
            spans.setdefault(trial_id, []).append((began, at))
    for trial_id, began in started.values():  # still running when we looked: open-ended
        spans.setdefault(trial_id, []).append((began, until))
    return spans


def _overlapping(runs: dict[int, list[tuple[float, float]]]) -> int:
    """Trials two of whose runs were alive at the same moment."""
    overlapping = 0
    for spans in runs.values():
        ordered = sorted(spans)
        if any(later[0] < earlier[1] for earlier, later in itertools.pairwise(ordered)):
            overlapping += 1
    return overlapping


# The faults: each strikes once a couple of trials have finished.


def kill_a_trial_worker_mid_trial(setup: Rig) -> None:
    """One of the two trial workers dies with a trial running, and stays down."""
    setup.wait(lambda: running_under(setup, "trials-a"), "worker a runs a trial", 60)
    setup.kill("trials-a", restart=False)


def running_under(setup: Rig, role: str) -> bool:
    """Whether a trial is running in a pool process of the worker `role` (its main process)."""
    main = setup.process(role).pid
    with session_scope(setup.database_url) as session:
        workers = session.scalars(
            select(Trial.worker).where(
                Trial.search_id == setup.search_id, Trial.status == TrialStatus.RUNNING
            )
        )
        pids = [int(worker.rsplit(":", 1)[1]) for worker in workers if worker]
    return any(_parent(pid) == main for pid in pids)


def _parent(pid: int) -> int | None:
    try:
        return int(Path("/proc", str(pid), "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def kill_the_proposal_worker_mid_proposal(setup: Rig) -> None:
    """The proposal worker dies while the model is writing a proposal, and comes back."""
    setup.wait(lambda: _proposing(setup), "a proposal is being written", 60)
    setup.kill("propose")


def _proposing(setup: Rig) -> bool:
    with session_scope(setup.database_url) as session:
        return bool(
            session.scalar(
                select(func.count()).where(
                    Trial.search_id == setup.search_id,
                    Trial.status == TrialStatus.PROPOSED,
                    Trial.worker.is_not(None),
                    Trial.agent.has(name=LLM_AGENT["name"]),
                )
            )
        )


@dataclass(frozen=True)
class Scenario:
    fault: Callable[[Rig], None]
    model_delay_s: float | None = None  # an LLM specialist joins, answering this slowly
    answer: Answer | None = None  # ... or answering this (a malformed reply), every time
    mode: str = "single"  # the specialist's mode: single, or session (tool calls)


EDIT = {"path": "train.py", "search": "EPOCHS = 3", "replace": "EPOCHS = 4"}
NESTED = "[" * 200_000 + "]" * 200_000  # 400 kB, far past any JSON parser's recursion limit


@contextmanager
def model_for(scenario: Scenario) -> Iterator[str | None]:
    """The OpenAI-compatible test model a scenario needs (its base URL), or None."""
    if scenario.model_delay_s is None and scenario.answer is None:
        yield None
        return
    answer = scenario.answer or reply("Train one epoch longer: it still underfits.", EDIT)
    model = FakeLLM({}, lambda agent, n: answer, delay_s=scenario.model_delay_s or 0.0)
    with model.running():
        yield model.base_url


def _no_fault(setup: Rig) -> None:
    """The fault is the model's: every reply of the specialist is malformed."""


SCENARIOS: dict[str, Scenario] = {
    "trial worker killed mid-trial (one of two, left down)": Scenario(
        kill_a_trial_worker_mid_trial
    ),
    "scheduler killed, restarted": Scenario(lambda setup: setup.kill("scheduler")),
    "API killed, restarted": Scenario(lambda setup: setup.kill("api")),
    "proposal worker killed mid-proposal, restarted": Scenario(
        kill_the_proposal_worker_mid_proposal, model_delay_s=4.0
    ),
    "model replies with a body that is not JSON": Scenario(
        _no_fault, answer=Raw(b"<html>502 Bad Gateway</html>")
    ),
    'model replies {"choices": "not a list"}': Scenario(
        _no_fault, answer=Raw(b'{"choices": "not a list"}')
    ),
    "model replies with 400 kB of nested JSON": Scenario(
        _no_fault, answer=Raw(('{"choices": ' + NESTED + "}").encode())
    ),
    "model calls a tool with nested-JSON arguments": Scenario(
        _no_fault, answer=[("edit_file", '{"path": ' + NESTED + "}")], mode="session"
    ),
    "Redis killed, restarted 8 s later": Scenario(lambda setup: _restart(setup.redis, 8)),
    "Postgres killed, restarted 5 s later": Scenario(lambda setup: _restart(setup.postgres, 5)),
}


def _restart(server: Server, after_s: float) -> None:
    server.kill()
    time.sleep(after_s)
    server.start()

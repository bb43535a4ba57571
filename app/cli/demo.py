"""`trialforge demo`: the whole loop on a bundled example, in one command.

`digits` (the default: a NumPy MLP, scored from its weights alone) or
`charlm` (a character model whose architecture the agents edit, scored by
split evaluation: the trial's own code serves the model to the evaluator).

With nothing configured it uses the embedded defaults (SQLite and the
embedded broker under the data dir), Docker when a daemon answers (building
the sandbox image if it is missing) and otherwise the local runner, which it
says is not isolated. The LLM specialists join when an endpoint is
configured (a key alone names no host: nothing defaults to a public one);
otherwise the control arm runs alone, and the output says so.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from docker.errors import DockerException, ImageNotFound

from app import db
from app.cli.launcher import Stack, service_commands
from app.config import Settings
from app.domain.roster import AgentKind
from app.domain.spec import SearchSpec, load_spec_file
from app.domain.states import SearchStatus, TrialStatus
from app.services import import_recipe
from app.store.models import Search, Trial
from app.store.report import halt_report
from sandbox import Backend, image
from sandbox.select import resolve

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
EXAMPLES = ("digits", "charlm")
POLL_S = 0.5


class DemoFailed(Exception):
    """The demo could not run or did not finish; the message says why."""


@dataclass(frozen=True)
class Summary:
    search_id: int
    backend: Backend
    llm: bool
    baseline: float | None
    best: float | None
    improvement: float | None  # best over baseline, positive is better (by direction)
    trials: int
    labels: dict[str, int]
    halt_reason: str | None


def choose_backend(settings: Settings, say: Callable[[str], None]) -> Backend:
    """Docker with the sandbox image when possible, else the (unisolated) local runner."""
    backend, client = resolve(settings.sandbox_backend)
    if backend is Backend.LOCAL:
        if settings.sandbox_backend is Backend.AUTO:
            say("warning: no Docker daemon answers; trials run with the LOCAL runner, NOT isolated")
        return backend
    if client is None:
        return backend  # Docker was asked for explicitly: its trials say why they cannot run
    try:
        client.images.get(image.DEFAULT_TAG)
    except ImageNotFound:
        say(f"building the sandbox image {image.DEFAULT_TAG} (once) ...")
        try:
            can_debootstrap = os.geteuid() == 0 and Path("/usr/sbin/debootstrap").exists()
            (image.build_offline if can_debootstrap else image.build_from_dockerfile)()
        except (image.ImageBuildError, DockerException) as error:
            say(f"warning: cannot build the sandbox image ({error}); using the LOCAL runner")
            return Backend.LOCAL
    return Backend.DOCKER


def demo_spec(settings: Settings, trials: int, example: str = "digits") -> tuple[SearchSpec, bool]:
    """The example's spec sized to `trials`; LLM agents only when a model is configured."""
    if example not in EXAMPLES:
        raise DemoFailed(f"no bundled example {example!r}; the examples are {', '.join(EXAMPLES)}")
    spec = load_spec_file(EXAMPLES_DIR / example / "spec.yaml")
    llm = settings.endpoint_policy.operator_url is not None  # else llm agents are refused
    agents = [a for a in spec.agents if llm or a.kind is AgentKind.CONTROL]
    budgets = spec.budgets.model_copy(
        update={"search": spec.budgets.search.model_copy(update={"max_trials": trials})}
    )
    return spec.model_copy(update={"agents": agents, "budgets": budgets}), llm


def run_demo(
    settings: Settings,
    *,
    trials: int,
    port: int,
    say: Callable[[str], None],
    progress: Callable[[int], None],
    timeout_s: float,
    example: str = "digits",
) -> Summary:
    spec, llm = demo_spec(settings, trials, example)
    url = settings.resolved_database_url
    db.migrate(url)
    backend = choose_backend(settings, say)
    if not llm:
        say("no LLM endpoint configured (TRIALFORGE_LLM_BASE_URL): the control arm "
            "runs alone")  # fmt: skip
    with db.session_scope(url) as session:
        search_id = import_recipe.create_search(
            session, spec, settings=settings, actor="demo"
        ).search.id
    env = {
        "TRIALFORGE_DATA_DIR": str(settings.data_dir.resolve()),
        "TRIALFORGE_DATABASE_URL": url,
        "TRIALFORGE_BROKER_URL": settings.resolved_broker_url,
        "TRIALFORGE_SANDBOX_BACKEND": backend.value,
    }
    log_path = settings.data_dir / "demo.log"
    say(f"search {search_id}: {trials} trials on the {backend.value} runner; live at "
        f"http://127.0.0.1:{port}/searches/{search_id} (logs: {log_path})")  # fmt: skip
    with log_path.open("ab") as log:
        stack = Stack(env, log)
        stack.prepare(settings)
        try:
            for command in service_commands("127.0.0.1", port, slots=2):
                stack.start(*command)
            _wait(url, search_id, stack, progress, timeout_s)
        finally:
            stack.stop()
    return _summary(url, search_id, backend, llm)


def _wait(
    url: str, search_id: int, stack: Stack, progress: Callable[[int], None], timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    done = 0
    while True:
        with db.session_scope(url) as session:
            search = session.get(Search, search_id)
            assert search is not None
            finished = (
                session.query(Trial)
                .filter_by(search_id=search_id, status=TrialStatus.FINISHED)
                .count()
            )
            status = search.status
        if finished > done:
            progress(finished - done)
            done = finished
        if status != SearchStatus.RUNNING:
            return
        if stack.dead():
            raise DemoFailed(f"a service process stopped: {stack.dead()[0]}; see the log")
        if time.monotonic() > deadline:
            raise DemoFailed(f"the search did not finish within {timeout_s:.0f}s; see the log")
        time.sleep(POLL_S)


def _summary(url: str, search_id: int, backend: Backend, llm: bool) -> Summary:
    with db.session_scope(url) as session:
        report = halt_report(session, search_id)
        return Summary(
            search_id=search_id,
            backend=backend,
            llm=llm,
            baseline=report.baseline_score,
            best=report.best_score,
            improvement=report.improvement,
            trials=report.trials,
            labels=report.labels,
            halt_reason=report.halt_reason,
        )

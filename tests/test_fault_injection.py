"""Whatever dies mid-search, no trial is lost, stuck, run twice or orphaned (issue 14).

Each scenario runs the whole service (scheduler, proposal worker, two trial
workers, the API) on a Postgres and a Redis of this module's own, kills one
part with SIGKILL mid-search and restarts it (or leaves it down), and then
audits the search: every trial finished with a label, none still in flight,
no trial with two runs alive at once (from the Docker daemon's own start and
die events), the budget reached, no container or scratch folder left. The
same scenarios print their table for `benchmarks/RESULTS.md` with
`python -m benchmarks.faults`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from testing.faults import MAX_TRIALS, SCENARIOS, audit, model_for, rig, run_to_end
from testing.servers import Server, postgres_server, redis_server

pytestmark = [pytest.mark.docker, pytest.mark.faults]

# A trial finishes this soon after any fault: three heartbeats to take back a lost lease, ten
# to re-send a lost message, plus a trial's own run (at a heartbeat of 1 s).
RECOVERY_BOUND_S = 30.0


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    root = tmp_path_factory.mktemp("servers")
    postgres, redis = postgres_server(root), redis_server(root)
    postgres.start()
    redis.start()
    try:
        yield postgres, redis
    finally:
        postgres.stop()
        redis.stop()


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_search_survives_the_fault_with_every_trial_accounted_for(
    scenario: str,
    servers: tuple[Server, Server],
    tmp_path: Path,
    docker_client: docker.DockerClient,
    sandbox_image: str,
) -> None:
    postgres, redis = servers
    started = time.time()
    chosen = SCENARIOS[scenario]
    with (
        model_for(chosen) as model,
        rig(postgres, redis, tmp_path, llm_base_url=model, mode=chosen.mode) as setup,
    ):
        run_to_end(setup, chosen.fault)
        found = audit(setup, scenario, docker_client, started)
    print(found)  # noqa: T201 (the figures behind benchmarks/RESULTS.md)

    assert found.halt_reason == "max_trials reached", found
    assert found.trials == MAX_TRIALS and found.unfinished == 0, found
    assert found.overlapping == 0, found
    assert found.containers_left == 0 and found.scratch_left == 0, found
    assert found.recovery_s is not None and found.recovery_s < RECOVERY_BOUND_S, found

"""Our failures are `infra_error` results, never exceptions, and never leave a container.

Invariant: a missing image, an unreachable daemon, an unsatisfiable GPU
request or a missing recipe is reported in the result, with the reason, so
the worker retries the trial instead of blaming it (or crashing), and no
labelled container survives the attempt.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import docker
import pytest

from sandbox import Backend, RunRequest, SandboxUnavailable
from sandbox.docker_runner import NAMESPACE_LABEL, TRIAL_LABEL, DockerRunner
from sandbox.select import make_runner
from tests.sandbox.contract import LIMITS, Harness

NO_DAEMON = "unix:///nonexistent/docker.sock"
SUCCEEDS = "print('never runs')"
EVALUATES = "print('{\"val_acc\": 1.0}')"


def containers_of(client: docker.DockerClient, trial_id: int) -> list[object]:
    return list(
        client.containers.list(
            all=True, ignore_removed=True, filters={"label": f"{TRIAL_LABEL}={trial_id}"}
        )
    )


@pytest.mark.docker
def test_a_missing_image_is_an_infra_error_for_both_the_trial_and_its_evaluation(
    docker_harness: Harness, docker_client: docker.DockerClient
) -> None:
    docker_harness.image = "trialforge/never-built:0"

    ran = docker_harness.run(SUCCEEDS)
    evaluated = docker_harness.evaluate(EVALUATES)

    assert ran.infra_error is not None and "ImageNotFound" in ran.infra_error
    assert (ran.exit_code, ran.image_digest) == (None, None)
    assert evaluated.infra_error is not None and "ImageNotFound" in evaluated.infra_error
    assert (evaluated.metrics, evaluated.error) == (None, None)
    assert containers_of(docker_client, docker_harness.trial_id) == []


@pytest.mark.docker
def test_a_gpu_request_without_the_nvidia_runtime_fails_at_start_and_leaves_no_container(
    docker_harness: Harness, docker_client: docker.DockerClient
) -> None:
    result = docker_harness.run(SUCCEEDS, limits=replace(LIMITS, gpu_ids=("0",)))

    assert result.infra_error is not None
    assert result.exit_code is None
    assert containers_of(docker_client, docker_harness.trial_id) == []


@pytest.mark.docker
def test_a_missing_recipe_directory_is_an_infra_error_not_an_empty_mount(
    docker_harness: Harness, docker_client: docker.DockerClient
) -> None:
    missing = docker_harness.root / "never-checked-out"
    request = RunRequest(
        trial_id=docker_harness.trial_id,
        image=docker_harness.image,
        command="python3 train.py",
        recipe_dir=missing,
        output_dir=docker_harness.output,
        limits=LIMITS,
    )

    result = docker_harness.runner.run(request)

    assert result.infra_error is not None
    assert not missing.exists()
    assert containers_of(docker_client, docker_harness.trial_id) == []


def test_an_unreachable_daemon_is_an_infra_error_for_every_call(tmp_path: Path) -> None:
    client = docker.DockerClient(base_url=NO_DAEMON, version="1.41")
    harness = Harness.create(DockerRunner(client), "any", trial_id=1, root=tmp_path)

    ran = harness.run(SUCCEEDS)
    evaluated = harness.evaluate(EVALUATES)

    assert ran.infra_error is not None and "ConnectionError" in ran.infra_error
    assert evaluated.infra_error is not None and "ConnectionError" in evaluated.infra_error


def test_making_a_docker_runner_without_a_daemon_says_the_sandbox_is_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", NO_DAEMON)

    with pytest.raises(SandboxUnavailable, match="cannot reach the Docker daemon"):
        make_runner(Backend.DOCKER)


@pytest.mark.docker
def test_a_sweep_never_touches_another_installations_containers(
    docker_client: docker.DockerClient, sandbox_image: str, trial_id: int
) -> None:
    theirs = docker_client.containers.create(
        sandbox_image,
        ["sleep", "60"],
        labels={TRIAL_LABEL: str(trial_id), NAMESPACE_LABEL: "another-installation"},
        network_mode="none",
    )
    try:
        mine = DockerRunner(docker_client, namespace="this-installation")

        assert trial_id not in mine.live_trials()
        assert mine.sweep([trial_id]) == 0
        assert mine.sweep() == 0
        theirs.reload()  # still there
    finally:
        theirs.remove(force=True)


def test_a_runtime_the_daemon_does_not_know_fails_the_run_as_ours_and_leaves_nothing(
    docker_client: docker.DockerClient, sandbox_image: str, trial_id: int, tmp_path: Path
) -> None:
    """TRIALFORGE_DOCKER_RUNTIME names a runtime this daemon lacks: every run is an
    infra_error naming it (retried, never the trial's), and no container is left."""
    harness = Harness.create(
        DockerRunner(docker_client, runtime="no-such-runtime"), sandbox_image, trial_id, tmp_path
    )

    result = harness.run("print('never runs')")

    assert result.exit_code is None and "no-such-runtime" in (result.infra_error or "")
    labelled = {"label": f"{TRIAL_LABEL}={trial_id}"}
    assert docker_client.containers.list(all=True, filters=labelled) == []

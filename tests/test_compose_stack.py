"""The self-hosted stack, built from this repo's Dockerfile, comes up and answers /healthz.

Nothing can be pulled here, so the service image is built on a local Debian
base (debootstrapped once, tagged `BASE_TAG`) from a wheelhouse of our
dependencies, and the stack runs from `docker-compose config` of the repo's file with every
service on the host network: the app services talk to this machine's
Postgres and Redis, and the stand-ins for `postgres` and `redis` only sleep.
With every service on the host network, compose creates no bridge network.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import yaml
from docker.errors import ImageNotFound

from sandbox.contract import SANDBOX_PATH
from sandbox.image import build_offline
from testing.databases import drop_postgres_database, make_postgres_database
from testing.loop_harness import broker_for

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parent.parent
BASE_TAG = "trialforge/build-base:bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "git", "tini", "ca-certificates")
APP_TAG = "trialforge/app:latest"
HOST_POSTGRES = os.environ.get(
    "TRIALFORGE_TEST_POSTGRES_SERVER", "postgresql://postgres@127.0.0.1:5432/test"
)
HEALTH_TIMEOUT_S = 180


@pytest.fixture(scope="session")
def app_image(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The service image, built from the repo's Dockerfile without a registry."""
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose is missing (apt-get install -y docker-compose)")
    try:
        docker_client.images.get(BASE_TAG)
    except ImageNotFound:
        build_offline(BASE_TAG, packages=BASE_PACKAGES, changes=(f"ENV PATH={SANDBOX_PATH}",))
    context = tmp_path_factory.mktemp("app-context")
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, context / name)
    # async-timeout: redis needs it on Debian's Python 3.11.2, not on ours.
    wheel = [sys.executable, "-m", "pip", "wheel", "-q", ".", "setuptools", "wheel",
             "async-timeout", "-w", "wheels"]  # fmt: skip
    subprocess.run(wheel, cwd=context, check=True, capture_output=True)
    docker_client.images.build(
        path=str(context),
        tag=APP_TAG,
        buildargs={"BASE": BASE_TAG, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/src/wheels"},
        network_mode="host",  # apt-get reaches the host's mirror; no bridge exists here
        rm=True,
    )
    return APP_TAG


@pytest.fixture
def stack_env(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path, int]]:
    """A fresh database and Redis DB, the stack file for this host, and the API's port.

    The stack file is `docker-compose config` of the repo's file, changed only
    where this machine requires it: every service on the host network (so no
    port publishing), the app pointed at this machine's Postgres and Redis,
    and sleeping stand-ins for the `postgres` and `redis` services.
    """
    url, name = make_postgres_database(HOST_POSTGRES)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = tmp_path / "trial-data"
    data.mkdir()
    env = {**os.environ, "TRIALFORGE_HOST_DATA_DIR": str(data)}
    rendered = subprocess.run(
        ["docker-compose", "--env-file", ".env.example", "-f", "docker-compose.yml", "config"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    stack = yaml.safe_load(rendered)
    broker = broker_for(url, tmp_path)  # a Redis of this test run's own, on the host network
    health = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/healthz')"
    for name_, service in stack["services"].items():
        service.pop("ports", None)
        service["network_mode"] = "host"
        if name_ in ("postgres", "redis"):
            service.update(
                image="trialforge/sandbox:latest",
                command=["sleep", "infinity"],
                healthcheck={"test": ["CMD", "true"], "interval": "1s"},
            )
            service.pop("volumes", None)
            service.pop("environment", None)
        elif "environment" in service:
            service["environment"].update(TRIALFORGE_DATABASE_URL=url, TRIALFORGE_BROKER_URL=broker)
    stack["services"]["api"]["command"] = [
        "serve", "--host", "127.0.0.1", "--port", str(port), "--migrate",
    ]  # fmt: skip
    stack["services"]["api"]["healthcheck"] = {
        "test": ["CMD", "python3", "-c", health], "interval": "2s", "retries": 60,
    }  # fmt: skip
    for service in stack["services"].values():
        service.pop("build", None)
    stack_file = tmp_path / "stack.yml"
    stack_file.write_text(yaml.safe_dump(stack))
    try:
        yield env, stack_file, port
    finally:
        drop_postgres_database(HOST_POSTGRES, name)


def test_the_stack_comes_up_and_answers_healthz(
    app_image: str, sandbox_image: str, stack_env: tuple[dict[str, str], Path, int]
) -> None:
    env, stack_file, port = stack_env
    project = f"trialforge-test-{uuid.uuid4().hex[:8]}"
    compose = ["docker-compose", "-p", project, "-f", str(stack_file)]
    networks_before = set(_networks())
    try:
        up = subprocess.run([*compose, "up", "-d", "--no-build"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
        assert up.returncode == 0, up.stderr[-3000:]
        deadline, status = time.monotonic() + HEALTH_TIMEOUT_S, None
        while status != 200 and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    status = r.status
            except OSError:
                time.sleep(1)
        logs = subprocess.run([*compose, "logs", "--tail=40"], cwd=ROOT, env=env,
                              capture_output=True, text=True).stdout  # fmt: skip
        assert status == 200, logs[-4000:]
        listing = [*compose, "ps", "--services", "--filter", "status=running"]
        running = subprocess.run(listing, cwd=ROOT, env=env, capture_output=True, text=True)
        assert {"api", "scheduler", "propose-worker", "trial-worker"} <= set(running.stdout.split())
        assert set(_networks()) == networks_before  # no bridge network was created
    finally:
        subprocess.run([*compose, "down", "-v", "--timeout", "10"], cwd=ROOT, env=env,
                       capture_output=True, timeout=120)  # fmt: skip


def _networks() -> list[str]:
    listed = subprocess.run(["docker", "network", "ls", "--format", "{{.Name}}"],
                            capture_output=True, text=True, check=True)  # fmt: skip
    return listed.stdout.split()

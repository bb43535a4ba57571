"""The self-hosting files: the compose stack validates, needs its secrets, documents every setting.

`docker-compose config` (Debian's docker-compose 1.29, as CI installs it)
parses and interpolates the files exactly as `docker-compose up` would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def compose(*args: str, env_file: str | None = ".env.example") -> subprocess.CompletedProcess[str]:
    if shutil.which("docker-compose") is None:
        reason = "docker-compose is missing (apt-get install -y docker-compose; .ci/docker.sh does)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    options = ["--env-file", env_file] if env_file else []
    return subprocess.run(
        ["docker-compose", *options, *args], cwd=ROOT, capture_output=True, text=True,
        env={k: v for k, v in os.environ.items() if k not in ("POSTGRES_PASSWORD",)},
    )  # fmt: skip


def config(*files: str) -> dict[str, Any]:
    selected = [arg for name in files for arg in ("-f", name)]
    done = compose(*selected, "config")
    assert done.returncode == 0, done.stderr
    parsed: dict[str, Any] = yaml.safe_load(done.stdout)
    return parsed


def test_the_stack_validates_with_every_service_healthchecked_or_gated() -> None:
    stack = config("docker-compose.yml")["services"]

    assert set(stack) == {
        "postgres", "redis", "api", "scheduler", "propose-worker", "trial-worker", "sandbox-image",
    }  # fmt: skip
    assert {"healthcheck"} <= set(stack["postgres"]) and {"healthcheck"} <= set(stack["redis"])
    assert "--migrate" in stack["api"]["command"]
    assert stack["api"]["healthcheck"]["test"][-1].endswith("/healthz')")
    for worker in ("scheduler", "propose-worker", "trial-worker"):
        assert stack[worker]["depends_on"]["api"]["condition"] == "service_healthy"
    mounts = [str(volume).split(":")[1] for volume in stack["trial-worker"]["volumes"]]
    assert "/var/run/docker.sock" in mounts
    assert all("docker.sock" not in str(stack[name].get("volumes")) for name in
               ("api", "scheduler", "propose-worker"))  # fmt: skip
    assert stack["trial-worker"]["environment"]["TRIALFORGE_DATABASE_URL"].startswith(
        "postgresql://trialforge:change-me@postgres"
    )


def test_the_gpu_override_reserves_devices_for_the_trial_worker_only() -> None:
    stack = config("docker-compose.yml", "docker-compose.gpu.yml")["services"]

    devices = stack["trial-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert "deploy" not in stack["api"]


def test_the_stack_refuses_to_start_without_its_secrets(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")

    done = compose("config", env_file=str(empty))

    assert done.returncode != 0
    assert "set POSTGRES_PASSWORD in .env" in done.stderr


def test_env_example_lists_every_setting() -> None:
    example = (ROOT / ".env.example").read_text()

    for name, field in Settings.model_fields.items():
        variable = f"TRIALFORGE_{name.upper()}"
        assert variable in example, f"{variable} ({field.description}) is not in .env.example"

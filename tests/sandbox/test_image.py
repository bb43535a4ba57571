"""The offline-built sandbox image honours the image contract the runners rely on.

Invariant: `python3` with numpy resolves on PATH, /work and /output exist,
and the image runs as an unprivileged user even when no user is given; the
mirror it is built from is the one the host's apt already trusts.
"""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from sandbox.image import ImageBuildError, debian_mirror

SOURCES = """\
Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_the_mirror_is_read_from_the_hosts_deb822_sources(tmp_path: Path) -> None:
    sources = tmp_path / "debian.sources"
    sources.write_text(SOURCES)

    assert debian_mirror(sources, "bookworm") == "http://mirror.example/debian"
    assert debian_mirror(sources, "bookworm-security") == "http://mirror.example/debian-security"


def test_a_suite_no_mirror_serves_is_a_build_error(tmp_path: Path) -> None:
    sources = tmp_path / "debian.sources"
    sources.write_text(SOURCES)

    with pytest.raises(ImageBuildError, match="no mirror for trixie"):
        debian_mirror(sources, "trixie")


@pytest.mark.docker
def test_the_image_has_python_and_numpy_on_path_and_runs_unprivileged(
    docker_client: docker.DockerClient, sandbox_image: str
) -> None:
    output = docker_client.containers.run(
        sandbox_image,
        ["python3", "-c", "import numpy, os; print(numpy.__name__, os.getuid(), os.getcwd())"],
        network_mode="none",
        remove=True,
    )
    has_mounts = docker_client.containers.run(
        sandbox_image, ["test", "-d", "/output", "-a", "-d", "/work"], remove=True
    )

    assert output.decode().split() == ["numpy", "65534", "/work"]
    assert has_mounts == b""

"""Builds the image that trials and evaluators run in.

Two recipes for one contract (`python3` with numpy on PATH, a `/output` mount
point, nothing that needs root):

- `build_from_dockerfile`: the readable, reproducible recipe (`Dockerfile`
  next to this module) for hosts that can pull `python:3.11-slim`.
- `build_offline`: for hosts that cannot pull (air-gapped CI, our build
  machines). debootstrap assembles a Debian rootfs from the apt mirror the
  host already trusts and `docker import` turns it into an image, about 40 s.

Run `trialforge sandbox build [--offline] [--tag T]`; `.ci/docker.sh` does.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import docker
from docker.utils import parse_repository_tag

from sandbox.contract import SANDBOX_PATH

logger = logging.getLogger(__name__)

DEFAULT_TAG = "trialforge/sandbox:latest"
DEBIAN_SUITE = "bookworm"
OFFLINE_PACKAGES = ("python3", "python3-numpy")
DEBIAN_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
# Same defaults as the Dockerfile: an unprivileged user (nobody) in /work.
IMAGE_CHANGES = (
    f"ENV PATH={SANDBOX_PATH}",
    "ENV PYTHONDONTWRITEBYTECODE=1",
    "ENV PYTHONUNBUFFERED=1",
    "WORKDIR /work",
    "USER 65534:65534",
)
DEBOOTSTRAP_LOG_TAIL_CHARS = 4000


class ImageBuildError(Exception):
    """The sandbox image could not be built; the message carries the tool's output tail."""


def debian_mirror(sources: Path = DEBIAN_SOURCES, suite: str = DEBIAN_SUITE) -> str:
    """The first mirror URI in a deb822 sources file that serves `suite`."""
    for stanza in sources.read_text().split("\n\n"):
        fields = dict(
            line.split(":", 1)
            for line in stanza.splitlines()
            if ":" in line and not line.startswith(("#", " "))
        )
        if suite in fields.get("Suites", "").split() and "URIs" in fields:
            return fields["URIs"].split()[0]
    raise ImageBuildError(f"no mirror for {suite} in {sources}")


def build_offline(
    tag: str = DEFAULT_TAG,
    mirror: str | None = None,
    packages: Sequence[str] = OFFLINE_PACKAGES,
    changes: Sequence[str] = IMAGE_CHANGES,
) -> str:
    """Build an image from a debootstrapped rootfs; returns the image id. Needs root.

    The defaults make the sandbox image; other `packages` and `changes` make
    other local bases (e.g. for building the service image without a registry).
    """
    mirror = mirror or debian_mirror()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="trialforge-rootfs-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        _debootstrap(rootfs, mirror, packages)
        # The downloaded .debs are half the rootfs and useless once installed.
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        for mount_point in ("output", "work"):
            (rootfs / mount_point).mkdir(exist_ok=True)
        image_id = _import_rootfs(rootfs, tag, changes)
    logger.info(
        "sandbox.image.built tag=%s image_id=%s seconds=%.1f",
        tag,
        image_id,
        time.monotonic() - started,
    )
    return image_id


def build_from_dockerfile(tag: str = DEFAULT_TAG) -> str:
    """Build the image from `sandbox/Dockerfile` (pulls its base); returns the image id."""
    started = time.monotonic()
    image, _ = docker.from_env().images.build(
        path=str(Path(__file__).parent), dockerfile="Dockerfile", tag=tag, rm=True
    )
    logger.info(
        "sandbox.image.built tag=%s image_id=%s seconds=%.1f",
        tag,
        image.id,
        time.monotonic() - started,
    )
    return str(image.id)


def _debootstrap(rootfs: Path, mirror: str, packages: Sequence[str]) -> None:
    command = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(packages)}",
        DEBIAN_SUITE,
        str(rootfs),
        mirror,
    ]
    logger.info("sandbox.image.debootstrap rootfs=%s mirror=%s", rootfs, mirror)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-DEBOOTSTRAP_LOG_TAIL_CHARS:]
        raise ImageBuildError(f"debootstrap exited {done.returncode}:\n{output}")


def _import_rootfs(rootfs: Path, tag: str, changes: Sequence[str]) -> str:
    """Stream `tar` of the rootfs into the daemon, as `tar -c . | docker import -` does."""
    client = docker.from_env()
    repository, image_tag = parse_repository_tag(tag)
    with subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."],
        stdout=subprocess.PIPE,
    ) as tar:
        client.api.import_image(
            src=tar.stdout,
            repository=repository,
            tag=image_tag or "latest",
            changes=list(changes),
            stream_src=True,
        )
    if tar.returncode != 0:
        raise ImageBuildError(f"tar of {rootfs} exited {tar.returncode}")
    return str(client.images.get(tag).id)

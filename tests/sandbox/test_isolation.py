"""A trial in the Docker sandbox cannot reach beyond its container.

Invariant: trial code (written by a model, so untrusted) has no network, can
write only to /output and to ephemeral, size-capped memory (/tmp, /dev/shm),
cannot see the evaluator or the held-out data, and is not root and cannot
become root. Each test runs the attack inside a real container and reads the
verdict from the last line the trial printed.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.sandbox.contract import Harness

pytestmark = pytest.mark.docker


def verdict(harness: Harness, script: str) -> dict[str, object]:
    """Run `script` as a trial; it must exit 0 and print a JSON verdict last."""
    result = harness.run(script)
    assert result.exit_code == 0, result.log_tail
    parsed: dict[str, object] = json.loads(result.log_tail.splitlines()[-1])
    return parsed


@pytest.fixture
def host_listener() -> Iterator[int]:
    """A port listening on the host's loopback: reachable from the host, not from a trial."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


def test_a_trial_has_no_network_interface_route_or_name_resolution(
    docker_harness: Harness, host_listener: int
) -> None:
    found = verdict(
        docker_harness,
        f"""
        import errno, json, os, socket

        def attempt(connect):
            try:
                connect()
            except OSError as error:
                return errno.errorcode.get(error.errno, type(error).__name__)
            return "connected"

        print(json.dumps({{
            "interfaces": sorted(os.listdir("/sys/class/net")),
            "host_loopback": attempt(
                lambda: socket.create_connection(("127.0.0.1", {host_listener}), timeout=2)
            ),
            "internet": attempt(lambda: socket.create_connection(("1.1.1.1", 53), timeout=2)),
            "dns": attempt(lambda: socket.getaddrinfo("pypi.org", 443)),
        }}))
        """,
    )

    assert found == {
        "interfaces": ["lo"],
        "host_loopback": "ECONNREFUSED",  # the container's own, empty loopback
        "internet": "ENETUNREACH",  # no route at all: nothing leaves the container
        "dns": "gaierror",
    }


def test_a_trial_can_write_only_to_output_and_ephemeral_memory(docker_harness: Harness) -> None:
    found = verdict(
        docker_harness,
        """
        import errno, json

        def attempt(path):
            try:
                with open(path, "w") as f:
                    f.write("x")
            except OSError as error:
                return errno.errorcode[error.errno]
            return "written"

        paths = ["/work/train.py", "/work/new.py", "/etc/profile", "/usr/bin/x", "/x",
                 "/var/tmp/x", "/home/x", "/output/x", "/tmp/x", "/dev/shm/x"]
        print(json.dumps({path: attempt(path) for path in paths}))
        """,
    )

    assert found == {
        "/work/train.py": "EROFS",  # the recipe is mounted read-only
        "/work/new.py": "EROFS",
        "/etc/profile": "EROFS",  # so is the image's root filesystem
        "/usr/bin/x": "EROFS",
        "/x": "EROFS",
        "/var/tmp/x": "EROFS",
        "/home/x": "EROFS",
        "/output/x": "written",
        "/tmp/x": "written",  # tmpfs, size-capped, counted against the memory limit
        "/dev/shm/x": "written",  # Docker's 64 MiB per-container shm, same accounting
    }


def test_a_trial_cannot_see_the_evaluator_or_the_held_out_data(docker_harness: Harness) -> None:
    (docker_harness.evaluator / "secret_rubric.py").write_text("THRESHOLD = 0.94\n")
    found = verdict(
        docker_harness,
        """
        import json, os

        wanted = {"secret_rubric.py", "heldout_labels.txt"}
        seen = []
        for top in sorted(set(os.listdir("/")) - {"proc", "sys", "dev"}):
            for directory, _, files in os.walk("/" + top):
                seen += [os.path.join(directory, name) for name in wanted & set(files)]
        mounts = [line.split()[1] for line in open("/proc/self/mounts")]
        print(json.dumps({
            "found": seen,
            "evaluator_mounted": "/evaluator" in mounts,
            "data_mounted": "/data" in mounts,
        }))
        """,
    )

    assert found == {"found": [], "evaluator_mounted": False, "data_mounted": False}


def test_a_trial_is_not_root_and_cannot_become_root(docker_harness: Harness) -> None:
    found = verdict(
        docker_harness,
        """
        import json, os, subprocess

        status = dict(line.split(":", 1) for line in open("/proc/self/status"))
        try:
            os.setuid(0)
            setuid = "became root"
        except PermissionError:
            setuid = "PermissionError"
        su = subprocess.run(["su", "-c", "id -u", "root"], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True)
        print(json.dumps({
            "id -u": subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip(),
            "euid": os.geteuid(),
            "setuid(0)": setuid,
            "su exit code": su.returncode,
            "su output": su.stdout.strip(),
            "effective capabilities": status["CapEff"].strip(),
            "bounding capabilities": status["CapBnd"].strip(),
            "no new privileges": status["NoNewPrivs"].strip(),
        }))
        """,
    )

    assert found["id -u"] != "0"
    assert found["euid"] != 0
    assert found["setuid(0)"] == "PermissionError"
    assert found["su exit code"] != 0  # setuid bits are ignored under no-new-privileges
    assert found["su output"] == ""
    assert found["effective capabilities"] == "0" * 16
    assert found["bounding capabilities"] == "0" * 16
    assert found["no new privileges"] == "1"

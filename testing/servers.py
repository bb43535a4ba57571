"""Postgres and Redis servers of a test's own, on ports of their own, for fault injection.

A fault test kills and restarts the store and the broker; it must never touch
the machine's shared servers, so each `Server` here is a process this test
started (from the same binaries), on a free loopback port, with its data in
the test's temporary directory, killed only by its own pid.

Postgres refuses to run as root, so under root it runs as the `postgres`
user (`setpriv`, which execs: the pid we hold is the server's own).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT_S = 30.0
POSTGRES_USER = "postgres"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Server:
    """A server process we own: `start`, `kill` (SIGKILL, as a crash), `start` again."""

    name: str
    argv: list[str]
    port: int
    log: Path
    ready: list[str] = field(default_factory=list)  # a command that exits 0 once it serves
    scratch: Path | None = None  # removed when the server stops for good
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._serving():
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.name} did not start on port {self.port}:\n{tail}")
            time.sleep(0.1)

    def _serving(self) -> bool:
        if not _answers(self.port):
            return False
        if not self.ready:
            return True
        return subprocess.run(self.ready, capture_output=True).returncode == 0

    def kill(self) -> None:
        """SIGKILL the server and all it forked (its own process group), as a crash would."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        deadline = time.monotonic() + START_TIMEOUT_S
        while _answers(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        self.kill()
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


def redis_server(root: Path) -> Server:
    """A Redis that keeps nothing on disk: a restart loses every message, as ours does in CI."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(root)]  # fmt: skip
    return Server("redis", argv, port, root / "redis.log")


def postgres_server(root: Path) -> Server:
    """A fresh Postgres cluster in `root`, trusting local connections, not started yet."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not binaries:
        raise RuntimeError("PostgreSQL server binaries are not installed")
    bin_dir = Path(binaries[-1])
    # The cluster lives where its user can reach it (a test's tmp_path is root's alone).
    scratch = Path(tempfile.mkdtemp(prefix="trialforge-postgres-"))
    scratch.chmod(0o755)
    data = scratch / "pgdata"
    data.mkdir(mode=0o700)
    run_as: list[str] = []
    if os.geteuid() == 0:  # postgres never runs as root
        user = pwd.getpwnam(POSTGRES_USER)
        os.chown(data, user.pw_uid, user.pw_gid)
        run_as = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                  "--init-groups", "--"]  # fmt: skip
    subprocess.run(
        [*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", POSTGRES_USER,
         "--auth=trust", "--no-sync"],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    argv = [*run_as, str(bin_dir / "postgres"), "-D", str(data), "-p", str(port),
            "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={data}",
            "-c", "fsync=off"]  # fmt: skip
    ready = [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]
    return Server("postgres", argv, port, root / "postgres.log", ready=ready, scratch=scratch)


def postgres_url(server: Server, database: str = "postgres") -> str:
    return f"postgresql://{POSTGRES_USER}@127.0.0.1:{server.port}/{database}"

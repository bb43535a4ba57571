"""A whole Trialforge deployment for end-to-end tests: real workers, real broker, real store.

`Deployment` starts the scheduler and Celery workers as separate processes
(the same `trialforge` commands an operator runs) against the test's
database and a broker: the embedded SQLite broker beside a SQLite database,
Redis beside Postgres. The recipe is a tiny "training" script whose accuracy
is a known function of its constants, so a test knows which edits improve it.
"""

from __future__ import annotations

import atexit
import itertools
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import redis

from app.cli.launcher import Stack
from app.config import Settings
from testing.factories import commit_all
from testing.servers import Server, redis_server

TRAIN_PY = """\
import json, math, os
from model import WIDTH

LR = 0.1
EPOCHS = 3
# end of hyperparameters

acc = 0.3 + 0.05 * min(EPOCHS, 8) + 0.05 * (WIDTH >= 128) - 0.1 * abs(math.log10(LR / 0.3))
with open(os.path.join(os.environ["TRIALFORGE_OUTPUT"], "model.json"), "w") as f:
    json.dump({"acc": round(acc, 4)}, f)
print(f"trained: acc={acc:.4f}")
"""
MODEL_PY = """\
# architecture
WIDTH = 64
"""
EVALUATE_PY = """\
import json, os
with open(os.path.join(os.environ["TRIALFORGE_OUTPUT"], "model.json")) as f:
    print(json.dumps({"val_acc": json.load(f)["acc"]}))
"""
BASELINE_ACC = 0.4023  # 0.3 + 0.15 - 0.1 * log10(3), rounded as the recipe rounds
LOG_TAIL_CHARS = 16_000  # of the processes' log shown when a test fails
# The control arm alone: one knob of the loop recipe, no model needed.
CONTROL_ONLY = [
    {
        "name": "knobs",
        "kind": "control",
        "surface": {"paths": ["train.py"]},
        "knobs": [
            {
                "name": "lr",
                "file": "train.py",
                "pattern": r"^LR = (\S+)$",
                "kind": "float",
                "low": 0.01,
                "high": 1.0,
            }
        ],
    }
]


def make_loop_recipe(root: Path) -> tuple[Path, Path]:
    """(recipe repo, evaluator dir) for the search-loop tests."""
    repo, evaluator = root / "loop-recipe", root / "loop-evaluator"
    repo.mkdir()
    evaluator.mkdir()
    (repo / "train.py").write_text(TRAIN_PY)
    (repo / "model.py").write_text(MODEL_PY)
    (repo / "data").mkdir()
    (repo / "data" / "README").write_text("frozen data\n")
    commit_all(repo)
    (evaluator / "evaluate.py").write_text(EVALUATE_PY)
    return repo, evaluator


def loop_spec(
    repo: Path, evaluator: Path, agents: list[dict[str, Any]], **search: Any
) -> dict[str, Any]:
    return {
        "name": "loop",
        "description": "Raise the held-out accuracy of a tiny recipe.",
        "repo": str(repo),
        "run": "python3 train.py",
        "evaluator": {
            "path": str(evaluator),
            "command": "python3 evaluate.py",
            "metric": "val_acc",
            "direction": "maximize",
            "gates": ["val_acc >= 0.2"],
            "protected": ["data/**"],
            "wallclock_s": 30,
        },
        "budgets": {
            "trial": {"wallclock_s": 30, "memory": "256MiB", "artifact_max_bytes": "1MB"},
            "search": {"max_trials": 12, "max_concurrent": 2, **search},
        },
        "agents": agents,
    }


@cache
def own_redis() -> Server:
    """A Redis server of this test process's own (started once, stopped at exit).

    Never the machine's shared Redis: flushing a database number there would
    erase whatever someone else keeps in it.
    """
    root = Path(tempfile.mkdtemp(prefix="trialforge-redis-"))
    server = redis_server(root)
    server.scratch = root  # its folder goes with it at exit
    try:
        server.start()
    except RuntimeError as error:
        pytest.fail(f"a Redis server is required beside Postgres: {error}")
    atexit.register(server.stop)
    return server


_redis_databases = itertools.cycle(range(1, 16))


def broker_for(database_url: str, data_dir: Path) -> str:
    """Our own Redis beside Postgres (a flushed DB number), the embedded broker beside SQLite."""
    if not database_url.startswith("postgresql"):
        return f"sqla+sqlite:///{(data_dir / 'broker.db').resolve()}"
    url = f"redis://127.0.0.1:{own_redis().port}/{next(_redis_databases)}"
    redis.Redis.from_url(url).flushdb()
    return url


@dataclass
class Deployment:
    """The service's processes (the launcher's `Stack`), logging to one file in the data dir."""

    stack: Stack
    log_path: Path
    supervised: bool = False
    restarts: list[str] = field(default_factory=list)  # what supervision said it did

    @property
    def env(self) -> dict[str, str]:
        return dict(self.stack.env)

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        return self.stack.start(*args)

    def wait_for(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Poll `condition`; fail with the processes' logs on timeout or if one of them died.

        A supervised deployment restarts a process that died instead, as `trialforge up`
        (or a service manager) would, and counts it in `restarts`.
        """
        deadline = time.monotonic() + timeout_s
        while not condition():
            dead = [] if self.supervised else self.stack.dead()
            if dead or time.monotonic() > deadline:
                why = f"{dead[0]} exited" if dead else f"timed out after {timeout_s}s"
                pytest.fail(f"{why} waiting until {what}\n{self.logs()}")
            if self.supervised:
                self.stack.supervise(self.restarts.append)
            time.sleep(0.25)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]


@contextmanager
def deployment(
    database_url: str,
    data_dir: Path,
    broker_url: str | None = None,
    supervised: bool = False,
    **settings: str,
) -> Iterator[Deployment]:
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "TRIALFORGE_DATABASE_URL": database_url,
        "TRIALFORGE_DATA_DIR": str(data_dir),
        "TRIALFORGE_BROKER_URL": broker_url or broker_for(database_url, data_dir),
        "TRIALFORGE_HEARTBEAT_S": "1",
        **{f"TRIALFORGE_{key.upper()}": value for key, value in settings.items()},
    }
    log_path = data_dir / "deployment.log"
    with log_path.open("ab") as log:
        stack = Stack(env, log)
        stack.prepare(Settings(broker_url=env["TRIALFORGE_BROKER_URL"], data_dir=data_dir))
        try:
            yield Deployment(stack, log_path, supervised)
        finally:
            stack.stop()

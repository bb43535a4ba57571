"""The fault suite's scenarios as a table: counts per scenario and the time to recover.

Runs every scenario of `tests/test_fault_injection.py` (the same ones,
`testing.faults.SCENARIOS`) on a Postgres and a Redis of its own, and prints one row
each: trials counted toward the budget, labels, trials left in flight,
trials with overlapping runs, run containers started, containers and
scratch folders left, and seconds from the fault to the next finished trial.

    python -m benchmarks.faults
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import docker

from testing.faults import SCENARIOS, audit, model_for, rig, run_to_end
from testing.servers import postgres_server, redis_server


def main() -> None:
    client = docker.from_env()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        postgres, redis = postgres_server(root), redis_server(root)
        postgres.start()
        redis.start()
        try:
            print("| scenario | trials | left in flight | overlapping runs | runs | "  # noqa: T201
                  "containers left | scratch left | recovery (s) | labels |")  # fmt: skip
            print("|---|---|---|---|---|---|---|---|---|")  # noqa: T201
            for index, (name, scenario) in enumerate(SCENARIOS.items()):
                started = time.time()
                with (
                    model_for(scenario) as model,
                    rig(
                        postgres, redis, root / f"s{index}", llm_base_url=model, mode=scenario.mode
                    ) as setup,
                ):
                    run_to_end(setup, scenario.fault)
                    found = audit(setup, name, client, started)
                recovery = "-" if found.recovery_s is None else f"{found.recovery_s:.1f}"
                labels = ", ".join(f"{k} {v}" for k, v in found.labels.items())
                print(  # noqa: T201 (a benchmark prints its figures)
                    f"| {name} | {found.trials} | {found.unfinished} | {found.overlapping} | "
                    f"{found.runs} | {found.containers_left} | {found.scratch_left} | "
                    f"{recovery} | {labels} |"
                )
        finally:
            postgres.stop()
            redis.stop()


if __name__ == "__main__":
    main()

"""Per-trial sandbox overhead: a no-op trial through each way of running it.

Measures, in one run and interleaved so drift hits all alike:
- `DockerRunner.run` of `true` (create -> start -> wait -> logs -> remove, all
  hardening on, artifact measured),
- the same with an output cap (a tmpfs volume and its holder container, the
  output copied out through it),
- with `--runtime runsc`, the same under gVisor,
- `docker run --rm <image> true` through the CLI (the yardstick),
- `LocalRunner.run` of `true`,
- a bare `subprocess.run(["true"])`.

Prints p50/p99 in milliseconds and the ratio of ours to `docker run --rm`.

    python benchmarks/sandbox_overhead.py [--runs 50] [--image trialforge/sandbox:latest] \
        [--runtime runsc]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from sandbox import Limits, RunRequest
from sandbox.docker_runner import DockerRunner
from sandbox.image import DEFAULT_TAG
from sandbox.local_runner import LocalRunner

LIMITS = Limits(wallclock_s=30.0, memory_bytes=256 * 1024 * 1024, cpus=1.0)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--image", default=DEFAULT_TAG)
    parser.add_argument("--runtime", help="also measure under this Docker runtime (runsc)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        recipe, output = Path(scratch, "recipe"), Path(scratch, "output")
        recipe.mkdir()
        output.mkdir()
        docker_runner, local_runner = DockerRunner(), LocalRunner()
        other_runtime = DockerRunner(runtime=args.runtime)

        def request(trial_id: int) -> RunRequest:
            return RunRequest(trial_id, args.image, "true", recipe, output, LIMITS)

        def ours() -> None:
            result = docker_runner.run(request(990_001))
            assert result.exit_code == 0, result

        def capped() -> None:
            capped = replace(request(990_003), output_cap_bytes=16 * 1024 * 1024)
            assert docker_runner.run(capped).exit_code == 0

        def under_runtime() -> None:
            assert other_runtime.run(request(990_004)).exit_code == 0

        def docker_cli() -> None:
            subprocess.run(
                ["docker", "run", "--rm", "--network=none", args.image, "true"], check=True
            )

        def local() -> None:
            assert local_runner.run(request(990_002)).exit_code == 0

        def bare() -> None:
            subprocess.run(["true"], check=True)

        cases: dict[str, Callable[[], None]] = {
            "DockerRunner.run": ours,
            "capped output": capped,
            "docker run --rm": docker_cli,
            "LocalRunner.run": local,
            "bare subprocess": bare,
        }
        if args.runtime:
            cases[f"under {args.runtime}"] = under_runtime
        for case in cases.values():  # warm caches, image layers and connections
            case()
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, case in cases.items():
                started = time.perf_counter()
                case()
                samples[name].append((time.perf_counter() - started) * 1000)

    print(f"no-op trial, {args.runs} runs each, interleaved; milliseconds")  # noqa: T201
    print(f"{'case':<20} {'p50':>8} {'p99':>8} {'mean':>8}")  # noqa: T201
    for name, values in samples.items():
        print(  # noqa: T201
            f"{name:<20} {percentile(values, 0.5):>8.1f} {percentile(values, 0.99):>8.1f} "
            f"{statistics.fmean(values):>8.1f}"
        )
    ratio = percentile(samples["DockerRunner.run"], 0.5) / percentile(
        samples["docker run --rm"], 0.5
    )
    print(f"p50 ratio DockerRunner.run / docker run --rm: {ratio:.2f}x (target <= 1.2x)")  # noqa: T201
    extra = percentile(samples["capped output"], 0.5) - percentile(samples["DockerRunner.run"], 0.5)
    print(f"an output cap adds {extra:.0f} ms p50 per run")  # noqa: T201
    if args.runtime:
        extra = percentile(samples[f"under {args.runtime}"], 0.5) - percentile(
            samples["DockerRunner.run"], 0.5
        )
        print(f"{args.runtime} adds {extra:.0f} ms p50 per run")  # noqa: T201


if __name__ == "__main__":
    main()

"""Slot-seconds spent on trials that end in size_failure, with and without a preflight.

A synthetic recipe "trains" for `--train-s` seconds and then saves a model
whose size follows its WIDTH; a third of the edits overshoot the artifact
cap (the paper's most expensive waste). The preflight builds the model
without training and so hits the cap in a fraction of a second. Each edit
runs once with and once without the preflight, through `app.services.run_trial`
on the chosen runner.

    PYTHONPATH=. python benchmarks/preflight_waste.py --runner docker --trials 12
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from app.domain.edits import Replace, render_diff
from app.domain.spec import Preflight, SearchSpec, parse_spec
from app.domain.states import Label
from app.gitstore import GitStore
from app.services.run_trial import execute
from sandbox import Runner
from sandbox.docker_runner import DockerRunner
from sandbox.image import DEFAULT_TAG
from sandbox.local_runner import LocalRunner
from testing.factories import commit_all

TRAIN = """\
import os, sys, time
WIDTH = 100
SAVE_ONLY = "--save-only" in sys.argv
if not SAVE_ONLY:
    time.sleep(float(os.environ.get("TRAIN_S", "{train_s}")))
with open(os.path.join(os.environ["TRIALFORGE_OUTPUT"], "model.bin"), "wb") as f:
    f.write(b"w" * WIDTH * 1000)
"""
EVALUATE = 'import json\nprint(json.dumps({"score": 1.0}))\n'
CAP_BYTES = 500_000  # WIDTH above 500 overshoots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runner", choices=["docker", "local"], default="docker")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--train-s", type=float, default=5.0)
    args = parser.parse_args()
    runner: Runner = DockerRunner() if args.runner == "docker" else LocalRunner()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        store, base, spec = setup(root, args.train_s)
        widths = [200 + 150 * (n % 3) * 2 for n in range(args.trials)]  # 200, 500, 800, ...
        commits = [
            store.apply_diff(
                base,
                render_diff(
                    [Replace("train.py", "WIDTH = 100", f"WIDTH = {w}")],
                    lambda p: store.show_file(base, p),
                ),
                message=f"width {w}",
                ref=f"refs/trials/{n}",
                protected=[],
            )  # fmt: skip
            for n, w in enumerate(widths)
        ]
        checked = spec.model_copy(
            update={"preflight": Preflight(command="python3 train.py --save-only")}
        )
        for name, variant in (("without preflight", spec), ("with preflight", checked)):
            wasted, started, oversized = 0.0, time.perf_counter(), 0
            for n, commit in enumerate(commits):
                begun = time.perf_counter()
                result = execute(store, commit, variant, runner, trial_id=995_000 + n,
                                 scratch_dir=root / "work")  # fmt: skip
                if result.verdict.label is Label.SIZE_FAILURE:
                    oversized += 1
                    wasted += time.perf_counter() - begun
            total = time.perf_counter() - started
            print(  # noqa: T201
                f"{name:<18} {oversized} of {len(commits)} trials size_failure; "
                f"slot-seconds on them {wasted:6.1f}; all trials {total:6.1f}s"
            )


def setup(root: Path, train_s: float) -> tuple[GitStore, str, SearchSpec]:
    recipe, evaluator = root / "recipe", root / "evaluator"
    recipe.mkdir()
    evaluator.mkdir()
    (recipe / "train.py").write_text(TRAIN.replace("{train_s}", str(train_s)))
    (evaluator / "evaluate.py").write_text(EVALUATE)
    commit_all(recipe)
    store, base = GitStore.create(root / "store.git", str(recipe), None)
    spec = parse_spec(
        {
            "name": "preflight",
            "repo": str(recipe),
            "run": "python3 train.py",
            "image": DEFAULT_TAG,
            "evaluator": {"path": str(evaluator), "command": "python3 evaluate.py",
                          "metric": "score", "direction": "maximize"},
            "budgets": {"trial": {"wallclock_s": train_s + 30, "memory": "256MiB",
                                  "artifact_max_bytes": CAP_BYTES}},
            "agents": [{"name": "a", "kind": "llm", "model": "m", "surface": {"paths": ["*"]}}],
        }
    )  # fmt: skip
    return store, base, spec


if __name__ == "__main__":
    main()

"""What split evaluation costs against the simple, unsafe way on the charlm example.

Both score the same trained model on the same 8,000 held-out characters
through the Docker runner. Split: the example as bundled (the trial's
predict.py serves the model from a worker container, the scorer asks over a
Unix socket, 250 requests of 16 positions). Simple: what a user without split
evaluation has to do, the run command copying the recipe's code into /output
and the evaluator importing it beside the held-out data (the hole split
evaluation closes), scoring the same positions in-process. Prints the
evaluation's sandbox seconds, p50 over `--runs`, and the ratio.

    PYTHONPATH=. python benchmarks/split_overhead.py --runs 10
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

from app.domain.spec import load_spec_file
from app.gitstore import GitStore
from app.services.run_trial import execute
from sandbox.docker_runner import DockerRunner

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "charlm"
# The simple evaluator: the trial's own code imported from /output, next to the data.
SIMPLE_SCORER = """
import math, os, sys
sys.path.insert(0, os.environ["TRIALFORGE_OUTPUT"])
import predict
from trialforge_model import autoregressive

VOCAB = "".join(chr(code) for code in range(32, 127)) + "\\n"
text = open(os.path.join(os.environ["TRIALFORGE_DATA"], "heldout.txt")).read()
text = "".join(char if char in VOCAB else " " for char in text)
nats = count = 0
for prefixes, targets in autoregressive(text, 16, 64):
    for row, target in zip(predict.predict({"prefixes": prefixes, "vocab": VOCAB}), targets):
        top = max(row)
        nats += top + math.log(sum(math.exp(x - top) for x in row)) - row[VOCAB.index(target)]
        count += 1
print('{"bpc": %r}' % (nats / count / math.log(2)))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        shutil.copytree(EXAMPLE, root / "charlm")
        (root / "charlm" / "evaluator" / "simple.py").write_text(SIMPLE_SCORER)
        (root / "charlm" / "evaluator" / "trialforge_model.py").write_text(
            (Path(__file__).resolve().parent.parent / "sandbox" / "split" / "trialforge_model.py")
            .read_text()
        )  # fmt: skip
        split = load_spec_file(root / "charlm" / "spec.yaml")
        evaluator = split.evaluator.model_copy(
            update={"worker": None, "command": "python3 simple.py"}
        )
        simple = split.model_copy(
            update={"evaluator": evaluator,
                    "run": "python3 train.py && cp model.py predict.py $TRIALFORGE_OUTPUT/"}
        )  # fmt: skip
        store, base = GitStore.create(root / "store.git", str(root / "charlm" / "recipe"), None)
        runner = DockerRunner()
        seconds: dict[str, list[float]] = {"split": [], "simple": []}
        scores: dict[str, float | None] = {}
        for n in range(args.runs):
            for name, spec in (("split", split), ("simple", simple)):
                done = execute(store, base, spec, runner, trial_id=990_100 + n,
                               scratch_dir=root / "work")  # fmt: skip
                assert done.evaluation is not None, done.verdict
                seconds[name].append(done.eval_s)
                scores[name] = done.verdict.score
    print(f"charlm, {args.runs} evaluations each, interleaved; evaluation sandbox seconds")  # noqa: T201
    for name, values in seconds.items():
        print(  # noqa: T201
            f"{name:<7} p50 {statistics.median(values):.2f} s, max {max(values):.2f} s, "
            f"bpc {scores[name]:.4f}"
        )
    ratio = statistics.median(seconds["split"]) / statistics.median(seconds["simple"])
    print(f"split / simple: {ratio:.2f}x")  # noqa: T201


if __name__ == "__main__":
    main()

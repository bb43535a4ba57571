"""The contract every `Runner` honours; each implementation's test class inherits it.

Whatever the isolation, a runner reports what it measured (exit code, OOM,
deadline, wall-clock, artifact bytes), keeps a bounded log tail, scores only
through the evaluator's last JSON line, kills a trial promptly at its deadline,
leaves nothing of a trial behind, and can sweep what a killed worker left.
A subclass provides the `runner`, `image` and `leftovers` fixtures.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from sandbox import Backend, EvalRequest, EvalResult, Limits, Runner, RunRequest, RunResult
from sandbox.logtail import DROPPED_NOTICE, LOG_TAIL_BYTES

MiB = 1024 * 1024
LIMITS = Limits(wallclock_s=20.0, memory_bytes=64 * MiB, cpus=1.0)
SHORT_DEADLINE = replace(LIMITS, wallclock_s=1.0)
KILL_SLACK_S = 2.0  # how long past its deadline a trial may take to be killed and cleaned up
POLL_TIMEOUT_S = 15.0

# Stands in for a worker: runs one trial and is SIGKILLed by the test mid-run.
WORKER = """
import sys
from pathlib import Path
from sandbox import Backend, Limits, RunRequest
from sandbox.select import make_runner
kind, image, trial_id, recipe, output = sys.argv[1:]
limits = Limits(wallclock_s=60.0, memory_bytes=64 * 1024 * 1024, cpus=1.0)
request = RunRequest(int(trial_id), image, "python3 train.py", Path(recipe), Path(output), limits,
                     owner="doomed-host:1")
make_runner(Backend(kind)).run(request)
"""


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` until it holds; fail after POLL_TIMEOUT_S instead of hanging."""
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {POLL_TIMEOUT_S}s waiting until {what}")
        time.sleep(0.05)


@dataclass
class Harness:
    """One trial's directories and the runner under test."""

    runner: Runner
    image: str
    trial_id: int
    root: Path

    @classmethod
    def create(cls, runner: Runner, image: str, trial_id: int, root: Path) -> Harness:
        for name in ("recipe", "output", "evaluator", "data"):
            (root / name).mkdir()
        (root / "data" / "heldout_labels.txt").write_text("1\n0\n1\n1\n")
        return cls(runner, image, trial_id, root)

    @property
    def recipe(self) -> Path:
        return self.root / "recipe"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def evaluator(self) -> Path:
        return self.root / "evaluator"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def run(
        self, script: str, limits: Limits = LIMITS, output_cap_bytes: int | None = None
    ) -> RunResult:
        (self.recipe / "train.py").write_text(textwrap.dedent(script))
        request = RunRequest(
            trial_id=self.trial_id,
            image=self.image,
            command="python3 train.py",
            recipe_dir=self.recipe,
            output_dir=self.output,
            limits=limits,
            env={"LEARNING_RATE": "0.1"},
            output_cap_bytes=output_cap_bytes,
        )
        return self.runner.run(request)

    def evaluate(self, script: str, limits: Limits = LIMITS) -> EvalResult:
        (self.evaluator / "evaluate.py").write_text(textwrap.dedent(script))
        request = EvalRequest(
            trial_id=self.trial_id,
            image=self.image,
            command="python3 evaluate.py",
            evaluator_dir=self.evaluator,
            data_dir=self.data,
            output_dir=self.output,
            limits=limits,
        )
        return self.runner.evaluate(request)


class RunnerContract:
    kind: Backend

    @pytest.fixture
    def runner(self) -> Runner:
        raise NotImplementedError

    @pytest.fixture
    def image(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def leftovers(self) -> Callable[[int], int]:
        """How many containers or processes of a trial id still exist."""
        raise NotImplementedError

    @pytest.fixture
    def harness(self, runner: Runner, image: str, trial_id: int, tmp_path: Path) -> Harness:
        return Harness.create(runner, image, trial_id, tmp_path)

    def test_a_successful_trial_exits_zero_with_its_output_and_wallclock_measured(
        self, harness: Harness
    ) -> None:
        result = harness.run(
            """
            import os
            out = os.environ["TRIALFORGE_OUTPUT"]
            with open(os.path.join(out, "model.bin"), "wb") as f:
                f.write(b"w" * 1234)
            print("trained with lr", os.environ["LEARNING_RATE"])
            """
        )

        assert result.infra_error is None
        assert (result.exit_code, result.oom_killed, result.timed_out) == (0, False, False)
        assert (harness.output / "model.bin").read_bytes() == b"w" * 1234
        assert result.artifact_bytes == 1234
        assert "trained with lr 0.1" in result.log_tail
        assert 0 < result.wallclock_s < LIMITS.wallclock_s
        assert result.isolated is harness.runner.isolated

    def test_a_crashing_trial_reports_its_exit_code_and_traceback(self, harness: Harness) -> None:
        result = harness.run('raise RuntimeError("diverged at step 3")')

        assert result.infra_error is None
        assert (result.exit_code, result.oom_killed, result.timed_out) == (1, False, False)
        assert "RuntimeError: diverged at step 3" in result.log_tail

    def test_a_trial_past_its_deadline_is_killed_promptly_and_marked_timed_out(
        self, harness: Harness
    ) -> None:
        started = time.monotonic()
        result = harness.run(
            """
            import time
            print("epoch 1", flush=True)
            time.sleep(60)
            """,
            limits=SHORT_DEADLINE,
        )
        elapsed = time.monotonic() - started

        assert result.timed_out
        assert not result.oom_killed
        assert result.exit_code != 0
        assert SHORT_DEADLINE.wallclock_s <= result.wallclock_s < elapsed
        assert elapsed < SHORT_DEADLINE.wallclock_s + KILL_SLACK_S
        assert "epoch 1" in result.log_tail

    def test_a_trial_allocating_past_its_memory_limit_is_reported_oom_killed(
        self, harness: Harness
    ) -> None:
        result = harness.run('weights = b"x" * (512 * 1024 * 1024)')

        assert result.infra_error is None
        assert result.oom_killed
        assert not result.timed_out
        assert result.exit_code != 0

    def test_artifact_bytes_count_every_file_the_trial_left_in_output(
        self, harness: Harness
    ) -> None:
        result = harness.run(
            """
            import os
            out = os.environ["TRIALFORGE_OUTPUT"]
            os.makedirs(os.path.join(out, "checkpoints", "epoch-1"))
            with open(os.path.join(out, "checkpoints", "epoch-1", "model.bin"), "wb") as f:
                f.write(os.urandom(3 * 1024 * 1024))
            with open(os.path.join(out, "notes.txt"), "w") as f:
                f.write("n" * 1000)
            """
        )

        assert result.exit_code == 0
        assert result.artifact_bytes == 3 * MiB + 1000

    @pytest.mark.parametrize("cap", [None, 4 * MiB], ids=["uncapped", "capped"])
    def test_no_link_fifo_or_socket_in_output_reaches_the_evaluator(
        self, harness: Harness, cap: int | None
    ) -> None:
        """Issue 17: the evaluator followed a symlink planted in /output and read the
        held-out data through it. Only regular files and directories leave the trial."""
        result = harness.run(
            """
            import os, socket
            out = os.environ["TRIALFORGE_OUTPUT"]
            os.symlink("/data/heldout_labels.txt", os.path.join(out, "model.bin"))
            os.makedirs(os.path.join(out, "ckpt"))
            os.symlink("/", os.path.join(out, "ckpt", "root"))
            os.symlink("/data", os.path.join(out, "data"))
            os.mkfifo(os.path.join(out, "pipe"))
            socket.socket(socket.AF_UNIX).bind(os.path.join(out, "sock"))
            with open(os.path.join(out, "ckpt", "weights.bin"), "wb") as f:
                f.write(b"w" * 100)
            """,
            output_cap_bytes=cap,
        )
        seen = harness.evaluate(
            """
            import json, os, stat
            out = os.environ["TRIALFORGE_OUTPUT"]
            kinds = {}
            for directory, dirs, files in os.walk(out):
                for name in dirs + files:
                    path = os.path.join(directory, name)
                    mode = os.lstat(path).st_mode
                    plain = "file" if stat.S_ISREG(mode) else "other"
                    kinds[os.path.relpath(path, out)] = "dir" if stat.S_ISDIR(mode) else plain
            print(json.dumps(kinds))
            print(json.dumps({"entries": len(kinds)}))
            """
        )

        assert result.exit_code == 0, result.log_tail
        entries = json.loads(seen.log_tail.strip().splitlines()[-2])
        assert entries == {"ckpt": "dir", "ckpt/weights.bin": "file"}
        assert "symlink model.bin -> /data/heldout_labels.txt" in result.removed
        # (The FIFO and the socket never reach the host's disk under gVisor: nothing to remove.)
        assert "symlink ckpt/root -> /" in result.removed
        assert "removed from /output before anything read it" in result.log_tail
        assert result.artifact_bytes == 100

    def test_the_log_tail_stays_bounded_when_a_trial_prints_megabytes(
        self, harness: Harness
    ) -> None:
        result = harness.run(
            """
            import sys
            sys.stdout.write(("x" * 99 + "\\n") * 50_000)
            print("final loss 0.25")
            """
        )

        assert result.exit_code == 0
        assert len(result.log_tail.encode()) <= LOG_TAIL_BYTES
        assert DROPPED_NOTICE in result.log_tail
        assert result.log_tail.endswith("final loss 0.25\n")

    def test_nothing_of_a_trial_outlives_its_run(
        self, harness: Harness, leftovers: Callable[[int], int]
    ) -> None:
        result = harness.run(
            """
            import subprocess, time
            subprocess.Popen(["sleep", "60"], start_new_session=True)
            time.sleep(60)
            """,
            limits=SHORT_DEADLINE,
        )

        assert result.timed_out
        assert leftovers(harness.trial_id) == 0

    def test_sweep_removes_what_a_killed_worker_left_running(
        self, harness: Harness, leftovers: Callable[[int], int]
    ) -> None:
        (harness.recipe / "train.py").write_text(
            "import os, time\n"
            "open(os.path.join(os.environ['TRIALFORGE_OUTPUT'], 'started'), 'w').close()\n"
            "time.sleep(60)\n"
        )
        worker = subprocess.Popen(
            [sys.executable, "-c", WORKER, self.kind, harness.image, str(harness.trial_id)]
            + [str(harness.recipe), str(harness.output)]
        )
        try:
            wait_until((harness.output / "started").exists, "the trial started")
        finally:
            worker.kill()
            worker.wait()
        left = leftovers(harness.trial_id)
        assert left, "a worker killed mid-run should leave its trial running"
        assert harness.runner.live_trials()[harness.trial_id] == {"doomed-host:1"}

        # A sweep by owner spares what others started (the attempt that replaced it).
        assert harness.runner.sweep([harness.trial_id], owners=["another-host:2"]) == 0
        assert leftovers(harness.trial_id) == left
        assert harness.runner.sweep([harness.trial_id], owners=["doomed-host:1"]) == left
        wait_until(lambda: leftovers(harness.trial_id) == 0, "the sweep took effect")
        assert harness.trial_id not in harness.runner.live_trials()

    def test_evaluate_reads_metrics_from_the_last_json_line_of_stdout(
        self, harness: Harness
    ) -> None:
        (harness.output / "predictions.txt").write_text("1\n0\n0\n1\n")
        result = harness.evaluate(
            """
            import json, os, sys
            labels = open(os.path.join(os.environ["TRIALFORGE_DATA"], "heldout_labels.txt")).read()
            preds = open(os.path.join(os.environ["TRIALFORGE_OUTPUT"], "predictions.txt")).read()
            print("scoring 4 examples")
            print("warning: slow disk", file=sys.stderr)
            print(json.dumps({"val_acc": 0.75}))
            pairs = zip(labels.split(), preds.split())
            print(json.dumps({"val_acc": sum(a == b for a, b in pairs) / 4, "n": 4}))
            print()
            """
        )

        assert result.infra_error is None
        assert (result.exit_code, result.timed_out, result.error) == (0, False, None)
        assert result.metrics == {"val_acc": 0.75, "n": 4}
        assert "scoring 4 examples" in result.log_tail
        assert "warning: slow disk" in result.log_tail

    def test_evaluate_reports_a_clear_error_when_stdout_holds_no_json_object(
        self, harness: Harness
    ) -> None:
        result = harness.evaluate('print("val_acc: 0.93")\nprint("[0.93]")')

        assert result.exit_code == 0
        assert result.metrics is None
        assert result.error == "no stdout line is a JSON object; the last was '[0.93]'"

    def test_evaluate_trusts_no_metrics_from_an_evaluator_that_failed(
        self, harness: Harness
    ) -> None:
        result = harness.evaluate(
            """
            import json
            print(json.dumps({"val_acc": 1.0}))
            raise SystemExit(2)
            """
        )

        assert result.exit_code == 2
        assert result.metrics is None
        assert result.error == "evaluator exited with code 2"

    def test_evaluate_marks_an_evaluator_past_its_deadline(self, harness: Harness) -> None:
        result = harness.evaluate("import time\ntime.sleep(60)", limits=SHORT_DEADLINE)

        assert result.timed_out
        assert result.metrics is None
        assert result.error == "evaluator exceeded its wall-clock limit"

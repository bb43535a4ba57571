"""A trial commit runs end to end (legality, sandbox, evaluator, label) on each runner.

Invariant: the label and the score come from what the runner measured and
what the service's evaluator printed, never from the trial; a commit that
touches a protected path never runs at all.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import docker
import pytest

from app.domain.edits import Replace, render_diff
from app.domain.seeds import Execution, repeat_seeds
from app.domain.spec import BudgetUnit, Gate, NoiseSpec, Preflight, SearchSpec, parse_spec
from app.domain.states import Direction, Label
from app.fingerprint import directory_digest
from app.gitstore import GitStore
from app.services.run_trial import execute
from sandbox import EvalRequest, EvalResult, Runner, RunRequest, RunResult
from sandbox.docker_runner import TRIAL_LABEL, DockerRunner
from sandbox.image import DEFAULT_TAG
from sandbox.local_runner import LocalRunner
from testing.factories import commit_all

# The baseline recipe: "trains" a model whose accuracy is the constant ACC.
TRAIN_PY = """\
import json, os
ACC = 0.9
with open(os.path.join(os.environ["TRIALFORGE_OUTPUT"], "model.json"), "w") as f:
    json.dump({"acc": ACC}, f)
print("trained")
"""

# The evaluator: reads the trial's artifact, reports its accuracy, and checks the
# held-out data is mounted (it would raise otherwise).
EVALUATE_PY = """\
import json, os
with open(os.path.join(os.environ["TRIALFORGE_DATA"], "heldout.txt")) as f:
    assert f.read() == "secret\\n"
with open(os.path.join(os.environ["TRIALFORGE_OUTPUT"], "model.json")) as f:
    model = json.load(f)
print("scoring")
print(json.dumps({"val_acc": model["acc"]}))
"""

MiB = 1024 * 1024
WALLCLOCK_S = 3


@pytest.fixture
def store(tmp_path: Path) -> tuple[GitStore, str]:
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    (recipe / "train.py").write_text(TRAIN_PY)
    (recipe / "data").mkdir()
    (recipe / "data" / "train.csv").write_text("x,y\n")
    commit_all(recipe)
    return GitStore.create(tmp_path / "store.git", str(recipe), None)


@pytest.fixture
def spec(tmp_path: Path) -> SearchSpec:
    evaluator, data = tmp_path / "evaluator", tmp_path / "heldout"
    evaluator.mkdir()
    data.mkdir()
    (evaluator / "evaluate.py").write_text(EVALUATE_PY)
    (data / "heldout.txt").write_text("secret\n")
    raw: dict[str, Any] = {
        "name": "execution",
        "repo": str(tmp_path / "recipe"),
        "run": "python3 train.py",
        "image": DEFAULT_TAG,
        "evaluator": {
            "path": str(evaluator),
            "data": str(data),
            "command": "python3 evaluate.py",
            "metric": "val_acc",
            "direction": "maximize",
            "gates": ["val_acc >= 0.5"],
            "protected": ["data/**"],
            "wallclock_s": 20,
        },
        "budgets": {
            "trial": {"wallclock_s": WALLCLOCK_S, "memory": "256MiB", "artifact_max_bytes": MiB}
        },
        "agents": [{"name": "a", "kind": "llm", "model": "m", "surface": {"paths": ["*"]}}],
    }
    return parse_spec(raw)


def commit_edit(
    store: tuple[GitStore, str], new_train: str, *, path: str = "train.py", protected: list[str]
) -> str:
    repo, base = store
    old = repo.show_file(base, path) if path in repo.list_files(base) else ""
    diff = "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new_train.splitlines(keepends=True),
            f"a/{path}" if old else "/dev/null",
            f"b/{path}",
        )
    )
    return repo.apply_diff(
        base, diff, message="edit", ref=f"refs/trials/{abs(hash(diff))}", protected=protected
    )


def with_body(body: str) -> str:
    return TRAIN_PY.replace('print("trained")\n', body)


CASES = {
    "ok": (TRAIN_PY.replace("ACC = 0.9", "ACC = 0.95"), Label.OK, 0.95),
    "crash": (with_body("raise ValueError('bad shape')\n"), Label.CRASH, None),
    "budget_overrun": (with_body("import time\ntime.sleep(60)\n"), Label.BUDGET_OVERRUN, None),
    "oom": (with_body("hog = bytearray(1024 * 1024 * 1024)\n"), Label.OOM, None),
    "size_failure": (
        with_body(
            "open(os.path.join(os.environ['TRIALFORGE_OUTPUT'], 'w'), 'wb')"
            ".write(b'0' * 2 * 1024 * 1024)\n"
        ),
        Label.SIZE_FAILURE,
        None,
    ),
    "gate_miss": (TRAIN_PY.replace("ACC = 0.9", "ACC = 0.3"), Label.GATE_MISS, 0.3),
    "evaluator_error": (
        TRAIN_PY.replace("ACC = 0.9", "ACC = float('nan')"),
        Label.EVALUATOR_ERROR,
        None,
    ),
}


@pytest.mark.parametrize(("train", "expected", "score"), CASES.values(), ids=CASES.keys())
def test_a_trial_gets_the_label_and_score_its_behaviour_earns(
    runner: Runner,
    store: tuple[GitStore, str],
    spec: SearchSpec,
    tmp_path: Path,
    train: str,
    expected: Label,
    score: float | None,
) -> None:
    commit = commit_edit(store, train, protected=spec.evaluator.protected)

    result = execute(store[0], commit, spec, runner, trial_id=4242, scratch_dir=tmp_path / "work")

    assert (result.verdict.label, result.verdict.score) == (expected, score), result
    assert result.run is not None and result.run.isolated is runner.isolated
    if expected is Label.BUDGET_OVERRUN:
        assert result.run.wallclock_s < WALLCLOCK_S + 2
    assert list((tmp_path / "work").iterdir()) == []  # scratch space is cleaned up


def test_the_baseline_commit_runs_and_the_evaluator_sees_the_held_out_data(
    runner: Runner, store: tuple[GitStore, str], spec: SearchSpec, tmp_path: Path
) -> None:
    repo, base = store

    result = execute(repo, base, spec, runner, trial_id=4243, scratch_dir=tmp_path / "work")

    assert result.verdict.label is Label.OK, result
    assert result.evaluation is not None and result.evaluation.metrics == {"val_acc": 0.9}
    assert "scoring" in result.evaluation.log_tail
    assert result.run is not None and "trained" in result.run.log_tail


def test_a_commit_touching_a_protected_path_never_runs(
    store: tuple[GitStore, str], spec: SearchSpec, tmp_path: Path
) -> None:
    # Committed by something that skipped the check (a merge, an older spec):
    # execution checks again before any code runs.
    commit = commit_edit(store, "x,y\n1,2\n", path="data/train.csv", protected=[])
    result = execute(store[0], commit, spec, LocalRunner(), trial_id=4244, scratch_dir=tmp_path)

    assert result.verdict.label is Label.ILLEGAL_EDIT
    assert "'data/train.csv' is protected" in result.verdict.reason
    assert result.run is None


@pytest.mark.docker
def test_no_labelled_container_is_left_after_a_deadline_kill(
    docker_client: docker.DockerClient,
    sandbox_image: str,
    store: tuple[GitStore, str],
    spec: SearchSpec,
    tmp_path: Path,
) -> None:
    commit = commit_edit(store, CASES["budget_overrun"][0], protected=[])

    execute(
        store[0], commit, spec, DockerRunner(docker_client), trial_id=4245, scratch_dir=tmp_path
    )

    left = docker_client.containers.list(
        all=True, ignore_removed=True, filters={"label": f"{TRIAL_LABEL}=4245"}
    )
    assert left == []


class CountingRunner:
    """A real runner that also counts the runs it was asked for."""

    def __init__(self, inner: Runner) -> None:
        self.inner, self.commands = inner, list[str]()
        self.evaluations = list[EvalRequest]()
        self.isolated = inner.isolated

    def run(self, request: RunRequest) -> RunResult:
        self.commands.append(request.command)
        return self.inner.run(request)

    def evaluate(self, request: EvalRequest) -> EvalResult:
        self.evaluations.append(request)
        return self.inner.evaluate(request)

    def live_trials(self) -> dict[int, set[str]]:
        return self.inner.live_trials()

    def sweep(
        self, trial_ids: Collection[int] | None = None, owners: Collection[str] | None = None
    ) -> int:
        return self.inner.sweep(trial_ids, owners)


CHECK = "python3 -c \"compile(open('train.py').read(), 'train.py', 'exec')\""
PREFLIGHT = {"command": f"{CHECK} && python3 size_check.py",
             "wallclock_s": 20}  # fmt: skip
SIZE_CHECK = "import os\nopen(os.environ['TRIALFORGE_OUTPUT'] + '/w', 'wb').write(b'0' * {n})\n"


@pytest.mark.parametrize(
    ("train", "size", "expected", "reason"),
    [
        (TRAIN_PY.replace("ACC = 0.9", "ACC = (0.9"), 10, Label.PREFLIGHT_CRASH, "SyntaxError"),
        (TRAIN_PY.replace("ACC = 0.9", "ACC = 0.95"), 2 * MiB, Label.SIZE_FAILURE,
         "at preflight"),
    ],
    ids=["syntax error", "oversized at preflight"],
)  # fmt: skip
def test_a_failing_preflight_leaves_no_full_run(
    runner: Runner,
    store: tuple[GitStore, str],
    spec: SearchSpec,
    tmp_path: Path,
    train: str,
    size: int,
    expected: Label,
    reason: str,
) -> None:
    repo, base = store
    edit = commit_edit(store, train, protected=[])
    commit = repo.apply_diff(
        edit, _new_file("size_check.py", SIZE_CHECK.format(n=size)), message="size check",
        ref=f"refs/trials/size-{size}", protected=[],
    )  # fmt: skip
    counting = CountingRunner(runner)
    checked = spec.model_copy(update={"preflight": Preflight.model_validate(PREFLIGHT)})

    result = execute(repo, commit, checked, counting, trial_id=4250, scratch_dir=tmp_path / "w")

    assert result.verdict.label is expected, result.verdict
    assert counting.commands == [PREFLIGHT["command"]]  # the full run never started
    if expected is Label.PREFLIGHT_CRASH:
        assert result.run is not None and reason in result.run.log_tail
    else:
        assert reason in result.verdict.reason


def test_a_changed_evaluator_is_detected_and_the_trial_is_not_scored(
    store: tuple[GitStore, str], spec: SearchSpec, tmp_path: Path
) -> None:
    repo, base = store
    evaluator = Path(spec.evaluator.path)
    before = directory_digest(evaluator, Path(spec.evaluator.data or ""))
    first = execute(repo, base, spec, LocalRunner(), trial_id=4251, scratch_dir=tmp_path,
                    evaluator_digest=before)  # fmt: skip
    (evaluator / "evaluate.py").write_text(EVALUATE_PY.replace('"val_acc"', '"val_acc" ') + "\n")

    second = execute(repo, base, spec, LocalRunner(), trial_id=4252, scratch_dir=tmp_path,
                     evaluator_digest=before)  # fmt: skip

    assert (first.verdict.label, first.evaluator_changed) == (Label.OK, False)
    assert first.evaluator_digest == before
    assert (second.verdict.label, second.evaluator_changed) == (Label.EVALUATOR_ERROR, True)
    assert "changed since the search started" in second.verdict.reason
    assert second.evaluation is None


def _new_file(path: str, content: str) -> str:
    lines = content.splitlines(keepends=True)
    body = "".join("+" + line for line in lines)
    return f"--- /dev/null\n+++ b/{path}\n@@ -0,0 +1,{len(lines)} @@\n{body}"


NOISY_TRAIN = """\
import json, os, random
TRUE = 0.80
noise = random.Random(int(os.environ["SEED"]) * 7919).gauss(0, 0.01)
with open(os.path.join(os.environ["TRIALFORGE_OUTPUT"], "model.json"), "w") as f:
    json.dump({"acc": TRUE + noise}, f)
"""


def test_seeds_reach_the_recipe_and_a_nominee_is_confirmed_on_fresh_seeds(
    store: tuple[GitStore, str], spec: SearchSpec, tmp_path: Path
) -> None:
    repo, base = store
    noisy = spec.model_copy(update={"noise": NoiseSpec(baseline_runs=4, confirm_runs=3)})
    baseline_commit = commit_edit(store, NOISY_TRAIN, protected=[])
    raise_true = render_diff([Replace("train.py", "TRUE = 0.80", "TRUE = 0.90")],
                             lambda path: repo.show_file(baseline_commit, path))  # fmt: skip
    better = repo.apply_diff(baseline_commit, raise_true, message="better",
                             ref="refs/trials/better", protected=[])  # fmt: skip
    seeds: list[int] = []
    nominations: list[bool] = []

    def run(commit: str) -> Callable[[int], Execution]:
        def once(seed: int) -> Execution:
            seeds.append(seed)
            return execute(repo, commit, noisy, LocalRunner(), trial_id=4260,
                           scratch_dir=tmp_path, seed=seed)  # fmt: skip

        return once

    base_runs = repeat_seeds(run(baseline_commit), noisy.noise, baseline=True, best_runs=[],
                             direction=Direction.MAXIMIZE)  # fmt: skip
    candidate = repeat_seeds(run(better), noisy.noise, baseline=False,
                             best_runs=list(base_runs.runs), direction=Direction.MAXIMIZE,
                             best_seeds=[s.seed for s in base_runs.seeds],
                             noise_sd=0.01, nominate=lambda: nominations.append(True))  # fmt: skip

    # The baseline's seeds, the candidate's nominating run, then confirmation on seeds
    # that neither the nominating run nor any of the best's runs used.
    assert seeds == [0, 1, 2, 3, 0, 4, 5, 6]
    assert [s.seed for s in candidate.seeds] == [0, 4, 5, 6]
    assert len(set(base_runs.runs)) == 4  # each seed gave its own score
    assert base_runs.verdict.score == pytest.approx(sum(base_runs.runs) / 4)
    assert nominations == [True]
    assert len(candidate.runs) == 4 and candidate.confirmation == candidate.runs[1:]
    assert candidate.verdict.reason == f"mean {candidate.verdict.score:.6g} over 4 seeds"


SEEDED_ACC = """\
import json, os
ACC = {0: 0.79, 1: 0.83}[int(os.environ["SEED"])]
with open(os.path.join(os.environ["TRIALFORGE_OUTPUT"], "model.json"), "w") as f:
    json.dump({"acc": ACC}, f)
"""


@pytest.mark.parametrize(
    ("seed_one", "on_mean", "expected", "reason_part"),
    [
        ("0.83", True, Label.OK, "mean 0.81 over 2 seeds"),
        ("0.80", True, Label.GATE_MISS, "2 seeds: val_acc = 0.795 (mean) fails val_acc >= 0.8"),
        ("0.83", False, Label.GATE_MISS, "val_acc = 0.79 fails val_acc >= 0.8"),
    ],
    ids=["mean passes", "mean misses", "each run gated"],
)  # fmt: skip
def test_gates_can_apply_to_the_mean_over_seeds(
    store: tuple[GitStore, str],
    spec: SearchSpec,
    tmp_path: Path,
    seed_one: str,
    on_mean: bool,
    expected: Label,
    reason_part: str,
) -> None:
    repo, _ = store
    commit = commit_edit(store, SEEDED_ACC.replace("1: 0.83", f"1: {seed_one}"), protected=[])
    gated = spec.model_copy(
        update={
            "noise": NoiseSpec(baseline_runs=2, gates_on_mean=on_mean),
            "evaluator": spec.evaluator.model_copy(update={"gates": [Gate.model_validate(
                "val_acc >= 0.8")]}),
        }
    )  # fmt: skip

    def once(seed: int) -> Execution:
        return execute(repo, commit, gated, LocalRunner(), trial_id=4270, scratch_dir=tmp_path,
                       seed=seed)  # fmt: skip

    assert gated.noise is not None
    result = repeat_seeds(once, gated.noise, baseline=True, best_runs=[],
                          direction=Direction.MAXIMIZE,
                          mean_gates=gated.evaluator.gates if on_mean else ())  # fmt: skip

    assert result.verdict.label is expected, result.verdict
    assert reason_part in result.verdict.reason


def test_the_evaluator_runs_in_its_own_image_with_its_own_limits(
    store: tuple[GitStore, str], spec: SearchSpec, tmp_path: Path
) -> None:
    """Issue 20: a torch evaluator needs its own image and budget, not the trial's."""
    repo, base = store
    evaluator = spec.evaluator.model_copy(
        update={"image": "scorer:torch", "cpus": 3.0, "memory": 512 * MiB, "wallclock_s": 42.0}
    )
    runner = CountingRunner(LocalRunner())
    own = spec.model_copy(update={"evaluator": evaluator})

    execute(repo, base, own, runner, trial_id=4262, scratch_dir=tmp_path)
    execute(repo, base, spec, runner, trial_id=4263, scratch_dir=tmp_path)

    mine, default = runner.evaluations
    assert (mine.image, mine.limits.cpus, mine.limits.memory_bytes, mine.limits.wallclock_s) == (
        "scorer:torch", 3.0, 512 * MiB, 42.0,
    )  # fmt: skip
    assert (default.image, default.limits.cpus) == (spec.image, spec.budgets.trial.cpus)


def test_a_cpu_seconds_budget_runs_where_cpu_time_is_counted_and_nowhere_else(
    runner: Runner, store: tuple[GitStore, str], spec: SearchSpec, tmp_path: Path
) -> None:
    repo, _ = store
    budget = spec.budgets.trial.model_copy(update={"unit": BudgetUnit.CPU_SECONDS, "limit": 0.5})
    counted = spec.model_copy(update={"budgets": spec.budgets.model_copy(update={"trial": budget})})
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 20: pass\n"
    burns = commit_edit(store, with_body(burn), protected=["data/**"])

    done = execute(repo, burns, counted, runner, trial_id=abs(hash(burns)) % 10**6,
                   scratch_dir=tmp_path / "work")  # fmt: skip

    if isinstance(runner, LocalRunner):
        assert done.verdict.label is Label.INFRA_ERROR
        assert "cannot count CPU time" in done.verdict.reason
    else:
        assert done.verdict.label is Label.BUDGET_OVERRUN, done.verdict.reason
        assert "0.5 CPU-seconds budget" in done.verdict.reason
        assert done.cpu_s is not None and done.cpu_s > 0.5

"""Split evaluation owns the metric when the agents write the model (issue 17).

The bundled charlm example runs end to end: its recipe trains a character
model, the trial's own predict.py serves it from a model worker, and the
service's scorer computes bits per character without importing trial code.
Invariants, on the Docker runner: a model that looks for the held-out data
finds none; a model that looks at other positions of a request for its
target finds none (each request holds one position of disjoint streams); a
model that prints or writes a score of its own changes nothing (the scorer
normalises what it gets and scores it itself); a model that fails the
protocol is the trial's `crash`, with the reason; a broken scorer is the
evaluator's own failure. The local runner runs the same split (unisolated).
"""

from __future__ import annotations

import difflib
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import docker
import pytest

from app.domain.seeds import Execution
from app.domain.spec import SearchSpec, load_spec_file
from app.domain.states import Label
from app.gitstore import GitStore
from app.services.run_trial import execute
from sandbox import Runner
from sandbox.docker_runner import TRIAL_LABEL, DockerRunner

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "charlm"
UNIFORM_BPC = math.log2(96)

# Hostile edits of model.py, the agents' surface: each replaces how log_probs answers
# (the honest one stays as `_honest`; predict.py, which calls it, is protected).
PEEKS = """
    def log_probs(self, prefix, vocab):
        global FOUND
        if FOUND is None:
            import glob
            FOUND = ""
            places = ["/data/*", "/*/heldout*", "/*/*/heldout*"]
            for path in [found for place in places for found in glob.glob(place)]:
                try:
                    FOUND = open(path).read()
                    print("found held-out text at", path, flush=True)
                except OSError:
                    pass
        at = FOUND.find(prefix) + len(prefix) if prefix and FOUND else -1
        if 0 <= at < len(FOUND):
            return [50.0 if char == FOUND[at] else 0.0 for char in vocab]
        return self._honest(prefix, vocab)
"""
# Attends to every position of the request: reads the other prefixes from its caller.
LOOKS_AHEAD = """
    def log_probs(self, prefix, vocab):
        import inspect
        frame = inspect.currentframe()
        while frame is not None and "inputs" not in frame.f_locals:
            frame = frame.f_back
        for other in frame.f_locals["inputs"]["prefixes"] if frame is not None else []:
            if len(other) > len(prefix) and other.startswith(prefix):
                return [50.0 if char == other[len(prefix)] else 0.0 for char in vocab]
        return self._honest(prefix, vocab)
"""
FORGES = """
    def log_probs(self, prefix, vocab):
        import json, os
        print(json.dumps({"bpc": 0.0}), flush=True)
        for place in ("/ipc/verdict.json", os.environ["TRIALFORGE_OUTPUT"] + "/score.json"):
            try:
                open(place, "w").write(json.dumps({"bpc": 0.0}))
            except OSError:
                pass
        return [1000.0] * len(vocab)  # "certain" of everything: normalised, it is uniform
"""
FAILS = """
    def log_probs(self, prefix, vocab):
        raise RuntimeError("the new attention block has the wrong shape")
"""


@pytest.fixture
def docker_runner(docker_client: docker.DockerClient, sandbox_image: str) -> Runner:
    return DockerRunner(docker_client)


@pytest.fixture
def example(tmp_path: Path) -> tuple[SearchSpec, GitStore, str]:
    """The charlm example as a search would hold it: its spec and its recipe in a store."""
    copy = tmp_path / "charlm"
    shutil.copytree(EXAMPLE, copy)
    spec = load_spec_file(copy / "spec.yaml")
    store, base = GitStore.create(tmp_path / "store.git", str(copy / "recipe"), None)
    return spec, store, base


Run = Callable[[str], Execution]


@pytest.fixture
def run_edit(example: tuple[SearchSpec, GitStore, str], tmp_path: Path) -> Callable[..., Run]:
    def bind(runner: Runner, scorer: str = "") -> Run:
        """`scorer`: another evaluator command than the example's."""
        spec, store, base = example
        if scorer:
            evaluator = spec.evaluator.model_copy(update={"command": scorer})
            spec = spec.model_copy(update={"evaluator": evaluator})

        def run(log_probs: str) -> Execution:
            commit = base
            if log_probs:
                source = store.show_file(base, "model.py")
                honest = source.replace("    def log_probs(", "    def _honest(")
                edited = honest.replace("class Model:", "FOUND = None\n\n\nclass Model:")
                edited = edited.replace("    def save(", log_probs.lstrip("\n") + "\n    def save(")
                diff = "".join(difflib.unified_diff(source.splitlines(keepends=True),
                                                    edited.splitlines(keepends=True),
                                                    "a/model.py", "b/model.py"))  # fmt: skip
                commit = store.apply_diff(base, diff, message="hostile",
                                          ref=f"refs/trials/{abs(hash(diff))}",
                                          protected=spec.evaluator.protected)  # fmt: skip
            return execute(store, commit, spec, runner, trial_id=abs(hash(commit)) % 10**6,
                           scratch_dir=tmp_path / "work")  # fmt: skip

        return run

    return bind


def test_the_example_is_scored_by_the_scorer_from_the_trials_own_model(
    runner: Runner, run_edit: Callable[..., Run]
) -> None:
    done = run_edit(runner)("")

    assert done.verdict.label is Label.OK, (done.verdict.reason, done.evaluation)
    assert done.verdict.score is not None and 1.0 < done.verdict.score < UNIFORM_BPC
    assert done.evaluation is not None and done.evaluation.metrics is not None
    assert done.evaluation.metrics["chars"] == 8000


def test_hostile_models_gain_nothing_and_a_failing_one_is_the_trials_crash(
    docker_runner: Runner, run_edit: Callable[..., Run], docker_client: docker.DockerClient
) -> None:
    run = run_edit(docker_runner)
    honest = run("")
    assert honest.verdict.score is not None

    peeked, looked, forged, failed = run(PEEKS), run(LOOKS_AHEAD), run(FORGES), run(FAILS)

    # Nothing of the held-out text in the model's sandbox: it scores as the honest model.
    assert peeked.verdict.score == pytest.approx(honest.verdict.score)
    assert peeked.evaluation is not None and "found held-out" not in peeked.evaluation.log_tail
    # No request holds a later position of the same stream: nothing to look ahead to.
    assert looked.verdict.score == pytest.approx(honest.verdict.score)
    # Its printed and written scores are ignored; its "certainty" is normalised away.
    assert forged.verdict.label is Label.OK
    assert forged.verdict.score == pytest.approx(UNIFORM_BPC)
    # A model that fails the protocol is the trial's failure, with the model's reason.
    assert failed.verdict.label is Label.CRASH
    assert "the wrong shape" in failed.verdict.reason
    assert docker_client.containers.list(all=True, filters={"label": TRIAL_LABEL}) == []


NAIVE_SCORER = """
import math, os
from trialforge_model import main

VOCAB = "".join(chr(code) for code in range(32, 127)) + "\\n"


def score(model):
    text = open(os.path.join(os.environ["TRIALFORGE_DATA"], "heldout.txt")).read()[:1600]
    text = "".join(char if char in VOCAB else " " for char in text)
    nats = 0.0
    for start in range(0, len(text), 16):  # one request: growing prefixes of one stretch
        prefixes = [text[start:start + j] for j in range(16)]
        rows = model.predict({"prefixes": prefixes, "vocab": VOCAB})
        for j, row in enumerate(rows):
            top = max(row)
            normaliser = top + math.log(sum(math.exp(x - top) for x in row))
            nats += normaliser - row[VOCAB.index(text[start + j])]
    return {"bpc": nats / len(text) / math.log(2)}


main(score)
"""


def test_the_look_ahead_model_would_cheat_a_scorer_that_batches_one_stretch(
    docker_runner: Runner,
    run_edit: Callable[..., Run],
    example: tuple[SearchSpec, GitStore, str],
) -> None:
    """The hostile model is no straw man: against a scorer whose request holds later
    positions of the same text, it reads its targets and scores far better than it is."""
    spec, _, _ = example
    Path(spec.evaluator.path, "naive.py").write_text(NAIVE_SCORER)
    run = run_edit(docker_runner, scorer="python3 naive.py")

    honest, looked = run(""), run(LOOKS_AHEAD)

    assert honest.verdict.score is not None and looked.verdict.score is not None
    assert looked.verdict.score < honest.verdict.score / 3


def test_a_scorer_that_fails_is_the_evaluators_failure_not_the_trials(
    runner: Runner, run_edit: Callable[..., Run]
) -> None:
    done = run_edit(runner, scorer="python3 -c 'raise SystemExit(3)'")("")

    assert done.verdict.label is Label.EVALUATOR_ERROR
    assert "evaluator exited with code 3" in done.verdict.reason

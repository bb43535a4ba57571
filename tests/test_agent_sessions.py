"""Agentic specialists: tool-using sessions over the shared lineage (issue 8).

Each scenario is a real session: the `openai` client over HTTP against a
scripted server that speaks tool calls, the real git store, the real
database. Invariants: a session can read, grep, inspect the lineage, edit
several files, check and submit; a refused edit or a session that never
submits changes nothing in the git store; a looping model is stopped; a
rebase makes the proposal a child of the trial it rebased onto; the first
message carries the lineage context; every outcome keeps its transcript.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.domain.spec import parse_spec
from app.domain.states import Label, TrialStatus
from app.errors import NotFound
from app.gitstore import GitStore
from app.services.import_recipe import create_search
from app.store.models import Search, Trial
from testing.factories import LOWER_LR, Recipe, add_trial, baseline_of, finish, spec_dict
from testing.fake_llm import FakeLLM
from testing.proposals import propose_on_best

BOTH = {"paths": ["train.py", "model.py"], "brief": "Anything in the recipe."}
SCRIPT: dict[str, list[Any]] = {
    "explorer": [
        [("list_files", {}), ("read_file", {"path": "train.py"})],
        [("grep", {"pattern": "WIDTH"}), ("lineage", {}), ("lineage", {"page": 2})],
        [("trial", {"number": 1}), ("diff", {"a": 0, "b": 1})],
        [
            ("edit_file", {"path": "train.py", "search": "EPOCHS = 3", "replace": "EPOCHS = 6"}),
            ("edit_file", {"path": "model.py", "search": "WIDTH = 64", "replace": "WIDTH = 128"}),
        ],
        [("check", {})],
        [("submit", {"hypothesis": "Train longer and wider.", "expected_delta": 0.02})],
    ],
    "narrow": [
        [("edit_file", {"path": "train.py", "search": "EPOCHS = 3", "replace": "EPOCHS = 9"})],
        "I am still thinking about it.",
        [("read_file", {"path": "model.py"})],
    ],
    "looper": [[("read_file", {"path": "model.py"})]] * 5,
    "rebaser": [
        [("rebase", {"number": 0})],
        [("edit_file", {"path": "train.py", "search": "LR = 0.1", "replace": "LR = 0.2"})],
        [("submit", {"hypothesis": "From the baseline, a larger learning rate."})],
    ],
}


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    server = FakeLLM(SCRIPT, lambda agent, n: "no more script")
    with server.running():
        yield server


@pytest.fixture
def world(
    session: Session, settings: Settings, recipe: Recipe, fake: FakeLLM
) -> tuple[Settings, Search]:
    """A search whose best (trial 1) lowered the learning rate; the explorer kept crashing."""
    agents = [
        {"name": "explorer", "kind": "llm", "model": "fake", "surface": BOTH},
        {"name": "narrow", "kind": "llm", "model": "fake", "max_turns": 3,
         "surface": {"paths": ["model.py"]}},
        {"name": "looper", "kind": "llm", "model": "fake", "surface": BOTH},
        {"name": "rebaser", "kind": "llm", "model": "fake", "surface": BOTH},
    ]  # fmt: skip
    settings = settings.model_copy(update={"llm_base_url": fake.base_url})
    search = create_search(
        session, parse_spec(spec_dict(recipe, agents=agents)), settings=settings, actor="test"
    ).search
    baseline = finish(session, baseline_of(session, search), Label.OK, 0.5)
    store = GitStore(Path(search.repo_path))
    best = add_trial(session, search, agent="explorer", parent=baseline, score=0.6,
                     hypothesis="Lower the learning rate.", diff=LOWER_LR)  # fmt: skip
    best.commit_sha = store.apply_diff(
        baseline.commit_sha or "", LOWER_LR, message="m", ref=f"refs/trials/{best.id}",
        protected=[],
    )  # fmt: skip
    search.best_trial_id = best.id
    for n in range(5):
        crash = add_trial(session, search, agent="explorer", parent=best, label=Label.CRASH,
                          hypothesis=f"crashing idea {n}")  # fmt: skip
        crash.log_tail = f"Traceback...\nRuntimeError: exploded {n}\n"
    session.commit()
    return settings, search


def tool_names(trial: Trial) -> list[str]:
    return [call["name"] for e in trial.transcript or [] for call in e.get("tool_calls", [])]


def test_a_session_reads_inspects_edits_two_files_checks_and_submits(
    session: Session, world: tuple[Settings, Search], fake: FakeLLM
) -> None:
    settings, search = world

    trial = propose_on_best(session, settings, search, "explorer")

    assert (trial.status, trial.label) == (TrialStatus.READY, None), trial.label_reason
    assert trial.hypothesis == "Train longer and wider."
    assert "+EPOCHS = 6" in trial.diff and "+WIDTH = 128" in trial.diff
    assert "LR = 0.05" in GitStore(Path(search.repo_path)).show_file(
        trial.commit_sha or "", "train.py"
    )
    assert tool_names(trial) == ["list_files", "read_file", "grep", "lineage", "lineage", "trial",
                                 "diff", "edit_file", "edit_file", "check", "submit"]  # fmt: skip
    results = {e["name"]: e["content"] for e in trial.transcript or [] if e["role"] == "tool"}
    summary, page_two = (e["content"] for e in trial.transcript or [] if e.get("name") == "lineage")
    assert "train.py (editable)" in results["list_files"]
    assert "model.py:1: WIDTH = 64" in results["grep"]
    # Page 1 is the prompt's own summary; the recorded trials, failures with logs, follow.
    assert "# Leaderboard (agents)" in summary and "# How the best was reached" in summary
    opening = "\n".join(str(m["content"]) for m in fake.exchanges[0].messages)
    assert summary.endswith("(more: lineage(page=2), of 2)")
    assert summary.removesuffix("\n(more: lineage(page=2), of 2)") in opening
    assert "exploded 4" in page_two and "# Leaderboard" not in page_two
    assert "+LR = 0.05" in results["diff"]
    assert results["check"] == "ok: model.py, train.py compile"
    assert trial.tokens_in > 0 and trial.tokens_in == sum(
        e.prompt_tokens for e in fake.exchanges if e.agent == "explorer"
    )


def test_the_first_message_carries_the_lineage_context(
    session: Session, world: tuple[Settings, Search], fake: FakeLLM
) -> None:
    settings, search = world

    propose_on_best(session, settings, search, "explorer")

    first = next(e for e in fake.exchanges if e.agent == "explorer").messages
    context = "\n".join(str(m["content"]) for m in first)
    assert "# Best so far" in context and "score 0.6" in context
    assert "# Leaderboard" in context
    # Finished trials only (the one being proposed has no outcome yet); the keep is a decision.
    assert "- explorer: 6 trials, 1 keeps (became the best), 1 scored, 5 failed" in context
    assert "# How the best was reached" in context and "Lower the learning rate." in context
    assert "# Recent failures" in context and "RuntimeError: exploded 4" in context
    assert "this direction looks saturated" in context  # its last five trials all crashed
    assert "submit(hypothesis, expected_delta, notes)" in context


def test_an_edit_outside_the_surface_is_refused_and_a_session_that_never_submits_is_labelled(
    session: Session, world: tuple[Settings, Search]
) -> None:
    settings, search = world

    trial = propose_on_best(session, settings, search, "narrow")

    assert (trial.status, trial.label) == (TrialStatus.FINISHED, Label.NO_SUBMISSION)
    assert "no submission in 3 turns" in (trial.label_reason or "")
    refusal = next(e for e in trial.transcript or [] if e["role"] == "tool")
    assert refusal["content"].startswith("refused: 'train.py' is outside the agent's surface")
    with pytest.raises(NotFound):
        GitStore(Path(search.repo_path)).resolve(f"refs/trials/{trial.id}")
    assert trial.commit_sha is None and trial.diff == ""


def test_a_model_repeating_the_same_call_is_stopped(
    session: Session, world: tuple[Settings, Search]
) -> None:
    settings, search = world

    trial = propose_on_best(session, settings, search, "looper")

    assert trial.label == Label.NO_SUBMISSION
    assert "repeated read_file" in (trial.label_reason or "")
    assert tool_names(trial).count("read_file") == 4


def test_a_rebased_session_becomes_a_child_of_the_trial_it_rebased_onto(
    session: Session, world: tuple[Settings, Search]
) -> None:
    settings, search = world
    baseline = session.scalar(select(Trial).where(Trial.search_id == search.id, Trial.number == 0))
    assert baseline is not None

    trial = propose_on_best(session, settings, search, "rebaser")

    assert trial.status == TrialStatus.READY
    assert trial.parent_id == baseline.id
    assert "-LR = 0.1\n+LR = 0.2" in trial.diff


def test_the_expected_delta_an_agent_submits_is_stored_and_shown_beside_the_measured_one(
    session: Session, world: tuple[Settings, Search], client: TestClient
) -> None:
    """Issue 16: `expected_delta` was asked for and dropped."""
    settings, search = world

    trial = propose_on_best(session, settings, search, "explorer")

    assert trial.expected_delta == 0.02
    assert client.get(f"/api/trials/{trial.id}").json()["expected_delta"] == 0.02
    assert '<span id="expected">expected +0.02</span>' in client.get(f"/trials/{trial.id}").text

"""What agents submit is checked, kept whole and refused with a reason (issue 16).

Each scenario runs a real agent (the `openai` client over HTTP against the
scripted test model) on a real git store and database. Invariants: submit
runs the check and hands problems back instead of spending a sandbox run;
the notes an agent submits are stored, served and shown; a session is
stopped for looping only when nothing changed between identical calls, and
after three replies in prose; an idea already tried on another parent (the
same changed lines) is named to the agent and refused, unless the spec
allows re-tries; the transcript keeps every message whole with each call's
usage, cached prompt tokens included, in the API and the export.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.config import Settings
from app.domain.ideas import TriedIdea, idea_fingerprint, repeat_refusal
from app.domain.proposals import Proposal
from app.domain.spec import RepeatIdeas, parse_spec
from app.domain.states import Label, TrialStatus
from app.gitstore import GitStore
from app.services.import_recipe import create_search
from app.services.propose import record_proposal
from app.store.models import Search, Trial
from testing.factories import Recipe, add_trial, baseline_of, finish, give_commit, spec_dict
from testing.fake_llm import FakeLLM, reply
from testing.proposals import propose_on_best

EARLIER = "trial 2 (on trial 0: ok (discarded: not better than the best))"
MORE_EPOCHS = """\
--- a/train.py
+++ b/train.py
@@ -1,3 +1,3 @@
 LR = 0.1
-EPOCHS = 3
+EPOCHS = 6
 
"""
EPOCHS_6 = {"path": "train.py", "search": "EPOCHS = 3", "replace": "EPOCHS = 6"}
EPOCHS_5 = {"path": "train.py", "search": "EPOCHS = 3", "replace": "EPOCHS = 5"}
BROKEN = {"path": "train.py", "search": "def main() -> None:", "replace": "def main( -> None:"}
FIXED = {"path": "train.py", "search": "def main( -> None:", "replace": "def main() -> None:"}
LR_003 = {"path": "train.py", "search": "LR = 0.05", "replace": "LR = 0.03"}  # on the best


def edit(**change: str) -> tuple[str, dict[str, str]]:
    return ("edit_file", change)


SCRIPT: dict[str, list[Any]] = {
    "checker": [
        [edit(**BROKEN), edit(**EPOCHS_5)],
        [("submit", {"hypothesis": "More epochs for a better fit."})],
        [edit(**FIXED)],
        [("submit", {"hypothesis": "More epochs for a better fit.", "expected_delta": 0.01,
                     "notes": "If it overfits, pair it with weight decay."})],
    ],
    "tinkerer": [
        *[step for n in range(3, 8) for step in (
            [edit(path="train.py", search=f"EPOCHS = {n}", replace=f"EPOCHS = {n + 1}")],
            [("check", {})])],
        [("submit", {"hypothesis": "Eight epochs, found by checking each step."})],
    ],
    "talker": ["Let me think about the learning rate.", "Still thinking.", "Almost there.",
               "Here it comes."],
    "repeater": [
        [edit(**EPOCHS_6), ("check", {})],
        [("submit", {"hypothesis": "Twice the epochs for a better fit."})],
        [("rebase", {"number": 1}), edit(**LR_003)],
        [("submit", {"hypothesis": "A smaller learning rate again, on the best recipe."})],
    ],
    "single": [
        reply("Twice the epochs for a better fit.", EPOCHS_6),
        reply("Broken code that cannot run.", BROKEN),
        reply("A smaller learning rate again, on the best.", LR_003),
    ],
}  # fmt: skip


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    server = FakeLLM(SCRIPT, lambda agent, n: "no more script")
    with server.running():
        yield server


def make_world(
    session: Session, settings: Settings, recipe: Recipe, fake: FakeLLM, **spec: Any
) -> tuple[Settings, Search]:
    """Trial 1 lowered the learning rate on the baseline and is the best; trial 2, on the
    baseline too, doubled the epochs and was discarded."""
    everything = {"paths": ["train.py", "model.py"], "brief": "Anything in the recipe."}
    agents = [
        {"name": name, "kind": "llm", "model": "fake", "surface": everything,
         "price_in_usd_per_mtok": 2.0, "price_cached_in_usd_per_mtok": 0.5}
        for name in ("checker", "tinkerer", "talker", "repeater", "single")
    ]  # fmt: skip
    agents[-1]["mode"] = "single"
    settings = settings.model_copy(update={"llm_base_url": fake.base_url})
    task = "Classify handwritten digits; every run must stay small and fast. " * 40
    raw = spec_dict(recipe, agents=agents, description=task, **spec)
    search = create_search(session, parse_spec(raw), settings=settings, actor="test").search
    baseline = finish(session, baseline_of(session, search), Label.OK, 0.5)
    best = add_trial(session, search, agent="checker", parent=baseline, label=None,
                     status=TrialStatus.READY, hypothesis="Lower the learning rate.")  # fmt: skip
    give_commit(session, search, best)
    finish(session, best, Label.OK, 0.6)
    discarded = add_trial(session, search, agent="tinkerer", parent=baseline, label=None,
                          status=TrialStatus.READY, hypothesis="Twice the epochs.")  # fmt: skip
    give_commit(session, search, discarded, MORE_EPOCHS)
    finish(session, discarded, Label.OK, 0.55)
    session.commit()
    return settings, search


@pytest.fixture
def world(
    session: Session, settings: Settings, recipe: Recipe, fake: FakeLLM
) -> tuple[Settings, Search]:
    return make_world(session, settings, recipe, fake)


def tool_results(trial: Trial, name: str) -> list[str]:
    return [e["content"] for e in trial.transcript or [] if e.get("name") == name]


def test_submit_runs_the_check_and_hands_problems_back_instead_of_spending_a_run(
    session: Session, world: tuple[Settings, Search]
) -> None:
    settings, search = world

    trial = propose_on_best(session, settings, search, "checker")

    refused, accepted = tool_results(trial, "submit")
    assert refused.startswith("refused: the check found problems")
    assert "train.py:5:" in refused
    assert accepted == "submitted"
    assert trial.status == TrialStatus.READY
    assert "+EPOCHS = 5" in trial.diff and "def main( ->" not in trial.diff


def test_the_notes_an_agent_submits_are_stored_served_and_shown(
    session: Session, world: tuple[Settings, Search], client: TestClient
) -> None:
    settings, search = world

    trial = propose_on_best(session, settings, search, "checker")

    assert trial.notes == "If it overfits, pair it with weight decay."
    assert client.get(f"/api/trials/{trial.id}").json()["notes"] == trial.notes
    page = client.get(f"/trials/{trial.id}").text
    assert '<p class="notes" id="notes"><b>The agent\'s notes:</b> If it overfits' in page


def test_the_same_check_after_each_new_edit_is_work_not_a_loop(
    session: Session, world: tuple[Settings, Search]
) -> None:
    """Five `check({})` calls, each after a different edit: the old cap on call text ended
    this session as no_submission."""
    settings, search = world

    trial = propose_on_best(session, settings, search, "tinkerer")

    assert len(tool_results(trial, "check")) == 5
    assert trial.status == TrialStatus.READY, trial.label_reason
    assert "+EPOCHS = 8" in trial.diff


def test_a_model_that_answers_in_prose_is_stopped_after_three_replies(
    session: Session, world: tuple[Settings, Search], fake: FakeLLM
) -> None:
    settings, search = world

    trial = propose_on_best(session, settings, search, "talker")

    assert (trial.label, trial.label_reason) == (Label.NO_SUBMISSION, "3 replies with no tool call")
    assert len([e for e in fake.exchanges if e.agent == "talker"]) == 3


def test_an_idea_tried_on_another_parent_is_named_and_refused_at_submit(
    session: Session, world: tuple[Settings, Search]
) -> None:
    """Doubling the epochs was discarded on the baseline (trial 2); on the best it is the
    same changed lines, so the agent hears so and proposes something else."""
    settings, search = world

    trial = propose_on_best(session, settings, search, "repeater")

    (check,) = tool_results(trial, "check")
    assert f"this idea was already tried as {EARLIER}" in check
    refused, accepted = tool_results(trial, "submit")
    assert refused.startswith(
        f"refused: this idea (the same changed lines) was already tried as {EARLIER}"
    )
    assert accepted == "submitted"
    assert "+LR = 0.03" in trial.diff and trial.status == TrialStatus.READY


def test_a_repeated_idea_from_any_agent_is_a_duplicate_that_takes_no_run(
    session: Session, world: tuple[Settings, Search]
) -> None:
    """The proposal service applies the same rule to every agent (control arm included)."""
    _, search = world
    best = session.get(Trial, search.best_trial_id)
    trial = add_trial(session, search, agent="tinkerer", parent=best, label=None,
                      status=TrialStatus.PROPOSED)  # fmt: skip
    session.commit()

    on_the_best = MORE_EPOCHS.replace(" LR = 0.1", " LR = 0.05")
    record_proposal(session, trial.id, Proposal("Twice the epochs, on the best.", on_the_best))
    session.commit()

    assert (trial.status, trial.label) == (TrialStatus.FINISHED, Label.DUPLICATE)
    assert f"already tried as {EARLIER}" in (trial.label_reason or "")
    assert trial.commit_sha is not None and trial.idea_hash == idea_fingerprint(MORE_EPOCHS)


def test_a_single_shot_agent_is_told_its_idea_was_tried_and_proposes_another(
    session: Session, world: tuple[Settings, Search], fake: FakeLLM
) -> None:
    settings, search = world

    trial = propose_on_best(session, settings, search, "single")

    retries = [e.messages[-1]["content"] for e in fake.exchanges if e.agent == "single"][1:]
    assert f"already tried as {EARLIER}; propose a different idea" in retries[0]
    assert "the edited files do not compile: train.py:5:" in retries[1]
    assert trial.status == TrialStatus.READY and "+LR = 0.03" in trial.diff
    assert [e["role"] for e in trial.transcript or []] == [
        "system", "user", "assistant", "user", "assistant", "user", "assistant"
    ]  # fmt: skip


def test_with_repeat_ideas_allowed_an_idea_may_run_again_on_a_new_parent(
    session: Session, settings: Settings, recipe: Recipe, fake: FakeLLM
) -> None:
    settings, search = make_world(session, settings, recipe, fake, repeat_ideas="allow")

    trial = propose_on_best(session, settings, search, "repeater")

    (check,) = tool_results(trial, "check")
    assert "already tried as trial 2" in check and "it may run again on this parent" in check
    assert tool_results(trial, "submit") == ["submitted"]
    assert "+EPOCHS = 6" in trial.diff and trial.status == TrialStatus.READY


def test_the_transcript_keeps_every_message_whole_with_each_calls_usage(
    session: Session, world: tuple[Settings, Search], fake: FakeLLM, client: TestClient
) -> None:
    settings, search = world

    trial = propose_on_best(session, settings, search, "checker")

    sent = [e for e in fake.exchanges if e.agent == "checker"]
    transcript = trial.transcript or []
    first = [entry["content"] for entry in transcript[:2]]
    assert first == [m["content"] for m in sent[0].messages]  # the first prompt, whole
    assert len(first[1]) > 2000  # the old transcript cut every message there
    # Every message the model read in its last call is in the transcript, in order.
    assert [e.get("content") or "" for e in sent[-1].messages] == [
        entry["content"] for entry in transcript[:-2]
    ]
    calls = [entry["usage"] for entry in transcript if entry["role"] == "assistant"]
    assert [c["tokens_in"] for c in calls] == [e.prompt_tokens for e in sent]
    assert [c["tokens_cached"] for c in calls] == [e.cached_tokens for e in sent]
    assert calls[0]["tokens_cached"] == 0 and all(c["tokens_cached"] > 0 for c in calls[1:])
    assert trial.tokens_cached == sum(e.cached_tokens for e in sent)
    fresh = trial.tokens_in - trial.tokens_cached  # at $2/M; the cached ones at $0.5/M
    assert trial.cost_usd == pytest.approx((fresh * 2.0 + trial.tokens_cached * 0.5) / 1e6)

    served = client.get(f"/api/trials/{trial.id}").json()
    assert served["transcript"] == transcript and served["tokens_cached"] == trial.tokens_cached
    records = [json.loads(line) for line in client.get(f"/api/searches/{search.id}/export").text
               .splitlines()]  # fmt: skip
    (exported,) = [r["data"] for r in records if r["record"] == "trial" and r["data"]["id"] ==
                   trial.id]  # fmt: skip
    assert exported["transcript"] == transcript and exported["notes"] == trial.notes


def test_the_transcript_is_stored_compressed(
    session: Session, world: tuple[Settings, Search]
) -> None:
    settings, search = world
    trial = propose_on_best(session, settings, search, "checker")

    stored = (
        session.connection()
        .exec_driver_sql(
            "SELECT transcript_z FROM trial WHERE id = ?"
            if session.bind is not None and session.bind.dialect.name == "sqlite"
            else "SELECT transcript_z FROM trial WHERE id = %s",
            (trial.id,),
        )
        .scalar_one()
    )

    assert len(bytes(stored)) < len(json.dumps(trial.transcript)) / 2


@pytest.mark.parametrize(
    ("tried", "parent", "mode", "refused"),
    [
        (None, 1, RepeatIdeas.REFUSE, False),
        (TriedIdea(2, 0, "ok (discarded)"), 1, RepeatIdeas.REFUSE, True),
        (TriedIdea(2, 0, "ok (discarded)"), 1, RepeatIdeas.ALLOW, False),
        (TriedIdea(2, 1, "ok (discarded)"), 1, RepeatIdeas.ALLOW, True),
        (TriedIdea(2, 0, "ok (became the best)", kept=True), 1, RepeatIdeas.REFUSE, False),
        (TriedIdea(2, 1, "ok (became the best)", kept=True), 1, RepeatIdeas.REFUSE, True),
    ],
    ids=["new idea", "tried elsewhere", "allowed elsewhere", "same parent, even allowed",
         "a keep brought onto another line", "a keep on its own parent"],
)  # fmt: skip
def test_when_an_idea_may_run_again(
    tried: TriedIdea | None, parent: int, mode: RepeatIdeas, refused: bool
) -> None:
    assert (repeat_refusal(tried, parent, mode) is not None) is refused


def test_an_ideas_fingerprint_ignores_context_order_and_whitespace() -> None:
    two_hunks = (
        "--- a/train.py\n+++ b/train.py\n@@ -1,2 +1,2 @@\n-LR = 0.1\n+LR = 0.05\n EPOCHS = 3\n"
        "@@ -9,1 +9,1 @@\n-    x = 1\n+    x = 2\n"
    )
    reordered = (
        "--- a/train.py\n+++ b/train.py\n@@ -20,2 +20,2 @@\n a = 0\n-x   = 1\n+x = 2\n"
        "@@ -30,1 +30,1 @@\n-LR = 0.1\n+LR  = 0.05\n"
    )
    other_value = two_hunks.replace("+LR = 0.05", "+LR = 0.02")
    other_file = two_hunks.replace("train.py", "model.py")
    # A removed line that looks like a header ("-- comment" removed is "--- comment").
    sql = "--- a/q.sql\n+++ b/q.sql\n@@ -1,2 +1,1 @@\n--- old note\n select 1\n"

    assert idea_fingerprint(two_hunks) == idea_fingerprint(reordered)
    assert idea_fingerprint(other_value) != idea_fingerprint(two_hunks)
    assert idea_fingerprint(other_file) != idea_fingerprint(two_hunks)
    assert idea_fingerprint(sql) is not None
    assert idea_fingerprint("--- a/x\n+++ b/x\n@@ -1,1 +1,1 @@\n-a \n+a\n") is None


def test_an_edit_kept_in_git_matches_its_fingerprint_from_the_session(
    session: Session, world: tuple[Settings, Search]
) -> None:
    """The workbench's diff and git's diff of the same edit have the same idea."""
    settings, search = world
    trial = propose_on_best(session, settings, search, "checker")
    store = GitStore(Path(search.repo_path))
    parent = session.get(Trial, trial.parent_id)
    assert parent is not None and parent.commit_sha and trial.commit_sha

    assert trial.idea_hash == idea_fingerprint(store.diff(parent.commit_sha, trial.commit_sha))
    by_hand = "--- a/train.py\n+++ b/train.py\n@@ -2 +2 @@\n-EPOCHS = 3\n+EPOCHS = 5\n"
    assert trial.idea_hash == idea_fingerprint(by_hand)

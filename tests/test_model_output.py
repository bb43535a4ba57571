"""Model output that would crash or hang us becomes a labelled trial with its reason (issue 15).

Through the real `openai` client against the test model server over HTTP:
a body that is not JSON, `{"choices": "not a list"}` and JSON nested past
the parser's depth are the endpoint's fault (`infra_error`, naming the
endpoint), in single-shot and session mode alike; a reply whose content
nests too deep, or whose hypothesis is past its cap, is `patch_rejected`
after the retries, and the prompt states the cap. In a session, tool
arguments that nest too deep or have the wrong types are answered with the
reason and the session goes on; the model's regex runs in linear time, and
the session's clock is read between tool calls and inside `grep`.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import openai
import pytest
from sqlalchemy.orm import Session

from app.agents.session import run_session
from app.config import Settings
from app.domain.edits import HYPOTHESIS_MAX_CHARS
from app.domain.proposals import Proposal, ProposalFailed
from app.domain.spec import parse_spec
from app.domain.states import Label, TrialStatus
from app.domain.workbench import TrialRef, Workbench
from app.gitstore import GitStore
from app.services.import_recipe import create_search
from app.services.propose import load_job, record_proposal
from app.store.models import Search, Trial
from testing.factories import Recipe, add_trial, baseline_of, spec_dict
from testing.fake_llm import Answer, FakeLLM, Raw, reply
from testing.proposals import Files, propose_through

NESTED = "[" * 100_000 + "]" * 100_000  # far past the JSON parser's recursion limit
LOWER_LR = {"path": "train.py", "search": "LR = 0.1", "replace": "LR = 0.05"}
BROKEN_BODIES = {
    "not JSON": (Raw(b"<html>502 Bad Gateway</html>"), "sent a body that is not JSON: '<html>"),
    "choices not a list": (
        Raw(b'{"choices": "not a list"}'),
        "sent no chat completion: choices: Input should be a valid list",
    ),
    "nested too deep": (Raw(NESTED.encode()), "sent JSON nested too deep"),
}


@contextmanager
def serving(settings: Settings, answers: list[Answer]) -> Iterator[tuple[FakeLLM, Settings]]:
    """The test model answering the agent "model" with `answers`, and settings that use it."""
    server = FakeLLM({"model": answers}, lambda agent, n: "nothing more to say")
    with server.running():
        yield server, settings.model_copy(update={"llm_base_url": server.base_url})


def search_with(session: Session, settings: Settings, recipe: Recipe, **agent: Any) -> Search:
    spec = spec_dict(recipe, agents=[{"name": "model", "kind": "llm", "model": "m",
                                      "surface": {"paths": ["train.py"]}, **agent}])  # fmt: skip
    search = create_search(session, parse_spec(spec), settings=settings, actor="test").search
    session.commit()
    return search


def proposed(session: Session, search: Search) -> Trial:
    trial = add_trial(session, search, agent="model", parent=baseline_of(session, search),
                      label=None, status=TrialStatus.PROPOSED)  # fmt: skip
    session.commit()
    return trial


def record(session: Session, trial: Trial, outcome: Proposal | ProposalFailed) -> Trial:
    record_proposal(session, trial.id, outcome)
    session.commit()
    session.refresh(trial)
    return trial


def propose(session: Session, settings: Settings, search: Search) -> Trial:
    """One proposal of the search's agent through the real client, recorded as the task does."""
    return propose_through(session, settings, proposed(session, search))


def tool_results(trial: Trial) -> list[str]:
    return [entry["content"] for entry in trial.transcript or [] if entry["role"] == "tool"]


@pytest.mark.parametrize("mode", ["single", "session"])
@pytest.mark.parametrize("body", list(BROKEN_BODIES))
def test_a_body_that_is_no_chat_completion_is_an_infra_error_naming_the_endpoint(
    session: Session, settings: Settings, recipe: Recipe, mode: str, body: str
) -> None:
    answer, reason = BROKEN_BODIES[body]
    with serving(settings, [answer]) as (model, served):
        search = search_with(session, served, recipe, mode=mode)

        trial = propose(session, served, search)

    assert (trial.status, trial.label) == (TrialStatus.FINISHED, Label.INFRA_ERROR)
    assert trial.label_reason is not None
    assert trial.label_reason.startswith(f"model endpoint {model.base_url} {reason}")
    assert len(model.exchanges) == 1  # a 200 is not retried; the endpoint is at fault


def test_a_reply_whose_content_nests_too_deep_is_patch_rejected_after_the_retries(
    session: Session, settings: Settings, recipe: Recipe
) -> None:
    with serving(settings, ['{"hypothesis": "x", "edits": ' + NESTED + "}"] * 3) as (_, served):
        search = search_with(session, served, recipe, mode="single")

        trial = propose(session, served, search)

    assert trial.label == Label.PATCH_REJECTED
    assert (trial.label_reason or "").startswith(
        "no usable reply in 3 attempts; last: the reply holds no JSON object."
    )


def test_a_hypothesis_past_its_cap_is_refused_and_the_prompt_states_the_cap(
    session: Session, settings: Settings, recipe: Recipe
) -> None:
    with serving(settings, [reply("h" * 5000, LOWER_LR)] * 3) as (model, served):
        search = search_with(session, served, recipe, mode="single")

        trial = propose(session, served, search)

    assert trial.label == Label.PATCH_REJECTED
    assert trial.label_reason == (
        "no usable reply in 3 attempts; last: the hypothesis is 5000 characters; "
        f"at most {HYPOTHESIS_MAX_CHARS}"
    )
    cap = f"The hypothesis is at most {HYPOTHESIS_MAX_CHARS} characters"
    assert cap in model.exchanges[0].prompt
    assert "h" * HYPOTHESIS_MAX_CHARS not in trial.hypothesis  # what was refused is not kept


def test_a_session_answers_botched_tool_calls_with_the_reason_and_goes_on(
    session: Session, settings: Settings, recipe: Recipe
) -> None:
    answers: list[Answer] = [
        [("read_file", NESTED)],
        [("list_files", {"prefix": 7}), ("trial", {"number": 1e300})],
        [("edit_file", LOWER_LR)],
        [("submit", {"hypothesis": "Halve the learning rate.", "expected_delta": "a lot"})],
        [("submit", {"hypothesis": "Halve the learning rate.", "expected_delta": None})],
    ]
    with serving(settings, answers) as (model, served):
        search = search_with(session, served, recipe)

        trial = propose(session, served, search)

    assert (trial.status, trial.label) == (TrialStatus.READY, None), trial.label_reason
    assert trial.hypothesis == "Halve the learning rate."
    assert tool_results(trial) == [
        "error: bad arguments for read_file: JSON nested too deep",
        "error: bad arguments for list_files: prefix must be a JSON string, not int",
        "error: bad arguments for trial: number must be a JSON integer, not float",
        "edited train.py",
        "error: bad arguments for submit: expected_delta must be a JSON number, not str",
        "submitted",
    ]
    first = "\n".join(str(message["content"]) for message in model.exchanges[0].messages)
    assert f"with a hypothesis of at most {HYPOTHESIS_MAX_CHARS} characters" in first


def test_a_session_refuses_a_hypothesis_past_its_cap_and_takes_a_shorter_one(
    session: Session, settings: Settings, recipe: Recipe
) -> None:
    answers: list[Answer] = [
        [("edit_file", LOWER_LR)],
        [("submit", {"hypothesis": "h" * 5000})],
        [("submit", {"hypothesis": "Halve the learning rate."})],
    ]
    with serving(settings, answers) as (_, served):
        search = search_with(session, served, recipe)

        trial = propose(session, served, search)

    assert trial.status == TrialStatus.READY
    assert tool_results(trial)[1] == (
        f"refused: the hypothesis is 5000 characters; at most {HYPOTHESIS_MAX_CHARS}. "
        "Nothing was submitted."
    )


def test_a_session_that_keeps_botching_its_calls_ends_labelled_with_the_reason(
    session: Session, settings: Settings, recipe: Recipe
) -> None:
    with serving(settings, [[("read_file", NESTED)]] * 5) as (_, served):
        search = search_with(session, served, recipe)

        trial = propose(session, served, search)

    assert (trial.status, trial.label) == (TrialStatus.FINISHED, Label.NO_SUBMISSION)
    assert (trial.label_reason or "").startswith("repeated read_file([[[")
    assert set(tool_results(trial)) == {"error: bad arguments for read_file: JSON nested too deep"}


def session_on_a_clock(
    session: Session, settings: Settings, recipe: Recipe, answers: list[Answer]
) -> Trial:
    """A session of 250 s whose clock moves 100 s each time it is read (it never sleeps)."""
    with serving(settings, answers) as (model, served):
        search = search_with(session, served, recipe, session_wallclock_s=250)
        trial = proposed(session, search)
        job = load_job(session, trial.id)
        assert job is not None
        ticks = itertools.count(step=100.0)
        client = openai.OpenAI(base_url=model.base_url, api_key="unused", max_retries=0)
        outcome: Proposal | ProposalFailed
        try:
            outcome = run_session(
                client, model.base_url, job, GitStore(job.repo_path), clock=lambda: next(ticks)
            )
        except ProposalFailed as failed:
            outcome = failed
    return record(session, trial, outcome)


def test_the_session_clock_is_read_between_tool_calls(
    session: Session, settings: Settings, recipe: Recipe
) -> None:
    # Reads: the deadline (0), the turn (100), the first call (200), the second (300 > 250).
    answers: list[Answer] = [[("list_files", {}), ("read_file", {"path": "train.py"})]]

    trial = session_on_a_clock(session, settings, recipe, answers)

    assert (trial.label, trial.label_reason) == (Label.NO_SUBMISSION, "session passed its 250s")
    assert len(tool_results(trial)) == 1


def test_grep_stops_when_the_session_time_is_up(
    session: Session, settings: Settings, recipe: Recipe
) -> None:
    # Reads: the deadline (0), the turn (100), the call (200), grep's first line (300 > 250).
    trial = session_on_a_clock(session, settings, recipe, [[("grep", {"pattern": "LR"})]])

    assert tool_results(trial) == ["\n[the session's time ran out during grep: submit now]"]
    assert (trial.label, trial.label_reason) == (Label.NO_SUBMISSION, "session passed its 250s")


def bench(files: dict[str, str]) -> Workbench:
    base = TrialRef(0, "baseline", "", "ok", 0.5, None, "c0ffee", None, decision="baseline")
    return Workbench(repo=Files(files), trials={0: base}, base=base, surface=["**"], protected=[])


def test_a_catastrophic_pattern_greps_a_long_line_in_well_under_a_second() -> None:
    workbench = bench({"data.txt": "a" * 200_000 + "b\n" + "a" * 50 + "!\n"})

    started = time.perf_counter()
    answer = workbench.call("grep", json.dumps({"pattern": "(a+)+$"}))
    elapsed = time.perf_counter() - started

    assert answer == "no matches"
    assert elapsed < 0.5


def test_a_pattern_only_a_backtracking_engine_runs_is_answered_with_the_reason() -> None:
    answer = bench({"train.py": "LR = 0.1\n"}).call("grep", json.dumps({"pattern": r"(L)\1"}))

    assert answer == "error: not a regular expression RE2 accepts: invalid escape sequence: \\1"

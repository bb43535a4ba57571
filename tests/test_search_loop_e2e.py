"""A search runs with no human in the loop, and later proposals learn from earlier outcomes.

Real Celery worker processes, the real broker (embedded SQLite beside SQLite,
Redis beside Postgres), the real Docker sandbox, and LLM specialists served
by a scripted OpenAI-compatible server over HTTP. The script includes a
malformed reply, an endpoint error, an illegal edit, a duplicate, a crash,
a reply that never becomes usable, and improvements.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import docker
import pytest
from sqlalchemy import select

from app.config import Settings
from app.db import session_scope
from app.domain.spec import parse_spec
from app.domain.states import Label, SearchStatus, TrialStatus
from app.services.import_recipe import create_search
from app.store.models import Search, Trial
from app.store.trials import ancestry
from sandbox.docker_runner import NAMESPACE_LABEL, TRIAL_LABEL
from testing.fake_llm import FakeLLM, reply
from testing.loop_harness import BASELINE_ACC, deployment, loop_spec, make_loop_recipe

pytestmark = pytest.mark.docker

MORE_EPOCHS = reply(
    "Train twice as long: the loss is still falling at epoch 3.",
    {"path": "train.py", "search": "EPOCHS = 3", "replace": "EPOCHS = 6"},
)
WIDER = reply(
    "Double the width: the model underfits.",
    {"path": "model.py", "search": "WIDTH = 64", "replace": "WIDTH = 128"},
)
OUTSIDE_SURFACE = reply(
    "Widen the model from the optimizer side.",
    {"path": "model.py", "search": "# architecture", "replace": "# architecture\nDEPTH = 2"},
)
CRASHES = reply(
    "Add a divergence check.",
    {
        "path": "model.py",
        "search": "# architecture",
        "replace": "# architecture\nraise RuntimeError('diverged at step 3')",
    },
)
GARBAGE = "I would lower the learning rate, I think."
AGENTS = [
    {
        "name": "opt",
        "kind": "llm",
        "model": "fake-1",
        "mode": "single",
        "surface": {"paths": ["train.py"], "brief": "Optimizer and schedule."},
        "price_in_usd_per_mtok": 1.0,
        "price_out_usd_per_mtok": 2.0,
    },
    {
        "name": "arch",
        "kind": "llm",
        "model": "fake-1",
        "mode": "single",
        "surface": {"paths": ["model.py"], "brief": "Architecture."},
    },
    {
        "name": "twin",
        "kind": "llm",
        "model": "fake-1",
        "mode": "single",
        "surface": {"paths": ["train.py"], "brief": "Also the optimizer."},
    },
    {
        "name": "sess",
        "kind": "llm",
        "model": "fake-1",
        "max_turns": 4,
        "surface": {"paths": ["model.py"], "brief": "Architecture, with tools."},
    },
    {
        "name": "knobs",
        "kind": "control",
        "surface": {"paths": ["train.py"]},
        "knobs": [
            {
                "name": "lr",
                "file": "train.py",
                "pattern": r"^LR = (\S+)$",
                "kind": "float",
                "low": 0.01,
                "high": 1.0,
                "log": True,
            }
        ],
    },
]
SESSION = [
    [("read_file", {"path": "model.py"}), ("lineage", {})],
    [("edit_file", {"path": "model.py", "search": "# architecture",
                    "replace": "# architecture\n# checked by a session"})],
    [("check", {})],
    [("submit", {"hypothesis": "Document the architecture.", "expected_delta": 0.0})],
]  # fmt: skip
SCRIPT: dict[str, list[Any]] = {
    "sess": SESSION,
    # Malformed, then corrected in the same session: an improvement.
    "opt": [GARBAGE, MORE_EPOCHS, OUTSIDE_SURFACE],
    # A 500 first (the client retries it), then a crash (early, so later prompts show it),
    # then an improvement.
    "arch": [500, CRASHES, WIDER],
    # The same edit as opt's first, from the same baseline: a duplicate recipe (told so
    # before it is recorded when opt's is recorded first, a `duplicate` when not).
    # Then unusable replies in a row: patch_rejected.
    "twin": [MORE_EPOCHS, GARBAGE, GARBAGE, GARBAGE],
}


def note(agent: str, n: int) -> str:
    """Once scripts run out: a harmless, always-applicable, never-repeated edit."""
    return reply(
        f"{agent} note {n}: document the run.",
        {
            "path": "train.py" if agent != "arch" else "model.py",
            "search": "# end of hyperparameters" if agent != "arch" else "# architecture",
            "replace": ("# end of hyperparameters" if agent != "arch" else "# architecture")
            + f"\n# {agent} note {n}",
        },
    )


def test_a_search_runs_to_its_budget_and_learns_from_its_lineage(
    database_url: str, tmp_path: Path, docker_client: docker.DockerClient, sandbox_image: str
) -> None:
    repo, evaluator = make_loop_recipe(tmp_path)
    fake = FakeLLM(SCRIPT, note)
    with (
        fake.running(),
        deployment(
            database_url, tmp_path / "data", llm_base_url=fake.base_url, sandbox_backend="docker"
        ) as running,
    ):
        data_dir = Path(running.env["TRIALFORGE_DATA_DIR"])
        with session_scope(database_url) as session:
            spec = parse_spec(loop_spec(repo, evaluator, AGENTS))
            settings = Settings(database_url=database_url, data_dir=data_dir,
                                llm_base_url=fake.base_url)  # fmt: skip
            search_id = create_search(session, spec, settings=settings, actor="t").search.id
        running.start("scheduler", "--interval=0.5")
        running.start("worker", "--queues=propose,trials", "--concurrency=3")

        def finished() -> bool:
            with session_scope(database_url) as session:
                search = session.get(Search, search_id)
                return search is not None and search.status == SearchStatus.FINISHED

        running.wait_for(finished, 300, "the search finished")

    with session_scope(database_url) as session:
        search = session.get(Search, search_id)
        assert search is not None
        trials = list(
            session.scalars(
                select(Trial).where(Trial.search_id == search_id).order_by(Trial.number)
            )
        )
        labels = {trial.number: trial.label for trial in trials}
        by_agent = {t.number: (t.agent.name if t.agent else None) for t in trials}
        best = session.get(Trial, search.best_trial_id) if search.best_trial_id else None
        best_line = ancestry(session, best.id) if best else []
        ids = {trial.id: trial for trial in trials}

        assert search.halt_reason == "max_trials reached"
        assert len(trials) == 12
        assert all(t.status == TrialStatus.FINISHED for t in trials), labels
        assert trials[0].label is Label.OK and trials[0].score == pytest.approx(BASELINE_ACC)
        # Every outcome the script provoked got its label.
        observed = set(labels.values())
        for expected in (
            Label.OK,
            Label.ILLEGAL_EDIT,
            Label.CRASH,
            Label.PATCH_REJECTED,
        ):
            assert expected in observed, (expected, labels, by_agent)
        # No idea ran twice: the twin's repeat was refused, as a duplicate or to its face.
        ran = [t.idea_hash for t in trials if t.idea_hash and t.label is not Label.DUPLICATE]
        assert len(ran) == len(set(ran)), labels
        twin = [e.prompt for e in fake.exchanges if e.agent == "twin"]
        told = any("already tried as trial" in prompt for prompt in twin)
        assert Label.DUPLICATE in observed or told, (labels, by_agent)
        crash = next(t for t in trials if t.label is Label.CRASH)
        assert "RuntimeError: diverged at step 3" in crash.log_tail
        # The best improves on the baseline, and descends from it through kept trials.
        assert best is not None and best.score is not None
        assert best.score > BASELINE_ACC + 0.1
        assert best_line[0] == trials[0].id and best_line[-1] == best.id
        assert all(ids[i].label is Label.OK for i in best_line)
        # Every proposal built on a kept trial.
        assert all(ids[t.parent_id].label is Label.OK for t in trials[1:] if t.parent_id)
        # Tokens and cost add up to what the endpoint reported.
        llm_trials = [t for t in trials if t.agent and t.agent.kind == "llm"]
        served = [e for e in fake.exchanges if not isinstance(e.answer, int)]
        assert sum(t.tokens_in for t in llm_trials) == sum(e.prompt_tokens for e in served)
        assert sum(t.tokens_out for t in llm_trials) == sum(e.completion_tokens for e in served)
        opt = [t for t in llm_trials if t.agent and t.agent.name == "opt"]
        assert sum(t.cost_usd for t in opt) == pytest.approx(
            sum(e.prompt_tokens + 2 * e.completion_tokens for e in served if e.agent == "opt") / 1e6
        )
        assert all(
            t.tokens_in == 0 and t.cost_usd == 0
            for t in trials
            if t.agent and t.agent.kind == "control"
        )
        # The session agent worked through its tools and its transcript was kept.
        session_trials = [t for t in trials if t.agent and t.agent.name == "sess"]
        first_session = session_trials[0]
        assert first_session.label is Label.OK, first_session.label_reason
        calls = [c["name"] for e in first_session.transcript or [] for c in e.get("tool_calls", [])]
        assert calls == ["read_file", "lineage", "edit_file", "check", "submit"]
        # A later prompt showed the crash, its label and its log tail.
        later = [e.prompt for e in fake.exchanges if "RuntimeError: diverged at step 3" in e.prompt]
        assert later and any("crash" in prompt for prompt in later)
        # The export names every trial.
        exported = [json.loads(line) for line in _export(database_url, search_id, data_dir)]
        assert sum(r["record"] == "trial" for r in exported) == 12

    namespace = Settings(database_url=database_url).namespace
    ours = {"label": [TRIAL_LABEL, f"{NAMESPACE_LABEL}={namespace}"]}
    assert docker_client.containers.list(all=True, ignore_removed=True, filters=ours) == []


def _export(database_url: str, search_id: int, data_dir: Path) -> list[str]:
    from fastapi.testclient import TestClient

    from app.server import create_app

    settings = Settings(database_url=database_url, data_dir=data_dir)
    with TestClient(create_app(settings)) as client:
        response = client.get(f"/api/searches/{search_id}/export")
        assert response.status_code == 200
        return [line for line in response.text.splitlines() if line]

"""A control study on the bundled example: lineage feedback `full` against `best_only`.

Two searches on `examples/digits`, identical but for `feedback`, run with
real workers, the control arm and an LLM specialist answered by the scripted
server; then `trialforge compare` prints them side by side. Invariant: the
`best_only` arm's agent never sees another trial's failure, the `full` arm's
does, and the comparison names both arms with their outcomes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from app.db import session_scope
from app.domain.spec import Feedback, SearchSpec, load_spec_file
from app.domain.states import SearchStatus
from app.services.import_recipe import create_search
from app.store.models import Search
from testing.fake_llm import FakeLLM
from testing.loop_harness import deployment

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits" / "spec.yaml"


def session_reply(agent: str, n: int) -> list[tuple[str, dict[str, Any]]]:
    """Every session: one scripted turn that edits the model's width and submits."""
    width = 32 + 8 * n
    return [
        (
            "edit_file",
            {"path": "model.py", "search": "HIDDEN = 32", "replace": f"HIDDEN = {width}"},
        ),
        ("submit", {"hypothesis": f"width {width}", "expected_delta": 0.01}),
    ]


def arm_spec(feedback: str) -> SearchSpec:
    """The example with its architecture specialist and control arm, 5 trials, one feedback."""
    spec = load_spec_file(EXAMPLE)
    agents = [a for a in spec.agents if a.name in ("architecture", "knobs")]
    search = spec.budgets.search.model_copy(update={"max_trials": 5, "max_concurrent": 2})
    return spec.model_copy(
        update={
            "name": f"digits-{feedback}",
            "description": f"The {feedback} arm. {spec.description}",
            "feedback": Feedback(feedback),
            "agents": agents,
            "budgets": spec.budgets.model_copy(update={"search": search}),
        }
    )


@pytest.mark.parametrize("backend", ["local"])
def test_two_feedback_arms_run_and_compare_side_by_side(
    database_url: str, tmp_path: Path, backend: str
) -> None:
    fake = FakeLLM({}, session_reply)
    with (
        fake.running(),
        deployment(
            database_url, tmp_path / "data", llm_base_url=fake.base_url, sandbox_backend=backend
        ) as running,
    ):
        data_dir = Path(running.env["TRIALFORGE_DATA_DIR"])
        ids = []
        settings = Settings(database_url=database_url, data_dir=data_dir,
                            llm_base_url=fake.base_url)  # fmt: skip
        with session_scope(database_url) as session:
            for feedback in ("full", "best_only"):
                created = create_search(session, arm_spec(feedback), settings=settings,
                                        actor="study")  # fmt: skip
                ids.append(created.search.id)
        running.start("scheduler", "--interval=0.3")
        running.start("worker", "--queues=propose,trials", "--concurrency=3")

        def done() -> bool:
            with session_scope(database_url) as session:
                return all(
                    session.get(Search, i).status == SearchStatus.FINISHED  # type: ignore[union-attr]
                    for i in ids
                )

        running.wait_for(done, 240, "both arms finished")
        compared = subprocess.run(
            [sys.executable, "-m", "app.cli", "compare", *map(str, ids)],
            env=running.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    assert compared.returncode == 0, compared.stderr
    header, *rows = compared.stdout.splitlines()
    assert [row.split()[:3] for row in rows] == [
        [str(ids[0]), "digits-full", "full"],
        [str(ids[1]), "digits-best_only", "best_only"],
    ]
    full = [e.prompt for e in fake.exchanges if "The full arm." in e.prompt]
    best_only = [e.prompt for e in fake.exchanges if "The best_only arm." in e.prompt]
    assert full and best_only  # the LLM specialist worked in both arms
    assert all("# Leaderboard" in prompt for prompt in full)
    assert not any("# Leaderboard" in p or "# Recent failures" in p for p in best_only)

"""The local runner never passes for a sandbox, and keeps what it can contain contained.

Invariant: every local run says it is unisolated (result flag, log-tail
notice, warning event), runs in a copy so the trial cannot edit its recipe,
and does not hand the worker's environment (API keys, database URLs) to
trial code.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sandbox.local_runner import UNISOLATED_NOTICE, LocalRunner
from tests.sandbox.contract import Harness


@pytest.fixture
def harness(trial_id: int, tmp_path: Path) -> Harness:
    return Harness.create(LocalRunner(), "ignored", trial_id, tmp_path)


def test_every_local_run_and_evaluation_is_flagged_unisolated(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sandbox.local_runner")

    ran = harness.run("print('hello')")
    evaluated = harness.evaluate("print('{\"val_acc\": 1.0}')")

    assert ran.isolated is False
    assert ran.log_tail == UNISOLATED_NOTICE + "hello\n"
    assert evaluated.log_tail.startswith(UNISOLATED_NOTICE)
    assert [record.getMessage() for record in caplog.records] == [
        f"sandbox.local.unisolated trial_id={harness.trial_id} role=run",
        f"sandbox.local.unisolated trial_id={harness.trial_id} role=eval",
    ]


def test_a_local_trial_cannot_edit_its_recipe(harness: Harness) -> None:
    script = "open(__file__, 'a').write('# tampered')\n"

    result = harness.run(script)

    assert result.exit_code == 0
    assert (harness.recipe / "train.py").read_text() == script


def test_a_local_trial_does_not_inherit_the_workers_secrets(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-worker-secret")

    result = harness.run("import os; print(sorted(os.environ))")

    assert "OPENAI_API_KEY" not in result.log_tail
    assert "TRIALFORGE_OUTPUT" in result.log_tail

"""Test data for the suite and the benchmarks: recipes on disk, specs, and trials in the store.

Trials are written through the loop's own functions (`app.store.transitions.finish`),
so every test reads data shaped by the rules under test, not by a copy of them.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.config import Settings
from app.domain.ideas import idea_fingerprint
from app.domain.labels import Verdict
from app.domain.seeds import Execution
from app.domain.spec import parse_spec
from app.domain.states import Label, TrialStatus
from app.gitstore import GitStore
from app.services.import_recipe import create_search
from app.store import transitions
from app.store.models import Search, Trial
from sandbox import EvalResult

TRAIN_PY = """\
LR = 0.1
EPOCHS = 3


def main() -> None:
    print(f"training with lr={LR} for {EPOCHS} epochs")


if __name__ == "__main__":
    main()
"""

# An edit of TRAIN_PY's learning rate, as a unified diff (git applies it to the recipe).
LOWER_LR = """\
--- a/train.py
+++ b/train.py
@@ -1,2 +1,2 @@
-LR = 0.1
+LR = 0.05
 EPOCHS = 3
"""

EVALUATE_PY = """\
import json

print(json.dumps({"val_acc": 0.9}))
"""


@dataclass(frozen=True)
class Recipe:
    """A starting recipe (its own git repo) and an evaluator directory outside it."""

    repo: Path
    evaluator: Path


def git(cwd: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
        "HOME": str(cwd),
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def commit_all(repo: Path) -> None:
    """Make `repo` a git repository whose one commit holds every file in it."""
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "recipe")


def make_recipe(root: Path) -> Recipe:
    repo = root / "recipe"
    repo.mkdir()
    (repo / "train.py").write_text(TRAIN_PY)
    (repo / "model.py").write_text("WIDTH = 64\n")
    (repo / "data").mkdir()
    (repo / "data" / "README").write_text("training data lives here\n")
    commit_all(repo)
    evaluator = root / "evaluator"
    evaluator.mkdir()
    (evaluator / "evaluate.py").write_text(EVALUATE_PY)
    return Recipe(repo=repo, evaluator=evaluator)


def spec_dict(recipe: Recipe, **overrides: Any) -> dict[str, Any]:
    """A valid spec as the API receives it; `overrides` replace top-level keys."""
    spec: dict[str, Any] = {
        "name": "digits-mlp",
        "repo": str(recipe.repo),
        "run": "python train.py",
        "evaluator": {
            "path": str(recipe.evaluator),
            "command": "python evaluate.py",
            "metric": "val_acc",
            "direction": "maximize",
            "gates": ["val_acc >= 0.5"],
            "protected": ["data/**"],
        },
        "budgets": {
            "trial": {"wallclock_s": "5m", "memory": "1GiB", "artifact_max_bytes": "1MB"},
            "search": {"max_trials": 20, "max_concurrent": 2},
        },
        "agents": [
            {
                "name": "opt",
                "kind": "llm",
                "model": "gpt-test",
                "surface": {"paths": ["train.py"], "brief": "Optimizer and schedule."},
            },
            {
                "name": "arch",
                "kind": "llm",
                "model": "gpt-test",
                "surface": {"paths": ["model.py"], "brief": "Architecture."},
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
                        "low": 0.001,
                        "high": 1.0,
                        "log": True,
                    }
                ],
            },
        ],
    }
    spec.update(overrides)
    return spec


# The model endpoint of settings whose searches' llm agents are never asked (nothing listens
# on the discard port): llm agents need a configured endpoint to be accepted at all.
NO_MODEL = "http://127.0.0.1:9/v1"

_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
FACTORY_WORKER = "factory:0"


def finish(
    session: Session, trial: Trial, label: Label, score: float | None, reason: str = ""
) -> Trial:
    """Finish a trial exactly as a trial worker does: `transitions.claim`, then `finish`.

    The delta, the decision (keep or discard, new best) and the events come
    from the loop's own code, never from a copy of its rules here.
    """
    trial.status = TrialStatus.QUEUED
    session.flush()
    assert transitions.claim(session, trial.id, FACTORY_WORKER)
    metrics: dict[str, object] | None = None if score is None else {"val_acc": score}
    evaluation = EvalResult(0, False, metrics, None, "", None)
    execution = Execution(
        Verdict(label, score, reason or f"{label}"),
        evaluation=evaluation,
        runs=(score,) if label is Label.OK and score is not None else (),
    )
    assert transitions.finish(session, trial.id, FACTORY_WORKER, execution, max_attempts=1)
    session.refresh(trial)
    return trial


def add_trial(
    session: Session,
    search: Search,
    *,
    agent: str | None,
    parent: Trial | None,
    label: Label | None = Label.OK,
    score: float | None = None,
    status: TrialStatus = TrialStatus.FINISHED,
    hypothesis: str = "",
    diff: str = "",
) -> Trial:
    """Append a trial as the loop would record it (numbered after the search's last trial).

    A finished one is finished through the loop's `finish` (see `finish` above).
    """
    agent_row = next((a for a in search.agents if a.name == agent), None) if agent else None
    number = session.query(Trial).filter(Trial.search_id == search.id).count()
    trial = Trial(
        search_id=search.id,
        number=number,
        parent_id=parent.id if parent else None,
        agent_id=agent_row.id if agent_row else None,
        hypothesis=hypothesis or f"trial {number}",
        diff=diff,
        status=status,
        created_at=_EPOCH + timedelta(minutes=number),
    )
    session.add(trial)
    session.flush()
    if status is TrialStatus.FINISHED:
        assert label is not None, "a finished trial has a label"
        finish(session, trial, label, score)
    return trial


def give_commit(session: Session, search: Search, trial: Trial, diff: str = LOWER_LR) -> Trial:
    """Commit `diff` on the trial's parent (the baseline when it has none) as the trial's recipe,
    so it can be a parent, a rebase target or a diff in tests that need its files."""
    parent = (
        session.get(Trial, trial.parent_id) if trial.parent_id else baseline_of(session, search)
    )
    assert parent is not None and parent.commit_sha is not None
    trial.commit_sha = GitStore(Path(search.repo_path)).apply_diff(
        parent.commit_sha, diff, message=f"trial {trial.number}", ref=f"refs/trials/{trial.id}",
        protected=[],
    )  # fmt: skip
    trial.diff, trial.idea_hash = diff, idea_fingerprint(diff)  # as the proposal service does
    session.flush()
    return trial


def baseline_of(session: Session, search: Search) -> Trial:
    return session.query(Trial).filter_by(search_id=search.id, number=0).one()


def seeded_search(session: Session, settings: Settings, recipe: Recipe, direction: str) -> Search:
    """A search with a small, varied lineage: scores, failures, several agents."""
    raw = spec_dict(recipe)
    raw["evaluator"]["direction"] = direction
    search = create_search(session, parse_spec(raw), settings=settings, actor="test").search
    base = finish(session, baseline_of(session, search), Label.OK, 0.50)
    a = add_trial(session, search, agent="opt", parent=base, score=0.70)
    add_trial(session, search, agent="arch", parent=base, score=0.60)
    add_trial(session, search, agent="opt", parent=a, label=Label.CRASH)
    add_trial(session, search, agent="knobs", parent=a, score=0.70)
    add_trial(session, search, agent="arch", parent=a, label=Label.OOM)
    add_trial(session, search, agent="opt", parent=a, score=0.65)
    add_trial(session, search, agent="arch", parent=a, status=TrialStatus.RUNNING, label=None)
    session.commit()
    return search

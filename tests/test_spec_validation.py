"""A bad spec is refused at the door with a 422 that names the offending field.

Invariant: nothing is stored for a refused spec (no search row, no repo).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from testing.factories import Recipe, spec_dict


def with_path(spec: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set (or, with value=DELETE, remove) a dotted path inside a nested spec."""
    keys = path.split(".")
    node: Any = spec
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last: Any = int(keys[-1]) if isinstance(node, list) else keys[-1]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return spec


DELETE = object()

BAD_FIELDS = [
    ("name", DELETE, "name"),
    ("name", "", "name"),
    ("repo", DELETE, "repo"),
    ("run", "", "run"),
    ("unknown_setting", 1, "unknown_setting"),
    ("evaluator.direction", "upwards", "evaluator.direction"),
    ("evaluator.metric", "", "evaluator.metric"),
    ("evaluator.gates", ["val_acc is high"], "evaluator.gates.0"),
    ("evaluator.protected", ["../secrets"], "evaluator.protected.0"),
    ("evaluator.protected", ["/etc/passwd"], "evaluator.protected.0"),
    ("budgets.trial.wallclock_s", -5, "budgets.trial.wallclock_s"),
    ("budgets.trial.wallclock_s", "soon", "budgets.trial.wallclock_s"),
    ("budgets.trial.queue", "gpu host/a", "budgets.trial.queue"),
    ("budgets.trial.memory", "lots", "budgets.trial.memory"),
    ("budgets.trial.cpus", 0, "budgets.trial.cpus"),
    ("budgets.trial.gpus", -1, "budgets.trial.gpus"),
    ("budgets.search.max_trials", 0, "budgets.search.max_trials"),
    ("budgets.search.max_concurrent", 0, "budgets.search.max_concurrent"),
    ("budgets.search.max_cost_usd", -1, "budgets.search.max_cost_usd"),
    ("budgets.search.deadline", "tomorrow", "budgets.search.deadline"),
    ("agents", [], "agents"),
    ("agents.0.name", "Has Spaces", "agents.0.name"),
    ("agents.0.kind", "oracle", "agents.0.kind"),
    ("agents.0.model", None, "agents.0.model"),
    ("agents.0.temperature", 3, "agents.0.temperature"),
    ("agents.0.surface.paths", [], "agents.0.surface.paths"),
    ("agents.0.surface.paths", ["../../outside.py"], "agents.0.surface.paths.0"),
    ("agents.1.name", "opt", "agents"),
    ("agents.2.knobs.0.pattern", "LR = \\S+", "agents.2.knobs.0.pattern"),
    ("agents.2.knobs.0.pattern", "LR = (", "agents.2.knobs.0.pattern"),
    ("agents.2.knobs.0.low", 2.0, "agents.2.knobs.0"),
    ("agents.2.knobs", [], "agents.2.knobs"),
    ("agents.0.knobs", [{"name": "x"}], "agents.0.knobs.0.file"),
]


@pytest.mark.parametrize(("path", "value", "field"), BAD_FIELDS)
def test_each_invalid_field_is_a_422_naming_that_field(
    client: TestClient, recipe: Recipe, path: str, value: Any, field: str
) -> None:
    response = client.post("/api/searches", json=with_path(spec_dict(recipe), path, value))

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "InvalidSpec"
    assert field in [error["field"] for error in body["detail"]]
    assert client.get("/api/searches").json()["total"] == 0


def test_a_relative_local_path_is_refused_over_the_api(client: TestClient, recipe: Recipe) -> None:
    response = client.post("/api/searches", json=spec_dict(recipe, repo="recipe"))

    assert response.status_code == 422
    assert response.json()["detail"] == [
        {
            "field": "repo",
            "message": "must be an absolute path on the server (or a git URL for repo)",
        }
    ]


def test_a_missing_evaluator_directory_is_refused(
    client: TestClient, recipe: Recipe, tmp_path: Path
) -> None:
    spec = with_path(spec_dict(recipe), "evaluator.path", str(tmp_path / "nowhere"))

    response = client.post("/api/searches", json=spec)

    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "evaluator.path"


def test_an_unknown_ref_is_refused_and_leaves_no_repo_behind(
    client: TestClient, recipe: Recipe, settings: Settings
) -> None:
    response = client.post("/api/searches", json=spec_dict(recipe, ref="no-such-branch"))

    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "ref"
    assert client.get("/api/searches").json()["total"] == 0
    assert not settings.repos_dir.exists() or not any(settings.repos_dir.iterdir())


def test_a_body_that_is_not_json_is_a_422(client: TestClient) -> None:
    response = client.post(
        "/api/searches", content=b"{not json", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json()["error"] == "InvalidSpec"

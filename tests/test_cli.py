"""The `trialforge` CLI over a real database: migrate, submit a YAML spec, list, show.

Invariant: a failure exits non-zero with one line naming the reason (and the
field, for a bad spec), never a traceback, and stores nothing.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app.cli.main import app
from app.config import Settings
from app.db import head_revision
from app.domain.states import Label, SearchStatus
from app.store.models import Search, Trial
from testing.factories import NO_MODEL, Recipe, seeded_search, spec_dict


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "TRIALFORGE_DATABASE_URL": database_url,
        "TRIALFORGE_DATA_DIR": str(tmp_path / "data"),
        "TRIALFORGE_LLM_BASE_URL": NO_MODEL,
    }


def run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def write_spec(recipe: Recipe, **overrides: object) -> Path:
    """A spec file beside the recipe, with paths relative to the file, as users write them."""
    spec = spec_dict(recipe, repo="recipe", **overrides)
    spec["evaluator"]["path"] = "evaluator"
    path = recipe.repo.parent / "search.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_db_upgrade_creates_the_schema_that_commands_then_use(tmp_path: Path) -> None:
    env = {"TRIALFORGE_DATA_DIR": str(tmp_path / "data")}

    code, out, _ = run(env, "db", "upgrade")

    assert (code, out) == (0, f"schema at {head_revision()}\n")
    assert (tmp_path / "data" / "trialforge.db").is_file()
    assert run(env, "search", "list")[0] == 0
    assert run(env, "db", "downgrade", "base") == (0, "schema at base\n", "")


def test_submit_resolves_paths_from_the_spec_file_and_list_shows_the_search(
    env: dict[str, str], recipe: Recipe
) -> None:
    code, out, err = run(env, "search", "submit", str(write_spec(recipe)))
    assert (code, err) == (0, "")
    assert out.startswith("search 1 created (digits-mlp, recipe at ")

    code, out, _ = run(env, "search", "list")
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["id", "status", "trials", "baseline", "best", "name"]
    assert row.split() == ["1", "running", "0/1", "-", "-", "digits-mlp"]


def test_show_prints_the_search_as_json_with_absolute_paths(
    env: dict[str, str], recipe: Recipe
) -> None:
    run(env, "search", "submit", str(write_spec(recipe)))

    code, out, _ = run(env, "search", "show", "1")

    assert code == 0
    shown = json.loads(out)
    assert shown["spec"]["repo"] == str(recipe.repo.resolve())
    assert shown["spec"]["evaluator"]["path"] == str(recipe.evaluator.resolve())


def test_an_invalid_spec_file_exits_1_naming_the_field(env: dict[str, str], recipe: Recipe) -> None:
    spec = write_spec(recipe, budgets={"trial": {"wallclock_s": -1}})

    code, out, err = run(env, "search", "submit", str(spec))

    assert code == 1
    assert err.startswith("error: invalid search spec: budgets.trial.wallclock_s: ")
    assert len(err.strip().splitlines()) == 1
    assert run(env, "search", "list")[1].splitlines()[1:] == []


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "cannot read spec file"), ("- a\n- list\n", "must hold a mapping"), ("a: [", "YAML")],
)
def test_an_unreadable_spec_file_exits_1_with_the_reason(
    env: dict[str, str], tmp_path: Path, content: str | None, reason: str
) -> None:
    path = tmp_path / "spec.yaml"
    if content is not None:
        path.write_text(content)

    code, _, err = run(env, "search", "submit", str(path))

    assert code == 1
    assert reason in err


def test_showing_a_missing_search_exits_1(env: dict[str, str]) -> None:
    assert run(env, "search", "show", "77") == (1, "", "error: no search 77\n")


def test_commands_refuse_an_unmigrated_database(tmp_path: Path) -> None:
    env = {"TRIALFORGE_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}

    code, _, err = run(env, "search", "list")

    assert code == 1
    assert "run `trialforge db upgrade`" in err


def test_report_prints_where_a_search_stands(env: dict[str, str], recipe: Recipe) -> None:
    run(env, "search", "submit", str(write_spec(recipe)))

    code, out, _ = run(env, "search", "report", "1")

    assert code == 0
    assert out.splitlines()[0] == "search 1: running"
    assert "  trials        1" in out and "  keeps         0" in out
    assert run(env, "search", "report", "9") == (1, "", "error: no search 9\n")


def test_compare_prints_one_row_per_search(env: dict[str, str], recipe: Recipe) -> None:
    spec = write_spec(recipe)
    run(env, "search", "submit", str(spec))
    run(env, "search", "submit", str(spec))

    code, out, err = run(env, "compare", "1", "2")

    assert code == 0, (out, err)
    header, *rows = out.splitlines()
    assert header.split()[:4] == ["id", "name", "feedback", "agents"]
    assert [row.split()[:3] for row in rows] == [["1", "digits-mlp", "full"],
                                                 ["2", "digits-mlp", "full"]]  # fmt: skip
    assert run(env, "compare", "1", "5") == (1, "", "error: no search 5\n")


def seeded(env: dict[str, str], recipe: Recipe, session: Session, settings: Settings) -> int:
    """A search with a small lineage, in the database the CLI uses."""
    return seeded_search(session, settings, recipe, "maximize").id


def test_pause_resume_and_a_confirmed_cancel_move_the_search(
    env: dict[str, str], recipe: Recipe
) -> None:
    run(env, "search", "submit", str(write_spec(recipe)))

    assert run(env, "search", "pause", "1") == (0, "search 1: paused\n", "")
    assert run(env, "search", "pause", "1") == (
        1,
        "",
        "error: cannot pause a search that is paused\n",
    )
    assert run(env, "search", "resume", "1") == (0, "search 1: running\n", "")
    refused = CliRunner().invoke(app, ["search", "cancel", "1"], env=env, input="n\n")
    assert refused.exit_code == 1 and "cancel search 1 (digits-mlp)" in refused.stdout
    assert run(env, "search", "show", "1")[1].count('"status": "running"') == 1
    assert run(env, "search", "cancel", "1", "--yes") == (0, "search 1: cancelled\n", "")


def test_trials_are_listed_and_shown_with_their_number_and_id(
    env: dict[str, str], recipe: Recipe, session: Session, settings: Settings
) -> None:
    search_id = seeded(env, recipe, session, settings)
    crash = session.scalar(select(Trial).where(Trial.label == Label.CRASH))
    assert crash is not None

    code, out, _ = run(env, "trial", "list", str(search_id), "--label", "crash")
    shown = run(env, "trial", "show", str(crash.id))

    assert code == 0
    header, row = out.splitlines()
    assert header.split()[:4] == ["trial", "id", "agent", "outcome"]
    assert row.split()[:4] == [str(crash.number), str(crash.id), "opt", "crash"]
    assert shown[0] == 0 and json.loads(shown[1])["label"] == "crash"
    assert run(env, "trial", "show", "999999") == (1, "", "error: no trial 999999\n")


def test_export_writes_the_same_records_as_the_api(
    env: dict[str, str], recipe: Recipe, session: Session, settings: Settings, tmp_path: Path,
    client: TestClient,
) -> None:  # fmt: skip
    search_id = seeded(env, recipe, session, settings)
    target = tmp_path / "export.jsonl"

    code, _, err = run(env, "search", "export", str(search_id), "--output", str(target))

    assert code == 0 and err.startswith("wrote ")
    assert target.read_text() == client.get(f"/api/searches/{search_id}/export").text


def test_watch_follows_a_search_to_its_end_and_prints_its_report(
    env: dict[str, str], recipe: Recipe, session: Session, settings: Settings
) -> None:
    search_id = seeded(env, recipe, session, settings)
    search = session.get(Search, search_id)
    assert search is not None
    search.status, search.halt_reason = SearchStatus.FINISHED, "max_trials reached"
    session.commit()

    code, out, _ = run(env, "search", "watch", str(search_id), "--interval", "0.1")

    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"search {search_id} finished: 7/8 trials, best 0.7")
    assert f"search {search_id}: finished (max_trials reached)" in lines
    assert any(line.startswith("  best          0.7 (trial 1, id ") for line in lines)


def test_version_is_printed() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert (result.exit_code, result.stdout) == (0, f"trialforge {version('trialforge')}\n")

"""Every door refuses bad input clearly, and a refusal writes nothing (issue 15).

A spec that cannot run on its recipe (a surface matching no file, a knob
whose pattern does not match exactly once, a run command missing from the
recipe, every editable file protected, a symlink leading out), numbers that
are infinite or absurd, names and descriptions with control characters or
of any size: each is a 422 naming the field, over real HTTP on the real
database (SQLite and Postgres alike), and leaves no search, no event and no
repository behind. Ids no row can have, forged cursors and an unbounded
compare are 404, 400 and 422 with the reason, never a 500. A spec that is
accepted says what was checked.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app.cli.main import app as cli
from app.config import Settings
from app.domain.edits import file_diff
from app.domain.proposals import Proposal
from app.domain.states import TrialStatus
from app.services.propose import record_proposal
from app.store.models import Event, Search
from testing.factories import (
    NO_MODEL,
    Recipe,
    add_trial,
    baseline_of,
    git,
    make_recipe,
    spec_dict,
)


def nothing_written(client: TestClient, session: Session, settings: Settings) -> bool:
    """No search and no event in the database, and no repository (nor staging) on disk."""
    repos = settings.repos_dir
    leftovers = list(repos.iterdir()) if repos.exists() else []
    searches = session.scalar(select(func.count()).select_from(Search))
    events = session.scalar(select(func.count()).select_from(Event))
    return client.get("/api/searches").json()["total"] == 0 == searches == events == len(leftovers)


def refused(client: TestClient, spec: dict[str, Any]) -> dict[str, str]:
    """POST the spec; it must be a 422 InvalidSpec. Returns field -> message.

    The body is written by `json.dumps`, which writes Infinity and NaN as a hostile
    client may (httpx refuses to).
    """
    body = json.dumps(spec).encode()
    headers = {"Content-Type": "application/json"}
    response = client.post("/api/searches", content=body, headers=headers)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "InvalidSpec"
    return {error["field"]: error["message"] for error in body["detail"]}


def agent(spec: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(a for a in spec["agents"] if a["name"] == name)
    return found


# --- the spec against its recipe ---------------------------------------------------------


def test_a_surface_glob_that_matches_no_file_is_refused_naming_it(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    spec = spec_dict(recipe)
    agent(spec, "opt")["surface"]["paths"] = ["train.py", "trainer.py"]

    fields = refused(client, spec)

    assert list(fields) == ["agents.0.surface.paths.1"]
    assert "'trainer.py' matches no file of the recipe" in fields["agents.0.surface.paths.1"]
    assert "surface.new_files" in fields["agents.0.surface.paths.1"]
    assert nothing_written(client, session, settings)


def test_files_an_agent_is_to_create_are_declared_as_new_files_and_accepted(
    client: TestClient, recipe: Recipe
) -> None:
    spec = spec_dict(recipe)
    agent(spec, "opt")["surface"]["new_files"] = ["schedules/*.py"]

    response = client.post("/api/searches", json=spec)

    assert response.status_code == 201, response.text
    stored = agent(response.json()["spec"], "opt")["surface"]
    assert stored["new_files"] == ["schedules/*.py"]


def test_an_agent_creates_a_file_its_new_files_name_and_the_edit_becomes_a_trial(
    client: TestClient, session: Session, recipe: Recipe
) -> None:
    spec = spec_dict(recipe)
    agent(spec, "arch")["surface"]["new_files"] = ["blocks/*.py"]
    search_id = client.post("/api/searches", json=spec).json()["id"]
    search = session.get(Search, search_id)
    assert search is not None
    trial = add_trial(session, search, agent="arch", parent=baseline_of(session, search),
                      label=None, status=TrialStatus.PROPOSED)  # fmt: skip
    session.commit()
    created = file_diff("blocks/residual.py", None, "DEPTH = 2\n")

    record_proposal(session, trial.id, Proposal("Add a residual block.", created))
    session.commit()

    session.refresh(trial)
    assert (trial.status, trial.label) == (TrialStatus.READY, None), trial.label_reason
    assert "+DEPTH = 2" in trial.diff


@pytest.mark.parametrize(
    ("knob", "field", "reason"),
    [
        ({"pattern": r"^ETA = (\S+)$"}, "pattern", "matches nothing in train.py"),
        ({"pattern": r"^(\w+) = "}, "pattern", "matches more than once in train.py"),
        ({"pattern": r"^def (main)\("}, "pattern", "'main' is not a number"),
        ({"file": "trainer.py"}, "file", "no file 'trainer.py' in the recipe"),
        ({"file": "model.py", "pattern": r"^WIDTH = (\d+)$"}, "file", "outside the agent's"),
    ],
)
def test_a_knob_that_cannot_move_is_refused_naming_its_field(
    client: TestClient,
    session: Session,
    settings: Settings,
    recipe: Recipe,
    knob: dict[str, str],
    field: str,
    reason: str,
) -> None:
    spec = spec_dict(recipe)
    agent(spec, "knobs")["knobs"][0].update(knob)

    fields = refused(client, spec)

    assert reason in fields[f"agents.2.knobs.0.{field}"]
    assert nothing_written(client, session, settings)


def test_a_surface_that_is_all_protected_is_refused(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    spec = spec_dict(recipe)
    agent(spec, "arch")["surface"]["paths"] = ["data/**"]  # data/** is protected

    fields = refused(client, spec)

    assert "agent 'arch' could edit no file" in fields["agents.1.surface"]
    assert nothing_written(client, session, settings)


def recipe_with_script(tmp_path: Path, executable: bool) -> Recipe:
    made = make_recipe(tmp_path)
    script = made.repo / "train.sh"
    script.write_text("#!/bin/sh\npython3 train.py\n")
    if executable:
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    git(made.repo, "add", "-A")
    git(made.repo, "commit", "-q", "-m", "script")
    return made


@pytest.mark.parametrize(
    ("field", "command", "reason"),
    [
        ("run", "./run.sh --fast", "'./run.sh' is not a file of the recipe"),
        ("run", "SEED=1 ./train.sh", "'./train.sh' is not executable in the recipe"),
        ("run", "./data", "'./data' is a directory of the recipe"),
        ("preflight", "scripts/check.py", "'scripts/check.py' is not a file of the recipe"),
    ],
)
def test_a_command_whose_program_is_not_in_the_recipe_is_refused(
    client: TestClient,
    session: Session,
    settings: Settings,
    tmp_path: Path,
    field: str,
    command: str,
    reason: str,
) -> None:
    made = recipe_with_script(tmp_path, executable=False)
    spec = spec_dict(made, **({"preflight": {"command": command}} if field == "preflight" else {}))
    if field == "run":
        spec["run"] = command

    fields = refused(client, spec)

    assert reason in fields["run" if field == "run" else "preflight.command"]
    assert nothing_written(client, session, settings)


def test_an_accepted_spec_says_what_was_checked(client: TestClient, tmp_path: Path) -> None:
    made = recipe_with_script(tmp_path, executable=True)
    spec = spec_dict(made, run="./train.sh", preflight={"command": "python3 -c 'print(1)'"})

    response = client.post("/api/searches", json=spec)

    assert response.status_code == 201, response.text
    checks = {check["field"]: check["message"] for check in response.json()["checks"]}
    assert checks["run"] == "'./train.sh' is an executable file of the recipe"
    assert checks["preflight.command"] == "'python3' is taken from the image (not checked)"
    assert checks["agents.0.surface.paths.0"] == "'train.py' matches 1 file(s)"
    assert checks["agents.2.knobs.0"] == "knob lr: its pattern matches once in train.py (now 0.1)"
    assert checks["agents.0.base_url"] == f"calls {NO_MODEL} with the operator's key"
    assert checks["repo"].startswith("imported ") and "no symlink leaving it" in checks["repo"]
    assert checks["evaluator.path"] == "exists"


@pytest.mark.parametrize("target", ["/etc/passwd", "../outside", "here/.."])
def test_a_recipe_symlink_that_leads_outside_it_is_refused_at_import_naming_the_path(
    client: TestClient, session: Session, settings: Settings, tmp_path: Path, target: str
) -> None:
    made = make_recipe(tmp_path)
    os.symlink(".", made.repo / "here")  # inside; `here/..` leaves through it
    os.symlink(target, made.repo / "escape")
    git(made.repo, "add", "-A")
    git(made.repo, "commit", "-q", "-m", "links")

    fields = refused(client, spec_dict(made))

    assert fields["repo"] == (
        f"the recipe holds symlinks: 'escape' is a symlink to {target!r}, which leads outside "
        "the recipe (or loops)"
    )
    assert nothing_written(client, session, settings)


def test_a_plain_folder_recipe_with_an_escaping_symlink_is_refused_too(
    client: TestClient, session: Session, settings: Settings, tmp_path: Path
) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "train.py").write_text("LR = 0.1\n")
    (folder / "model.py").write_text("WIDTH = 64\n")
    os.symlink("/etc", folder / "host")
    (tmp_path / "other").mkdir()
    made = make_recipe(tmp_path / "other")
    spec = spec_dict(Recipe(repo=folder, evaluator=made.evaluator))
    spec["agents"] = [a for a in spec["agents"] if a["name"] != "knobs"]

    fields = refused(client, spec)

    assert fields["repo"] == (
        "the recipe holds symlinks: 'host' is a symlink to '/etc', which leads outside the "
        "recipe (or loops)"
    )
    assert nothing_written(client, session, settings)


def test_the_cli_refuses_a_spec_that_cannot_run_with_exit_1_and_the_field(
    database_url: str, tmp_path: Path
) -> None:
    made = make_recipe(tmp_path)
    spec = spec_dict(made, run="./train.sh")
    path = tmp_path / "search.json"
    path.write_text(json.dumps(spec))
    env = {
        "TRIALFORGE_DATABASE_URL": database_url,
        "TRIALFORGE_DATA_DIR": str(tmp_path / "data"),
        "TRIALFORGE_LLM_BASE_URL": NO_MODEL,
    }

    result = CliRunner().invoke(cli, ["search", "submit", str(path)], env=env)
    listed = CliRunner().invoke(cli, ["search", "list"], env=env)

    assert result.exit_code == 1
    assert result.stderr.startswith("error: invalid search spec: run: './train.sh' is not a file")
    assert listed.stdout.splitlines()[1:] == []


def test_the_cli_prints_what_it_checked_when_it_accepts_a_spec(
    database_url: str, tmp_path: Path
) -> None:
    made = make_recipe(tmp_path)
    path = tmp_path / "search.json"
    path.write_text(json.dumps(spec_dict(made)))
    env = {
        "TRIALFORGE_DATABASE_URL": database_url,
        "TRIALFORGE_DATA_DIR": str(tmp_path / "data"),
        "TRIALFORGE_LLM_BASE_URL": NO_MODEL,
    }

    result = CliRunner().invoke(cli, ["search", "submit", str(path)], env=env)

    assert result.exit_code == 0, result.stderr
    assert "  checked run: 'python' is taken from the image (not checked)" in result.stdout
    assert "  checked agents.0.surface.paths.0: 'train.py' matches 1 file(s)" in result.stdout


# --- numbers, sizes and text ------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("budgets.trial.wallclock_s", 1e308, "budgets.trial.wallclock_s"),
        ("budgets.trial.wallclock_s", float("inf"), "budgets.trial.wallclock_s"),
        ("budgets.trial.wallclock_s", 1e20, "budgets.trial.wallclock_s"),
        ("budgets.trial.wallclock_s", "99999999999999999999d", "budgets.trial.wallclock_s"),
        ("budgets.search.max_cost_usd", float("inf"), "budgets.search.max_cost_usd"),
        ("budgets.search.deadline", float("nan"), "budgets.search.deadline"),
        ("budgets.trial.memory", "100PiB", "budgets.trial.memory"),
        ("budgets.search.max_trials", 10**30, "budgets.search.max_trials"),
        ("evaluator.gates", ["val_acc >= inf"], "evaluator.gates.0.value"),
        ("agents.2.knobs.0.high", float("inf"), "agents.2.knobs.0.high"),
    ],
)
def test_an_infinite_or_absurd_number_is_a_422_naming_its_field(
    client: TestClient,
    session: Session,
    settings: Settings,
    recipe: Recipe,
    path: str,
    value: object,
    field: str,
) -> None:
    spec = spec_dict(recipe)
    node: Any = spec
    *parents, last = path.split(".")
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[last] = value

    fields = refused(client, spec)

    assert field in fields
    assert nothing_written(client, session, settings)


@pytest.mark.parametrize(
    ("override", "field", "reason"),
    [
        ({"name": "digits\x00mlp"}, "name", "control character (U+0000 at 6)"),
        ({"name": "two\nlines"}, "name", "must be one line"),
        ({"description": "x" * 10_000_001}, "body", "bytes as JSON; at most 1000000"),
        ({"description": "y" * 20_000}, "description", "20000 characters; at most 10000"),
        ({"description": "bell\x07"}, "description", "control character (U+0007"),
        ({"run": "python train.py\x00"}, "run", "control character (U+0000"),
    ],
)
def test_control_characters_and_oversized_text_are_refused_on_every_database(
    client: TestClient,
    session: Session,
    settings: Settings,
    recipe: Recipe,
    override: dict[str, str],
    field: str,
    reason: str,
) -> None:
    fields = refused(client, spec_dict(recipe, **override))

    assert reason in fields[field]
    assert nothing_written(client, session, settings)


def test_a_brief_in_a_surface_may_span_lines(client: TestClient, recipe: Recipe) -> None:
    spec = spec_dict(recipe)
    agent(spec, "opt")["surface"]["brief"] = "Optimizer.\n\tKeep the schedule simple."

    assert client.post("/api/searches", json=spec).status_code == 201


# --- ids, cursors and the compare page -------------------------------------------------

NO_ROW_IDS = [2**63, 2**63 - 1, 2**31, 10**30, 0, -1]


@pytest.fixture
def existing(client: TestClient, recipe: Recipe) -> dict[str, Any]:
    created: dict[str, Any] = client.post("/api/searches", json=spec_dict(recipe)).json()
    return created


@pytest.mark.parametrize("row", NO_ROW_IDS)
def test_an_id_no_row_can_have_is_a_404_on_every_route(
    client: TestClient, existing: dict[str, Any], row: int
) -> None:
    gets = [
        f"/api/searches/{row}",
        f"/api/searches/{row}/report",
        f"/api/searches/{row}/trials",
        f"/api/searches/{row}/lineage",
        f"/api/searches/{row}/export",
        f"/api/trials/{row}",
        f"/searches/{row}",
        f"/searches/{row}/trials",
        f"/searches/{row}/live",
        f"/trials/{row}",
        f"/trials/{row}/compare",
        f"/compare?ids={existing['id']},{row}",
        f"/searches/{row}?format=json",
    ]
    posts = [
        f"/api/searches/{row}/pause",
        f"/api/trials/{row}/rerun",
        f"/searches/{row}/cancel",
        f"/trials/{row}/rerun",
    ]

    answers = {url: client.get(url).status_code for url in gets}
    answers |= {url: client.post(url).status_code for url in posts}

    assert answers == {url: 404 for url in [*gets, *posts]}
    assert client.get(f"/api/searches/{existing['id']}").json()["status"] == "running"


def forged(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("key", "sort", "reason"),
    [
        ('["abc"]', "newest", "cursor's id must be an integer from 1 to 2147483647, not 'abc'"),
        ("[[1]]", "newest", "cursor's id must be an integer from 1 to 2147483647, not [1]"),
        ("[null]", "oldest", "cursor's id must be an integer from 1 to 2147483647, not None"),
        ("[1e309]", "newest", "cursor's id must be an integer from 1 to 2147483647, not inf"),
        ("[99999999999999999999]", "newest", "to 2147483647, not 99999999999999999999"),
        ('[{"a":1},1]', "best", "cursor's score must be a finite number or null, not {'a': 1}"),
        ("[1e309, 1]", "best", "cursor's score must be a finite number or null, not inf"),
        ('[0.5, "x"]', "worst", "cursor's id must be an integer from 1 to 2147483647, not 'x'"),
        ("[1, 2]", "newest", "cursor does not fit this listing"),
        ("[" * 5000 + "]" * 5000, "newest", "cursor is 13334 characters; this API issues"),
        ("not json", "newest", "cursor is not one this API issued"),
    ],
)
def test_a_forged_cursor_is_a_400_with_the_reason(
    client: TestClient, existing: dict[str, Any], key: str, sort: str, reason: str
) -> None:
    cursor = forged(key)
    search_id = existing["id"]
    urls = [
        f"/api/searches/{search_id}/trials?sort={sort}&cursor={cursor}",
        f"/searches/{search_id}/trials?sort={sort}&cursor={cursor}",
    ]
    if sort == "newest":
        urls += [
            f"/api/searches?cursor={cursor}",
            f"/api/searches/{search_id}/lineage?cursor={cursor}",
        ]

    for url in urls:
        response = client.get(url)
        assert response.status_code == 400, (url, response.text)
        if url.startswith("/api/"):
            body = response.json()
            assert body["error"] == "InvalidCursor" and reason in body["detail"]
        else:
            assert reason in response.text.replace("&#39;", "'")


def test_a_cursor_for_an_unscored_row_still_pages_by_score(
    client: TestClient, existing: dict[str, Any]
) -> None:
    trials = f"/api/searches/{existing['id']}/trials"
    (baseline,) = client.get(trials).json()["items"]  # unscored, so last in score order

    cursor = forged(json.dumps([None, baseline["id"]]))

    page = client.get(f"{trials}?sort=best&cursor={cursor}")

    assert (page.status_code, page.json()["items"]) == (200, [])


def test_the_compare_page_takes_at_most_twenty_searches(
    client: TestClient, existing: dict[str, Any]
) -> None:
    ids = ",".join(str(existing["id"]) for _ in range(21))

    response = client.get(f"/compare?ids={ids}&format=json")

    assert response.status_code == 422
    assert "compare at most 20 searches at once, not 21" in response.text


def test_an_agent_filter_with_nul_matches_nothing_instead_of_failing(
    client: TestClient, existing: dict[str, Any]
) -> None:
    page = client.get(f"/api/searches/{existing['id']}/trials", params={"agent": "opt\x00"})

    assert (page.status_code, page.json()["total"]) == (200, 0)

"""With TRIALFORGE_API_TOKEN set, every write needs the bearer token; secrets never leak.

Reads stay open so a dashboard can be shared read-only, unless the server
is private: then API requests need the header too and dashboard pages a
sign-in. A refused write changes nothing. With TRIALFORGE_IMPORT_ROOTS set,
a search reads local directories only under those roots, however spelled.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.config import Settings
from app.server import create_app
from testing.factories import Recipe, spec_dict

TOKEN = "s3cret-token-value"


@pytest.fixture
def guarded(settings: Settings) -> Iterator[TestClient]:
    locked = settings.model_copy(update={"api_token": SecretStr(TOKEN)})
    with TestClient(create_app(locked)) as test_client:
        yield test_client


AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": "Basic x"}],
)
def test_a_write_without_the_right_token_is_a_401_and_stores_nothing(
    guarded: TestClient, recipe: Recipe, headers: dict[str, str]
) -> None:
    response = guarded.post("/api/searches", json=spec_dict(recipe), headers=headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"] == "Unauthorized"
    assert guarded.get("/api/searches").json()["total"] == 0


def test_every_state_change_needs_the_token(guarded: TestClient, recipe: Recipe) -> None:
    search_id = guarded.post("/api/searches", json=spec_dict(recipe), headers=AUTH).json()["id"]

    for action in ("pause", "resume", "cancel"):
        assert guarded.post(f"/api/searches/{search_id}/{action}").status_code == 401
    assert guarded.get(f"/api/searches/{search_id}").json()["status"] == "running"
    assert guarded.post(f"/api/searches/{search_id}/pause", headers=AUTH).status_code == 200


def test_reads_stay_open_when_a_token_is_set(guarded: TestClient) -> None:
    assert guarded.get("/api/searches").status_code == 200
    assert guarded.get("/healthz").status_code == 200


def test_the_token_appears_in_no_response(guarded: TestClient, recipe: Recipe) -> None:
    created = guarded.post("/api/searches", json=spec_dict(recipe), headers=AUTH)
    search_id = created.json()["id"]
    bodies = [
        created.text,
        guarded.get("/api/searches").text,
        guarded.get(f"/api/searches/{search_id}/export").text,
        guarded.get("/healthz").text,
        guarded.get("/openapi.json").text,
        guarded.post("/api/searches", json=spec_dict(recipe)).text,
    ]

    assert not [body for body in bodies if TOKEN in body]


def test_credentials_in_a_repo_url_never_reach_the_response_or_the_log(
    client: TestClient, recipe: Recipe, caplog: pytest.LogCaptureFixture
) -> None:
    url = "https://alice:hunter2-password@127.0.0.1:9/nothing/here.git"

    response = client.post("/api/searches", json=spec_dict(recipe, repo=url))

    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "repo"
    assert "hunter2-password" not in response.text
    assert "hunter2-password" not in caplog.text


@pytest.mark.parametrize("spelling", ["outside", "symlink", "file-url"])
def test_with_import_roots_a_search_cannot_read_directories_outside_them(
    settings: Settings, recipe: Recipe, tmp_path: Path, spelling: str
) -> None:
    root = tmp_path / "imports"
    root.mkdir()
    spec = spec_dict(recipe)
    if spelling == "symlink":  # inside the root by name, outside once resolved
        (root / "recipe").symlink_to(recipe.repo)
        (root / "evaluator").symlink_to(recipe.evaluator)
        spec["repo"], spec["evaluator"]["path"] = str(root / "recipe"), str(root / "evaluator")
    elif spelling == "file-url":
        spec["repo"] = recipe.repo.as_uri()
    rooted = settings.model_copy(update={"import_roots": f" {root} ,"})

    with TestClient(create_app(rooted)) as client:
        response = client.post("/api/searches", json=spec)
        listed = client.get("/api/searches").json()["total"]

    assert response.status_code == 422
    fields = {error["field"]: error["message"] for error in response.json()["detail"]}
    assert "outside the server's import roots" in fields["repo"]
    assert "evaluator.path" in fields
    assert listed == 0


def test_with_import_roots_a_search_under_them_is_created(
    settings: Settings, recipe: Recipe
) -> None:
    rooted = settings.model_copy(update={"import_roots": str(recipe.repo.parent)})

    with TestClient(create_app(rooted)) as client:
        response = client.post("/api/searches", json=spec_dict(recipe))

    assert response.status_code == 201, response.text


@pytest.fixture
def private(settings: Settings) -> Iterator[TestClient]:
    locked = settings.model_copy(update={"api_token": SecretStr(TOKEN), "private": True})
    with TestClient(create_app(locked), follow_redirects=False) as test_client:
        yield test_client


def test_on_a_private_server_every_read_needs_the_token_or_a_sign_in(
    private: TestClient, recipe: Recipe
) -> None:
    created = private.post("/api/searches", json=spec_dict(recipe), headers=AUTH)
    assert created.status_code == 201
    search_id = created.json()["id"]

    assert private.get("/api/searches").status_code == 401
    assert private.get(f"/api/searches/{search_id}/lineage").status_code == 401
    assert private.get(f"/searches/{search_id}/live").status_code == 401
    assert private.get("/api/searches", headers=AUTH).json()["total"] == 1
    page = private.get(f"/searches/{search_id}?format=json")
    assert page.status_code == 303
    assert page.headers["location"] == f"/login?next=%2Fsearches%2F{search_id}%3Fformat%3Djson"
    assert private.get("/healthz").status_code == 200
    assert private.get("/static/style.css").status_code == 200

    wrong = private.post("/login", data={"token": "guess", "next": "/"})
    assert wrong.status_code == 401 and "not the token" in wrong.text
    assert private.get("/").status_code == 303

    signed = private.post("/login", data={"token": TOKEN, "next": f"/searches/{search_id}"})
    assert signed.status_code == 303 and signed.headers["location"] == f"/searches/{search_id}"
    cookie = signed.headers["set-cookie"]
    assert TOKEN not in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    page = private.get(f"/searches/{search_id}")
    assert page.status_code == 200 and 'name="token"' not in page.text  # signed in is enough
    assert private.get("/api/searches").status_code == 200  # the sign-in serves the API too
    assert private.post(f"/searches/{search_id}/pause").status_code == 303
    assert private.get(f"/api/searches/{search_id}").json()["status"] == "paused"

    private.post("/logout")
    assert private.get("/").status_code == 303


def test_a_sign_in_never_redirects_off_the_server(private: TestClient) -> None:
    for target in ("https://evil.example/", "//evil.example/", "javascript:alert(1)"):
        signed = private.post("/login", data={"token": TOKEN, "next": target})
        assert signed.headers["location"] == "/"


def test_a_private_server_without_a_token_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="TRIALFORGE_PRIVATE needs TRIALFORGE_API_TOKEN"):
        Settings(private=True)

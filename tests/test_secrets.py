"""Secrets and endpoints follow the operator's settings, never the spec (issue 15).

Whoever may submit a search writes its spec. Invariants: an llm agent needs
an endpoint the operator configured (TRIALFORGE_LLM_BASE_URL, or its own
`base_url` if it is on TRIALFORGE_LLM_ALLOWED_BASE_URLS), or the search is
refused; no request ever leaves for a host nobody configured, not even the
client library's default one; the operator's key goes only to the
operator's endpoint; a per-agent key is named by reference (`api_key_env`,
one of TRIALFORGE_LLM_KEY_ENVS) and is never stored, exported or shown.
Listeners on 127.0.0.1 record what arrives where.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.domain.states import Label, TrialStatus
from app.server import create_app
from app.store.models import Search, Trial
from testing.factories import Recipe, add_trial, baseline_of, spec_dict
from testing.fake_llm import FakeLLM
from testing.listener import Listener
from testing.proposals import propose_through

OPERATOR_KEY = "operator-key-5f1c"
PARTNER_KEY = "partner-key-a9e2"


@pytest.fixture
def operator() -> Iterator[FakeLLM]:
    """The operator's own endpoint."""
    server = FakeLLM({}, lambda agent, n: "no edit today")
    with server.running():
        yield server


@pytest.fixture
def partner() -> Iterator[FakeLLM]:
    """Another endpoint, which the operator may or may not allow."""
    server = FakeLLM({}, lambda agent, n: "no edit today")
    with server.running():
        yield server


@pytest.fixture
def stranger(monkeypatch: pytest.MonkeyPatch) -> Iterator[Listener]:
    """A host nobody configured. It is also where the `openai` client would go if it
    were ever handed no base URL (it reads OPENAI_BASE_URL before its public default)."""
    with Listener().running() as listener:
        monkeypatch.setenv("OPENAI_BASE_URL", f"{listener.url}/v1")
        yield listener


@pytest.fixture
def served(settings: Settings, operator: FakeLLM) -> Settings:
    return settings.model_copy(
        update={"llm_base_url": operator.base_url, "llm_api_key": SecretStr(OPERATOR_KEY)}
    )


def llm_spec(recipe: Recipe, **agent: Any) -> dict[str, Any]:
    """A spec with one llm agent (one turn per session: only what it sends matters)."""
    opt = {"name": "opt", "kind": "llm", "model": "m", "max_turns": 1,
           "surface": {"paths": ["train.py"]}, **agent}  # fmt: skip
    return spec_dict(recipe, agents=[opt])


def stored_nothing(session: Session) -> bool:
    return session.scalar(select(func.count()).select_from(Search)) == 0


def propose(session: Session, settings: Settings, search_id: int) -> Trial:
    """One proposal of the search's agent, recorded as the proposal task records it."""
    search = session.get(Search, search_id)
    assert search is not None
    trial = add_trial(session, search, agent="opt", parent=baseline_of(session, search),
                      label=None, status=TrialStatus.PROPOSED)  # fmt: skip
    return propose_through(session, settings, trial)


def test_llm_agents_with_no_endpoint_are_refused_and_no_request_leaves(
    settings: Settings, session: Session, recipe: Recipe, stranger: Listener
) -> None:
    bare = settings.model_copy(update={"llm_base_url": None})

    with TestClient(create_app(bare)) as client:
        response = client.post("/api/searches", json=spec_dict(recipe))

    assert response.status_code == 422
    fields = {error["field"]: error["message"] for error in response.json()["detail"]}
    assert set(fields) == {"agents.0.base_url", "agents.1.base_url"}
    assert fields["agents.0.base_url"] == (
        "agent 'opt' has no model endpoint: set its base_url or the server's "
        "TRIALFORGE_LLM_BASE_URL"
    )
    assert stored_nothing(session)
    assert stranger.received == []


def test_a_proposal_whose_endpoint_is_gone_is_an_infra_error_naming_it_and_calls_no_host(
    served: Settings, session: Session, recipe: Recipe, operator: FakeLLM, stranger: Listener
) -> None:
    with TestClient(create_app(served)) as client:
        search_id = client.post("/api/searches", json=llm_spec(recipe)).json()["id"]
    unconfigured = served.model_copy(update={"llm_base_url": None})

    trial = propose(session, unconfigured, search_id)

    assert (trial.status, trial.label) == (TrialStatus.FINISHED, Label.INFRA_ERROR)
    assert trial.label_reason == (
        "no model endpoint: agent 'opt' has no model endpoint: set its base_url or the "
        "server's TRIALFORGE_LLM_BASE_URL"
    )
    assert stranger.received == [] and operator.exchanges == []


def test_a_spec_endpoint_off_the_allowlist_is_refused_and_never_contacted(
    served: Settings, session: Session, recipe: Recipe, stranger: Listener
) -> None:
    with TestClient(create_app(served)) as client:
        response = client.post(
            "/api/searches", json=llm_spec(recipe, base_url=f"{stranger.url}/v1")
        )

    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["field"] == "agents.0.base_url"
    assert error["message"].startswith(f"{stranger.url}/v1 is not an endpoint this server allows")
    assert stored_nothing(session)
    assert stranger.received == []


def test_an_allowed_endpoint_gets_requests_but_never_the_operator_key(
    served: Settings,
    session: Session,
    recipe: Recipe,
    operator: FakeLLM,
    partner: FakeLLM,
    stranger: Listener,
) -> None:
    allowing = served.model_copy(update={"llm_allowed_base_urls": f" {partner.base_url}/ ,"})
    with TestClient(create_app(allowing)) as client:
        elsewhere = client.post("/api/searches", json=llm_spec(recipe, base_url=partner.base_url))
        at_home = client.post("/api/searches", json={**llm_spec(recipe), "name": "home"})
    assert elsewhere.status_code == at_home.status_code == 201, elsewhere.text
    checks = {check["field"]: check["message"] for check in elsewhere.json()["checks"]}
    assert checks["agents.0.base_url"] == f"calls {partner.base_url} with no key"

    propose(session, allowing, elsewhere.json()["id"])
    propose(session, allowing, at_home.json()["id"])

    assert {exchange.authorization for exchange in partner.exchanges} == {"Bearer unused"}
    assert {exchange.authorization for exchange in operator.exchanges} == {f"Bearer {OPERATOR_KEY}"}
    assert stranger.received == []


def test_a_per_agent_key_is_named_by_reference_and_goes_only_to_its_endpoint(
    served: Settings,
    session: Session,
    recipe: Recipe,
    operator: FakeLLM,
    partner: FakeLLM,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PARTNER_KEY", PARTNER_KEY)
    lending = served.model_copy(
        update={"llm_allowed_base_urls": partner.base_url, "llm_key_envs": "PARTNER_KEY"}
    )
    spec = llm_spec(recipe, base_url=partner.base_url, api_key_env="PARTNER_KEY")

    with TestClient(create_app(lending)) as client:
        created = client.post("/api/searches", json=spec)
        search_id = created.json()["id"]
        trial = propose(session, lending, search_id)
        shown = [
            created.text,
            client.get(f"/api/searches/{search_id}").text,
            client.get(f"/api/searches/{search_id}/export").text,
            client.get(f"/searches/{search_id}").text,
            client.get(f"/trials/{trial.id}").text,
        ]

    assert created.status_code == 201, created.text
    assert [exchange.authorization for exchange in partner.exchanges] == [f"Bearer {PARTNER_KEY}"]
    assert operator.exchanges == []
    assert not [text for text in shown if PARTNER_KEY in text or OPERATOR_KEY in text]
    assert '"api_key_env":"PARTNER_KEY"' in shown[1]  # the name is stored, not the key


@pytest.mark.parametrize(
    ("lent", "reason"),
    [
        ("", "TRIALFORGE_API_TOKEN is not a key this server lends to specs"),
        ("TRIALFORGE_API_TOKEN", "TRIALFORGE_API_TOKEN is not set on this server"),
    ],
)
def test_a_key_variable_the_operator_does_not_lend_or_set_is_refused(
    served: Settings, session: Session, recipe: Recipe, lent: str, reason: str
) -> None:
    lending = served.model_copy(update={"llm_key_envs": lent})

    with TestClient(create_app(lending)) as client:
        response = client.post(
            "/api/searches", json=llm_spec(recipe, api_key_env="TRIALFORGE_API_TOKEN")
        )

    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["field"] == "agents.0.api_key_env"
    assert error["message"].startswith(reason)
    assert stored_nothing(session)


@pytest.mark.parametrize(
    ("agent", "field"),
    [
        ({"api_key": "sk-inlined-3c7d"}, "agents.0.api_key"),
        ({"base_url": "http://me:sk-inlined-3c7d@127.0.0.1:9/v1"}, "agents.0.base_url"),
        ({"base_url": "http://127.0.0.1:9/v1?key=sk-inlined-3c7d"}, "agents.0.base_url"),
    ],
)
def test_a_key_written_into_a_spec_is_refused_and_not_echoed(
    client: TestClient, session: Session, recipe: Recipe, agent: dict[str, str], field: str
) -> None:
    response = client.post("/api/searches", json=llm_spec(recipe, **agent))

    assert response.status_code == 422
    assert field in [error["field"] for error in response.json()["detail"]]
    assert "sk-inlined-3c7d" not in response.text
    assert stored_nothing(session)

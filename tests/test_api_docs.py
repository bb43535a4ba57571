"""/docs and the OpenAPI document: served offline, the token declared, errors documented.

Invariants: the docs page and its assets come from this server (no CDN: it
was blank offline); the bearer scheme is declared, so a client or /docs
enters the token once; every API operation documents the 401, 404, 409 and
422 answers with the one error shape the API returns, and that shape is what
a real error looks like.
"""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def test_the_docs_page_and_its_assets_come_from_this_server(client: TestClient) -> None:
    page = client.get("/docs").text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)

    assert assets and all(url.startswith("/docs/assets/") for url in assets), assets
    for url in assets:
        assert client.get(url).status_code == 200, url
    assert "https://" not in page and client.get("/redoc").status_code == 200


def test_the_bearer_scheme_is_declared_and_errors_are_documented_as_they_are_sent(
    client: TestClient,
) -> None:
    document = client.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    submit = document["paths"]["/api/searches"]["post"]

    assert schemes["HTTPBearer"] == {
        "type": "http", "scheme": "bearer", "description": "TRIALFORGE_API_TOKEN"
    }  # fmt: skip
    assert {"HTTPBearer": []} in submit["security"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if not path.startswith("/api/"):
                continue
            for status in ("401", "404", "409", "422"):
                schema = operation["responses"][status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (method, path)
    error = client.get("/api/searches/999999").json()
    assert set(error) == set(document["components"]["schemas"]["ErrorOut"]["properties"])
    assert error["error"] == "NotFound"

"""Every failure is a JSON:API error document: unknown routes, wrong methods, big or broken bodies, crashes."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.api.conftest import only_error


def test_unknown_route_and_wrong_method(client: TestClient) -> None:
    missing = client.get("/v1/nothing-here")
    assert missing.status_code == 404 and only_error(missing)["title"] == "Not Found"
    wrong = client.delete("/v1/events")
    assert wrong.status_code == 405 and only_error(wrong)["title"] == "Method Not Allowed"
    assert "POST" in wrong.headers["Allow"]


def test_malformed_json_is_400_everywhere(client: TestClient, world: dict[str, Any]) -> None:
    headers = {**world["headers"]["buyer"], "Content-Type": "application/json"}
    for method, url in (("POST", "/v1/orders"), ("POST", "/v1/events"), ("POST", "/v1/orders/resend-email"),
                        ("PATCH", f"/v1/orders/{world['orders']['pending']}")):
        response = client.request(method, url, content=b'{"event": ', headers=headers)
        assert response.status_code == 400, url
        assert only_error(response)["detail"] == "Malformed JSON body"
        nested = client.request(method, url, content=b"[" * 100_000 + b"]" * 100_000, headers=headers)
        assert nested.status_code == 400 and only_error(nested)["detail"] == "Malformed JSON body", url
        undecodable = client.request(method, url, content=b"{\"name\": \"\xff\xfe\"}", headers=headers)
        assert undecodable.status_code in (400, 422), url


def test_validation_errors_point_at_the_field(client: TestClient, world: dict[str, Any]) -> None:
    response = client.post("/v1/orders", json={"event": world["event"], "tickets": [{"ticket": "x", "quantity": 1}]},
                           headers=world["headers"]["buyer"])
    assert response.status_code == 422
    assert only_error(response)["source"] == {"pointer": "/tickets/0/ticket"}
    bad_path = client.post("/v1/events/abc/tickets", json={}, headers=world["headers"]["owner"])
    assert bad_path.status_code == 422
    assert {"parameter": "event_id"} in [e["source"] for e in bad_path.json()["errors"]]


def test_oversized_bodies_are_413(client: TestClient, world: dict[str, Any]) -> None:
    big = b'{"name": "' + b"x" * 300_000 + b'"}'
    headers = {**world["headers"]["owner"], "Content-Type": "application/json"}
    declared = client.post("/v1/events", content=big, headers=headers)
    assert declared.status_code == 413 and only_error(declared)["title"] == "Content Too Large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams in
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]

    streamed = client.post("/v1/events", content=chunks(), headers=headers)
    assert streamed.status_code == 413
    resend = client.post("/v1/orders/resend-email", content=big, headers=headers)
    assert resend.status_code == 413


@pytest.fixture
def crashing_app(app: FastAPI) -> FastAPI:
    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    return app


def test_unexpected_errors_are_a_logged_json_500(crashing_app: FastAPI, caplog: pytest.LogCaptureFixture) -> None:
    with TestClient(crashing_app) as client:
        response = client.get("/boom")
    assert response.status_code == 500
    error = only_error(response)
    assert "secret internals" not in response.text and error["title"] == "Internal Server Error"
    assert any("unhandled error on GET /boom" in r.getMessage() for r in caplog.records)


def test_openapi_and_docs_are_served(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path in ("/v1/events", "/v1/events/{event_id}/tickets", "/v1/events/{event_id}/roles", "/v1/orders",
                 "/v1/orders/{identifier}", "/v1/orders/{identifier}/tickets.pdf",
                 "/v1/orders/{identifier}/invoice.pdf", "/v1/orders/resend-email", "/healthz"):
        assert path in schema["paths"], path
    assert "requestBody" in schema["paths"]["/v1/orders/resend-email"]["post"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_healthz(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import settings
    from core.version import VERSION
    from ticketq.embedded import free_port

    assert VERSION == importlib.metadata.version("ticketq") != "0+unknown"
    assert client.get("/healthz").json() == {"status": "ok", "database": "ok", "redis": "ok", "version": VERSION}
    assert client.get("/openapi.json").json()["info"]["version"] == VERSION
    monkeypatch.setattr(settings, "redis_url", f"redis://127.0.0.1:{free_port()}/0")
    down = client.get("/healthz")
    assert down.status_code == 503
    assert down.json() == {"status": "unavailable", "database": "ok", "redis": "unavailable", "version": VERSION}


def test_bad_configuration_is_refused_at_startup(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    import subprocess
    import sys

    from api.app import create_app
    from core.settings import ConfigurationError, settings

    monkeypatch.setattr(settings, "trusted_proxies", ["10.0.0.0/8", "not-a-network"])
    with pytest.raises(ConfigurationError, match="TRUSTED_PROXIES"):
        create_app()
    env = {k: v for k, v in __import__("os").environ.items() if k != "REDIS_URL"}
    result = subprocess.run([sys.executable, "-m", "ticketq.cli", "api", "--port", "1"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "REDIS_URL is not set" in result.stderr

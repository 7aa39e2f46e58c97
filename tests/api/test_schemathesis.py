"""A bounded property-based run over the whole OpenAPI schema: whatever the input, never a 5xx.

Driven with plain Hypothesis (`operation.as_strategy()`): schemathesis' fixture-based pytest
integration does not work with pytest 9. Neither library's pytest plugin is loaded (pyproject's
addopts) and both are imported in the test, not at collection: every xdist worker collects this
module, one runs the test."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI

EXAMPLES_PER_OPERATION = 15  # per operation and mode; the edge test below meets the 64-bit ids


@pytest.mark.slow(18)
def test_no_input_gets_a_server_error(app: FastAPI, world: dict[str, Any],
                                      token_for: Callable[..., dict[str, str]]) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    # An admin passes every access rule, so generated requests reach the handlers' deepest paths.
    admin = token_for("fuzz-admin@example.org", admin=True)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10

    seen: dict[int, int] = {}
    for operation, mode in [(op, mode) for op in operations for mode in GenerationMode]:
        @given(case=operation.as_strategy(mode))
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def call(case: Any) -> None:
            _aim_at_the_world(case, world)
            for headers in (admin, {}):
                response = case.call(headers=headers)
                assert response.status_code < 500, (case.method, case.formatted_path, case.body, response.text[:300])
                if response.status_code >= 400:
                    assert "errors" in response.json()
                seen[response.status_code] = seen.get(response.status_code, 0) + 1

        try:
            call()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, operation.label  # some operations cannot be broken
    # The run reached the handlers, not only the validators.
    assert {200, 201, 401, 404, 422} <= set(seen), seen


def _aim_at_the_world(case: Any, world: dict[str, Any]) -> None:
    """Every other generated id becomes one that exists, so the run reaches the handlers' deepest
    paths whatever ids earlier tests left the sequences at (generated ids are mostly small)."""
    params = case.path_parameters or {}
    if isinstance(params.get("event_id"), int) and params["event_id"] % 2:
        params["event_id"] = world["event"]
    if isinstance(params.get("identifier"), str) and len(params["identifier"]) % 2:
        params["identifier"] = world["orders"]["placed"]
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("event"), int) and body["event"] % 2:
        body["event"] = world["event"]
        for line in body.get("tickets") or []:
            if isinstance(line, dict) and isinstance(line.get("ticket"), int):
                line["ticket"] = world["tickets"][0]


def test_ids_past_any_database_integer_are_refused_not_crashed(client: Any, world: dict[str, Any],
                                                               token_for: Callable[..., dict[str, str]]) -> None:
    """Every integer path or query parameter of every operation, at the edges schemathesis once found
    (an event id beyond 64 bits reached PostgreSQL and answered 500): a 4xx, never a 5xx."""
    admin = token_for("edge-admin@example.org", admin=True)
    paths = client.get("/openapi.json").json()["paths"]
    tried = 0
    for path, operations in paths.items():
        for method, operation in operations.items():
            params = operation.get("parameters", [])
            ints = [p for p in params if p.get("schema", {}).get("type") == "integer"]
            for param in ints:
                for value in (2**31, 2**63, 1207818809360664624103424, -1, 0):
                    url = path
                    query: dict[str, Any] = {}
                    for p in params:
                        given = value if p is param else (world["event"] if p["schema"].get("type") == "integer"
                                                          else world["orders"]["placed"])
                        if p["in"] == "path":
                            url = url.replace("{" + p["name"] + "}", str(given))
                        elif p is param:
                            query[p["name"]] = given
                    response = client.request(method.upper(), url, params=query, headers=admin, json={})
                    assert response.status_code < 500, (method, url, query, response.text[:300])
                    tried += 1
    assert tried >= 15  # event ids in three paths, page and per_page

"""A bounded property-based run over the whole OpenAPI schema: whatever the input, never a 5xx.

Driven with plain Hypothesis (`operation.as_strategy()`): schemathesis' fixture-based pytest
integration does not work with pytest 9."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

EXAMPLES_PER_OPERATION = 20


def test_no_input_gets_a_server_error(app: FastAPI, world: dict[str, Any],
                                      token_for: Callable[..., dict[str, str]]) -> None:
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

"""Connections a test opened for its threads are closed when it ends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _pooled_engines_disposed() -> Iterator[None]:
    yield
    from tests.models.test_concurrency import POOLED

    while POOLED:
        POOLED.pop().dispose()

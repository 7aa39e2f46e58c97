"""The request path: a connection the database dropped costs a retry, not an error (import-linter
keeps the API away from the worker)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker


def test_a_connection_the_database_dropped_is_retried(client: TestClient, world: dict[str, Any],
                                                      db: sessionmaker[Session]) -> None:
    identifier = world["orders"]["placed"]
    headers = world["headers"]["buyer"]
    assert client.get(f"/v1/orders/{identifier}", headers=headers).status_code == 200  # the pool holds them now
    with db() as session:
        killed = session.scalar(sa.text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
    assert killed
    assert client.get(f"/v1/orders/{identifier}", headers=headers).status_code == 200
    response = client.post("/v1/orders/resend-email", json={"data": {"order": identifier}},
                           headers=world["headers"]["owner"])
    assert response.status_code == 202

"""The request path itself: the API never imports the worker, and a connection the database dropped
costs a retry, not an error."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

API = Path(__file__).resolve().parents[2] / "api"


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_module_under_api_imports_the_worker_or_a_task_module() -> None:
    offenders = {str(path.relative_to(API.parent)): sorted(n for n in imported_modules(path)
                                                        if n.split(".")[0] in ("worker", "tasks"))
                 for path in API.rglob("*.py")}
    assert {path: names for path, names in offenders.items() if names} == {}
    assert len(offenders) >= 10


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

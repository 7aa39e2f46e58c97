"""The API in-process (TestClient / httpx ASGI) on the run's PostgreSQL and Redis; limits reset per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.backends import Backends, reset_windows

# Project modules are imported inside the fixtures: this conftest loads before the root one has
# pointed the settings at the run's backends.

Headers = dict[str, str]


@pytest.fixture
def limits_reset(backends: Backends) -> Iterator[None]:
    """Rate-limit windows live in the run's Redis: start every test with none. Jobs the API
    published are dropped afterwards, so a worker started by a later test never sees them."""
    reset_windows(backends.redis_url)
    yield
    with redis.Redis.from_url(backends.redis_url) as client:
        client.delete("orders", "documents", "mail")


@pytest.fixture
def app_with_limits(db: sessionmaker[Session], limits_reset: None, backends: Backends) -> Callable[..., FastAPI]:
    """An app whose resend limits are the given ones (the settings' defaults when not given)."""
    from api.app import create_app
    from api.ratelimit import resend_limits
    from core.settings import settings

    def build(per_ip: str = settings.resend_limit_per_ip, per_user: str = settings.resend_limit_per_user) -> FastAPI:
        return create_app(resend_limits(backends.redis_url, per_ip, per_user))

    return build


@pytest.fixture
def app(app_with_limits: Callable[..., FastAPI]) -> FastAPI:
    """Generous limits, so tests of other rules are not cut short by the 5-a-minute one."""
    return app_with_limits("10000/minute", "10000/minute")


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def token_for(db: sessionmaker[Session]) -> Callable[..., Headers]:
    """Headers with a fresh bearer token for the given user (created when new)."""

    from models.users import create_user_token

    def make(email: str, *, admin: bool = False) -> Headers:
        with db() as session, session.begin():
            _, token = create_user_token(session, email, admin=admin)
        return {"Authorization": f"Bearer {token}"}

    return make


@pytest.fixture
def world(db: sessionmaker[Session], token_for: Callable[..., Headers]) -> dict[str, Any]:
    """An event run by owner@ (with coorg@ as coorganizer), a buyer with one order per interesting status."""
    from models.events import EventRole, Role
    from models.status import OrderStatus
    from models.users import get_or_create_user
    from tests.factories import make_event, make_order

    headers = {name: token_for(f"{name}@example.org") for name in ("owner", "coorg", "buyer", "stranger")}
    headers["admin"] = token_for("admin@example.org", admin=True)
    with db() as session, session.begin():
        owner = get_or_create_user(session, "owner@example.org")
        coorg = get_or_create_user(session, "coorg@example.org")
        buyer = get_or_create_user(session, "buyer@example.org")
        event = make_event(session, owner=owner, tickets=(("Standard", "25.00", 100), ("Free", "0.00", 10)))
        session.add(EventRole(event_id=event.id, user_id=coorg.id, role=Role.COORGANIZER))
        orders = {s.value: make_order(session, event, buyer, quantity=2, status=s).identifier
                  for s in (OrderStatus.INITIALIZING, OrderStatus.PLACED, OrderStatus.PENDING, OrderStatus.COMPLETED)}
        session.flush()
        tickets = [t.id for t in event.ticket_types]
        event_id = event.id
    return {"headers": headers, "event": event_id, "tickets": tickets, "orders": orders}


def only_error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert list(body) == ["errors"] and len(body["errors"]) == 1, body
    error: dict[str, Any] = body["errors"][0]
    assert error["status"] == str(response.status_code)
    return error

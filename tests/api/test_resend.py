"""POST /v1/orders/resend-email: every row of the contract's check order, with status, text and pointer."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from core.jobs import QUEUE_OF, RESEND_TASK
from models.orders import Order, OrderEvent
from models.outbox import OutboxJob
from tests.api.conftest import only_error
from tests.waiting import wait_until

URL = "/v1/orders/resend-email"


def resend(client: TestClient, identifier: str, headers: dict[str, str], **extra: Any) -> Any:
    return client.post(URL, json={"data": {"order": identifier, **extra}}, headers=headers)


def test_co_organizer_resend_is_queued_audited_and_published(
        client: TestClient, world: dict[str, Any], db: sessionmaker[Session], broker: Any, own_queue: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert QUEUE_OF[RESEND_TASK] == "mail"
    # The message goes to a queue of this test's own: the session's worker, if an earlier test has
    # started it, consumes the mail queue and would take it before it is counted.
    monkeypatch.setitem(QUEUE_OF, RESEND_TASK, own_queue)
    identifier = world["orders"]["completed"]
    response = resend(client, identifier, world["headers"]["coorg"])
    assert response.status_code == 202
    assert response.json() == {"status": True,
                               "message": f"Confirmation emails for order {identifier} have been queued"}

    def published() -> OutboxJob | None:  # sent right after the commit; the API's marker thread notes it
        with db() as session:
            job = session.scalars(sa.select(OutboxJob).where(OutboxJob.task == RESEND_TASK)).one()
        return job if job.published_at is not None else None

    job = wait_until(published, 10, "the resend job marked sent", interval=0.05)
    assert job.args == [identifier, "coorg@example.org"] and job.queue == own_queue
    assert broker.llen(own_queue) == 1
    with db() as session:
        order = session.scalars(sa.select(Order).where(Order.identifier == identifier)).one()
        kinds = session.scalars(sa.select(OrderEvent.kind).where(OrderEvent.order_id == order.id)).all()
        actor = session.scalar(sa.select(OrderEvent.actor).where(OrderEvent.kind == "resend-requested"))
    assert "resend-requested" in kinds and actor == "coorg@example.org"


def test_placed_orders_and_every_co_organizer_kind_may_resend(client: TestClient, world: dict[str, Any]) -> None:
    for who in ("owner", "coorg", "admin"):
        assert resend(client, world["orders"]["placed"], world["headers"][who]).status_code == 202, who


def test_no_token_is_401(client: TestClient, world: dict[str, Any]) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        response = resend(client, world["orders"]["placed"], headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert only_error(response)["title"] == "Unauthorized"


def test_malformed_json_is_400_and_bad_shapes_422(client: TestClient, world: dict[str, Any]) -> None:
    headers = {**world["headers"]["coorg"], "Content-Type": "application/json"}
    response = client.post(URL, content=b'{"data": {', headers=headers)
    assert response.status_code == 400
    assert only_error(response)["detail"] == "Malformed JSON body"
    cases = [
        ({}, "/data"),
        ({"data": {}}, "/data/order"),
        ({"data": {"order": 7}}, "/data/order"),
        ({"data": {"order": "x", "extra": 1}}, "/data/extra"),
        ({"data": "x"}, "/data"),
        ([], "/data"),
    ]
    for body, pointer in cases:
        response = client.post(URL, json=body, headers=headers)
        assert response.status_code == 422, body
        errors = response.json()["errors"]
        assert pointer in [e["source"]["pointer"] for e in errors], (body, errors)


def test_unknown_order_is_404_for_anyone(client: TestClient, world: dict[str, Any]) -> None:
    for who in ("coorg", "stranger"):
        for identifier in ("0" * 32, "../etc/passwd", "x" * 64):
            response = resend(client, identifier, world["headers"][who])
            assert response.status_code == 404
            error = only_error(response)
            assert error["detail"] == "Order not found" and error["source"] == {"pointer": "/data/order"}


def test_not_co_organizer_is_403_even_the_buyer(client: TestClient, world: dict[str, Any]) -> None:
    for who in ("buyer", "stranger"):
        response = resend(client, world["orders"]["completed"], world["headers"][who])
        assert response.status_code == 403
        assert response.json() == {"errors": [{"status": "403", "title": "Forbidden",
                                               "detail": "Co-Organizer Access Required",
                                               "source": {"pointer": "/data/order"}}]}


def test_forbidden_is_checked_before_status(client: TestClient, world: dict[str, Any]) -> None:
    response = resend(client, world["orders"]["initializing"], world["headers"]["stranger"])
    assert response.status_code == 403


def test_only_placed_and_completed_orders_have_confirmation(client: TestClient, world: dict[str, Any]) -> None:
    for status in ("initializing", "pending"):
        response = resend(client, world["orders"][status], world["headers"]["coorg"])
        assert response.status_code == 422
        error = only_error(response)
        assert error["detail"] == "Only placed and completed orders have confirmation"
        assert error["source"] == {"pointer": "/data/order"}


def test_user_field_is_accepted_and_ignored(client: TestClient, world: dict[str, Any]) -> None:
    for user in (1, "someone-else", {"id": 3}, None):
        response = resend(client, world["orders"]["placed"], world["headers"]["coorg"], user=user)
        assert response.status_code == 202


def test_a_middleware_added_to_the_app_sees_the_resend_request(app: Any, world: dict[str, Any]) -> None:
    """One request path: the resend route goes through every middleware of the app, even one inside the
    guard (where create_app would add its own), as every other route does."""
    from starlette.middleware import Middleware
    from starlette.types import Receive, Scope, Send

    seen: list[tuple[str, str, int]] = []

    class Recorder:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            async def noting(message: Any) -> None:
                if message["type"] == "http.response.start":
                    seen.append((scope["method"], scope["path"], message["status"]))
                await send(message)

            await self.app(scope, receive, noting if scope["type"] == "http" else send)

    app.user_middleware.append(Middleware(Recorder))  # innermost: inside the guard
    with TestClient(app) as client:
        accepted = resend(client, world["orders"]["completed"], world["headers"]["coorg"])
        refused = resend(client, world["orders"]["completed"], world["headers"]["stranger"])
    assert (accepted.status_code, refused.status_code) == (202, 403)
    assert seen == [("POST", URL, 202), ("POST", URL, 403)]

"""Idempotency-Key: a retried write runs once and replays its answer byte for byte (contract section 10)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import only_error


def order_body(world: dict[str, Any], quantity: int = 1) -> dict[str, Any]:
    return {"event": world["event"], "tickets": [{"ticket": world["tickets"][0], "quantity": quantity}]}


def keyed(world: dict[str, Any], key: str, who: str = "buyer") -> dict[str, str]:
    return {**world["headers"][who], "Idempotency-Key": key}


def count_orders(db: sessionmaker[Session]) -> int:
    from models.orders import Order

    with db() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(Order)) or 0)


def count_jobs(db: sessionmaker[Session], task: str) -> int:
    from models.outbox import OutboxJob

    with db() as session:
        return int(session.scalar(sa.select(sa.func.count()).where(OutboxJob.task == task)) or 0)


def test_a_retried_post_creates_one_order_and_replays_its_answer(
        client: TestClient, world: dict[str, Any], db: sessionmaker[Session]) -> None:
    before = count_orders(db)
    first = client.post("/v1/orders", json=order_body(world), headers=keyed(world, "order-1"))
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    again = client.post("/v1/orders", json=order_body(world), headers=keyed(world, "order-1"))
    assert again.status_code == 201
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["content-type"] == first.headers["content-type"]
    assert count_orders(db) == before + 1


def test_the_same_key_with_another_body_is_refused_and_changes_nothing(
        client: TestClient, world: dict[str, Any], db: sessionmaker[Session]) -> None:
    assert client.post("/v1/orders", json=order_body(world), headers=keyed(world, "k")).status_code == 201
    before = count_orders(db)
    other = client.post("/v1/orders", json=order_body(world, quantity=2), headers=keyed(world, "k"))
    assert other.status_code == 422
    error = only_error(other)
    assert "Idempotency-Key" in error["detail"] and error["source"] == {"header": "Idempotency-Key"}
    elsewhere = client.post(f"/v1/events/{world['event']}/tickets", json={"name": "X", "price": "1", "quantity": 1},
                            headers=keyed(world, "k", "owner"))
    assert elsewhere.status_code == 201  # keys are per user: the owner's "k" is another key
    assert count_orders(db) == before


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
def test_a_malformed_key_is_refused(client: TestClient, world: dict[str, Any], db: sessionmaker[Session],
                                    key: str) -> None:
    before = count_orders(db)
    headers = {**world["headers"]["buyer"], "Idempotency-Key": key}
    response = client.post("/v1/orders", json=order_body(world),
                           headers={k: v.encode("utf-8") for k, v in headers.items()})  # type: ignore[misc]
    assert response.status_code == 400
    assert only_error(response)["source"] == {"header": "Idempotency-Key"}
    assert count_orders(db) == before


def test_a_key_of_255_printable_characters_is_accepted(client: TestClient, world: dict[str, Any]) -> None:
    key = "".join(chr(32 + i % 95) for i in range(255))
    assert client.post("/v1/orders", json=order_body(world), headers=keyed(world, key)).status_code == 201


def user_id_of(db: sessionmaker[Session], email: str) -> int:
    from models.users import User

    with db() as session:
        found = session.scalar(sa.select(User.id).where(User.email == email))
    assert found is not None
    return found


def test_while_the_first_request_runs_a_repeat_gets_409_with_retry_after(
        client: TestClient, world: dict[str, Any], db: sessionmaker[Session]) -> None:
    from api.idempotency_middleware import fingerprint
    from models.idempotency import Verdict, claim_key

    body = json.dumps(order_body(world)).encode()
    user_id = user_id_of(db, "buyer@example.org")
    before = count_orders(db)
    with db() as session, session.begin():  # the first request, its effect not committed yet
        claim = claim_key(session, user_id, "busy", fingerprint("POST", "/v1/orders", b"", body), timedelta(days=1))
        assert claim.verdict is Verdict.RUN
        response = client.post("/v1/orders", content=body, headers={**keyed(world, "busy"),
                                                                    "content-type": "application/json"})
        assert response.status_code == 409 and response.headers["retry-after"]
        assert only_error(response)["source"] == {"header": "Idempotency-Key"}
    assert count_orders(db) == before


def test_a_key_whose_request_died_before_its_effect_committed_runs_again(
        client: TestClient, world: dict[str, Any], db: sessionmaker[Session]) -> None:
    from api.idempotency_middleware import fingerprint
    from models.idempotency import Verdict, claim_key

    body = json.dumps(order_body(world)).encode()
    user_id = user_id_of(db, "buyer@example.org")
    # A request took the key, then its process died: PostgreSQL ends its session, and the lock with it.
    with db.kw["bind"].connect() as conn:
        conn.begin()
        claim = claim_key(conn, user_id, "dead", fingerprint("POST", "/v1/orders", b"", body), timedelta(days=1))
        assert claim.verdict is Verdict.RUN
        pid = conn.scalar(sa.text("SELECT pg_backend_pid()"))
        with db() as other:
            assert other.scalar(sa.select(sa.func.pg_terminate_backend(pid)))
        conn.invalidate()
    again = client.post("/v1/orders", content=body,
                        headers={**keyed(world, "dead"), "content-type": "application/json"})
    assert again.status_code == 201 and "idempotent-replayed" not in again.headers


def test_a_refusal_is_stored_and_replayed(client: TestClient, world: dict[str, Any]) -> None:
    url = f"/v1/orders/{world['orders']['placed']}"
    refused = client.patch(url, json={"status": "completed"}, headers=keyed(world, "pay"))
    assert refused.status_code == 403  # the buyer may not mark it paid
    again = client.patch(url, json={"status": "completed"}, headers=keyed(world, "pay"))
    assert (again.status_code, again.content) == (403, refused.content)
    assert again.headers["idempotent-replayed"] == "true"


def test_a_patch_replayed_queues_its_job_once(client: TestClient, world: dict[str, Any],
                                               db: sessionmaker[Session]) -> None:
    from core.jobs import CANCELLATION_TASK

    url = f"/v1/orders/{world['orders']['placed']}"
    first = client.patch(url, json={"status": "cancelled"}, headers=keyed(world, "cancel", "coorg"))
    again = client.patch(url, json={"status": "cancelled"}, headers=keyed(world, "cancel", "coorg"))
    assert first.status_code == again.status_code == 200 and first.content == again.content
    assert count_jobs(db, CANCELLATION_TASK) == 1


def test_an_answer_that_is_not_kept_frees_the_key(app_with_limits: Callable[..., FastAPI],
                                                 world: dict[str, Any], db: sessionmaker[Session]) -> None:
    from core.jobs import RESEND_TASK
    from models.idempotency import IdempotencyKey

    body = {"data": {"order": world["orders"]["placed"]}}
    with TestClient(app_with_limits("1000/minute", "1/minute")) as client:
        first = client.post("/v1/orders/resend-email", json=body, headers=keyed(world, "r1", "coorg"))
        assert first.status_code == 202
        limited = client.post("/v1/orders/resend-email", json=body, headers=keyed(world, "r2", "coorg"))
        assert limited.status_code == 429
        # Every request counts against the limits, a replay too (contract section 5): 429, not stored.
        replay = client.post("/v1/orders/resend-email", json=body, headers=keyed(world, "r1", "coorg"))
        assert replay.status_code == 429
    with db() as session:
        keys = set(session.scalars(sa.select(IdempotencyKey.key)))
    assert keys == {"r1"}
    assert count_jobs(db, RESEND_TASK) == 1
    with TestClient(app_with_limits("1000/minute", "1000/minute")) as client:
        replay = client.post("/v1/orders/resend-email", json=body, headers=keyed(world, "r1", "coorg"))
        assert (replay.status_code, replay.content) == (202, first.content)
        assert replay.headers["idempotent-replayed"] == "true"
        retried = client.post("/v1/orders/resend-email", json=body, headers=keyed(world, "r2", "coorg"))
        assert retried.status_code == 202 and "idempotent-replayed" not in retried.headers
    assert count_jobs(db, RESEND_TASK) == 1  # the second key's resend joined the waiting one


def test_keys_expire_and_beat_purges_them(client: TestClient, world: dict[str, Any],
                                         db: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import settings
    from models.base import utcnow
    from models.idempotency import IdempotencyKey
    from tasks.key_purge import purge_idempotency_keys

    assert client.post("/v1/orders", json=order_body(world), headers=keyed(world, "old")).status_code == 201
    with db() as session, session.begin():
        session.execute(sa.update(IdempotencyKey).values(
            created_at=utcnow() - timedelta(seconds=settings.idempotency_key_ttl_seconds + 1)))
    rerun = client.post("/v1/orders", json=order_body(world, 2), headers=keyed(world, "old"))
    assert rerun.status_code == 201 and "idempotent-replayed" not in rerun.headers  # expired: a new key
    with db() as session, session.begin():
        session.execute(sa.update(IdempotencyKey).values(
            created_at=utcnow() - timedelta(seconds=settings.idempotency_key_ttl_seconds + 1)))
    assert purge_idempotency_keys() == 1
    with db() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(IdempotencyKey)) == 0


def test_a_request_without_a_key_is_unchanged(client: TestClient, world: dict[str, Any],
                                              db: sessionmaker[Session]) -> None:
    before = count_orders(db)
    for _ in range(2):
        assert client.post("/v1/orders", json=order_body(world), headers=world["headers"]["buyer"]).status_code == 201
    assert count_orders(db) == before + 2


@pytest.fixture
def live_api(app: FastAPI) -> Iterator[str]:
    """The app under a real uvicorn in a thread."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_fifty_concurrent_requests_with_one_key_create_one_order(
        live_api: str, world: dict[str, Any], db: sessionmaker[Session], many_connections: None) -> None:
    before = count_orders(db)
    barrier = threading.Barrier(50)

    def post(_: int) -> httpx.Response:
        with httpx.Client(base_url=live_api, timeout=30) as http:
            barrier.wait()
            return http.post("/v1/orders", json=order_body(world), headers=keyed(world, "rush"))

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(post, range(50)))
    assert count_orders(db) == before + 1
    statuses = sorted({a.status_code for a in answers})
    assert set(statuses) <= {201, 409}, statuses
    created = [a for a in answers if a.status_code == 201]
    assert len([a for a in created if "idempotent-replayed" not in a.headers]) == 1
    assert len({a.content for a in created}) == 1  # replays are the first answer, byte for byte
    assert all(a.headers.get("retry-after") for a in answers if a.status_code == 409)
    late = httpx.post(f"{live_api}/v1/orders", json=order_body(world), headers=keyed(world, "rush"))
    assert late.status_code == 201 and late.headers["idempotent-replayed"] == "true"
    assert count_orders(db) == before + 1

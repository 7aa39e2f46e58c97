"""GET /metrics: requests by route template, resend refusals, and the census read from real
PostgreSQL rows and the real Redis at scrape time."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker

from tests.backends import Backends

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient, **kwargs: Any) -> Samples:
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")  # the Prometheus text format
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_requests_are_counted_by_route_template_method_and_status(client: TestClient) -> None:
    route = "/v1/orders/{identifier}"
    before = scrape(client)
    for _ in range(3):
        assert client.get(f"/v1/orders/{'ab' * 16}").status_code == 401  # no token
    assert client.get("/no/such/page").status_code == 404
    assert client.request("BREW", "/healthz").status_code == 405
    after = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("ticketq_http_requests_total", route=route, method="GET", status="401") == 3
    assert grew("ticketq_http_request_duration_seconds_count", route=route) == 3
    assert grew("ticketq_http_requests_total", route="<unmatched>", method="GET", status="404") == 1
    assert grew("ticketq_http_requests_total", route="/healthz", method="other", status="405") == 1
    assert not any(name == "ticketq_http_requests_total" and ("route", f"/v1/orders/{'ab' * 16}") in labels
                   for name, labels in after), "one series per route, not per order"


def test_resend_refusals_are_counted_by_limit(
        app_with_limits: Callable[..., FastAPI], world: dict[str, Any]) -> None:
    app = app_with_limits(per_ip="1/minute", per_user="100/minute")
    with TestClient(app) as client:
        before = value(scrape(client), "ticketq_resend_refusals_total", limit="ip")
        body = {"data": {"order": world["orders"]["placed"]}}
        codes = [client.post("/v1/orders/resend-email", json=body, headers=world["headers"]["coorg"]).status_code
                 for _ in range(3)]
        assert codes == [202, 429, 429]
        assert value(scrape(client), "ticketq_resend_refusals_total", limit="ip") - before == 2


def test_the_census_reads_unfinished_jobs_emails_and_orders_from_postgresql(
        client: TestClient, db: sessionmaker[Session], world: dict[str, Any]) -> None:
    from core.jobs import CONFIRM_TASK, RESEND_TASK, SEND_DELIVERY_TASK
    from models import Order
    from models.base import utcnow
    from models.deliveries import DeliveryState, EmailDelivery, EmailKind
    from models.outbox import OutboxJob

    now = utcnow()
    with db() as session, session.begin():
        order = session.scalars(sa.select(Order).where(Order.identifier == world["orders"]["completed"])).one()
        session.add_all([
            OutboxJob(task=CONFIRM_TASK, args=["a"], queue="documents", created_at=now - timedelta(seconds=200)),
            OutboxJob(task=CONFIRM_TASK, args=["b"], queue="documents", created_at=now - timedelta(seconds=900),
                      run_after=now + timedelta(seconds=100), last_error="SMTP down"),  # waits for its retry
            OutboxJob(task=SEND_DELIVERY_TASK, args=[1], queue="mail", created_at=now - timedelta(seconds=50),
                      published_at=now - timedelta(seconds=50)),
            OutboxJob(task=RESEND_TASK, args=["c"], queue="mail", created_at=now - timedelta(seconds=600),
                      published_at=now - timedelta(seconds=600), started_at=now - timedelta(seconds=5),
                      claimed_by="host:1", lease_until=now + timedelta(seconds=60)),  # a worker runs it
            OutboxJob(task=CONFIRM_TASK, args=["d"], queue="documents", created_at=now - timedelta(days=1),
                      done_at=now - timedelta(hours=20)),  # finished: not counted
            EmailDelivery(order_id=order.id, batch="confirmation", kind=EmailKind.CONFIRMATION_BUYER,
                          recipient="buyer@example.org", state=DeliveryState.FAILED, last_error="550 no"),
        ])
    with db() as holder, holder.begin():
        # A live worker's relay elsewhere in the run skips locked rows (SKIP LOCKED): due ones stay due.
        holder.execute(sa.select(OutboxJob.id).where(OutboxJob.published_at.is_(None)).with_for_update())
        samples = scrape(client)

    jobs = {(dict(labels)["task"], dict(labels)["state"]): v for (name, labels), v in samples.items()
            if name == "ticketq_jobs_unfinished" and v}
    # due: ours and the world's placed and completed orders' confirmations
    assert jobs == {(CONFIRM_TASK, "due"): 3, (CONFIRM_TASK, "failed"): 1, (SEND_DELIVERY_TASK, "sent"): 1,
                    (RESEND_TASK, "held"): 1}
    assert value(samples, "ticketq_jobs_unfinished", task="outbox.relay", state="due") == 0  # zeros are there
    oldest = "ticketq_job_oldest_unstarted_age_seconds"
    assert 200 <= value(samples, oldest, queue="documents") < 230  # the retry waiting is not "unstarted"
    assert 50 <= value(samples, oldest, queue="mail") < 80  # the held one is running
    assert (oldest, frozenset({("queue", "orders")})) in samples and value(samples, oldest, queue="orders") == 0
    assert value(samples, "ticketq_emails", kind="confirmation-buyer", state="failed") == 1
    assert value(samples, "ticketq_emails", kind="cancellation", state="sent") == 0
    for status in ("initializing", "placed", "pending", "completed"):
        assert value(samples, "ticketq_orders", status=status) == 1, status
    assert value(samples, "ticketq_database_up") == 1


def test_the_beat_lock_is_read_from_redis(client: TestClient, backends: Backends) -> None:
    from core.jobs import BEAT_LOCK_KEY

    r = redis.Redis.from_url(backends.redis_url)
    try:
        assert r.set(BEAT_LOCK_KEY, "token", px=30_000, nx=True), "a beat of another test holds the lock"
        assert value(scrape(client), "ticketq_beat_lock_held") == 1
        r.delete(BEAT_LOCK_KEY)
        assert value(scrape(client), "ticketq_beat_lock_held") == 0
    finally:
        r.delete(BEAT_LOCK_KEY)
        r.close()


def test_basic_auth_protects_metrics_when_set(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import SecretStr

    from core.settings import settings

    monkeypatch.setattr(settings, "metrics_basic_auth", SecretStr("prom:s3cret"))
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
    wrong = base64.b64encode(b"prom:wrong").decode()
    assert client.get("/metrics", headers={"Authorization": f"Basic {wrong}"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Basic %%%"}).status_code == 401
    right = base64.b64encode(b"prom:s3cret").decode()
    assert "ticketq_jobs_unfinished" in client.get("/metrics", headers={"Authorization": f"Basic {right}"}).text
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]

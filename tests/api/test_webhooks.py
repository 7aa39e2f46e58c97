"""Webhooks over HTTP and on the wire: registered by owners and organizers, signed per Standard Webhooks,
retried, disabled by 410, never sent to a private address unless allowed (contract section 10)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks.webhooks import Webhook as Verifier

from tests.api.conftest import only_error
from tests.webhook_receiver import Received, Receiver

ALL_TYPES = ["order.placed", "order.completed", "order.expired", "order.cancelled", "email.sent", "email.failed"]


@pytest.fixture
def local_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import settings

    monkeypatch.setattr(settings, "webhook_allow_http", True)
    monkeypatch.setattr(settings, "webhook_allow_private", True)


@pytest.fixture
def receiver(local_hooks: None) -> Iterator[Receiver]:
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


def register(client: TestClient, world: dict[str, Any], url: str, events: list[str] | None = None,
             who: str = "owner") -> Any:
    body = {"url": url, "events": ALL_TYPES if events is None else events}
    return client.post(f"/v1/events/{world['event']}/webhooks", json=body, headers=world["headers"][who])


def messages(db: sessionmaker[Session]) -> list[Any]:
    from models.webhooks import WebhookMessage

    with db() as session:
        return list(session.scalars(sa.select(WebhookMessage).order_by(WebhookMessage.id)))


def send_all(db: sessionmaker[Session]) -> None:
    """What the worker does for each pending notification's job."""
    from models.webhooks import MessageState
    from services.webhook_sending import send_webhook

    for message in messages(db):
        if message.state is MessageState.PENDING:
            send_webhook(db, message.id)


def test_register_list_and_delete(client: TestClient, world: dict[str, Any], receiver: Receiver) -> None:
    created = register(client, world, receiver.url, ["order.placed", "email.failed"])
    assert created.status_code == 201, created.json()
    hook = created.json()
    assert hook["url"] == receiver.url and hook["events"] == ["order.placed", "email.failed"]
    assert hook["secret"].startswith("whsec_") and len(base64.b64decode(hook["secret"][6:])) >= 24
    base = f"/v1/events/{world['event']}/webhooks"
    listed = client.get(base, headers=world["headers"]["owner"]).json()
    assert [h["id"] for h in listed["webhooks"]] == [hook["id"]]
    assert "secret" not in listed["webhooks"][0]
    assert client.delete(f"{base}/{hook['id']}", headers=world["headers"]["owner"]).status_code == 204
    assert client.get(base, headers=world["headers"]["owner"]).json()["webhooks"] == []
    gone = client.delete(f"{base}/{hook['id']}", headers=world["headers"]["owner"])
    assert gone.status_code == 404


def test_only_owners_and_organizers_manage_webhooks(client: TestClient, world: dict[str, Any],
                                                    receiver: Receiver) -> None:
    for who in ("coorg", "buyer", "stranger"):
        assert register(client, world, receiver.url, who=who).status_code == 403
        assert client.get(f"/v1/events/{world['event']}/webhooks", headers=world["headers"][who]).status_code == 403
    assert register(client, world, receiver.url, who="admin").status_code == 201
    missing = client.post("/v1/events/999999/webhooks", json={"url": receiver.url, "events": ["order.placed"]},
                          headers=world["headers"]["owner"])
    assert missing.status_code == 404


@pytest.mark.parametrize(("url", "events", "pointer"), [
    ("http://example.org/hooks", ["order.placed"], "/url"),
    ("https://127.0.0.1/hooks", ["order.placed"], "/url"),
    ("https://10.1.2.3/hooks", ["order.placed"], "/url"),
    ("https://169.254.169.254/latest", ["order.placed"], "/url"),
    ("https://[::1]/hooks", ["order.placed"], "/url"),
    ("https://localhost/hooks", ["order.placed"], "/url"),
    ("ftp://example.org/hooks", ["order.placed"], "/url"),
    ("https://user:pw@example.org/hooks", ["order.placed"], "/url"),
    ("https://example.org/hooks", ["order.shipped"], "/events/0"),
    ("https://example.org/hooks", [], "/events"),
])
def test_unsafe_or_malformed_webhooks_are_refused(client: TestClient, world: dict[str, Any], url: str,
                                                 events: list[str], pointer: str) -> None:
    refused = register(client, world, url, events)
    assert refused.status_code == 422
    assert only_error(refused)["source"]["pointer"] == pointer
    assert client.get(f"/v1/events/{world['event']}/webhooks",
                      headers=world["headers"]["owner"]).json()["webhooks"] == []


def test_order_webhooks_are_committed_with_the_change_and_arrive_signed(
        client: TestClient, world: dict[str, Any], receiver: Receiver, db: sessionmaker[Session]) -> None:
    from core.jobs import WEBHOOK_TASK
    from models.outbox import OutboxJob

    secret = register(client, world, receiver.url).json()["secret"]
    created = client.post("/v1/orders", json={"event": world["event"], "status": "placed",
                                              "tickets": [{"ticket": world["tickets"][0], "quantity": 1}]},
                          headers=world["headers"]["coorg"])
    identifier = created.json()["identifier"]
    url = f"/v1/orders/{identifier}"
    assert client.patch(url, json={"status": "completed"}, headers=world["headers"]["coorg"]).status_code == 200
    cancel = world["orders"]["initializing"]
    assert client.patch(f"/v1/orders/{cancel}", json={"status": "cancelled"},
                        headers=world["headers"]["coorg"]).status_code == 200
    owed = messages(db)
    assert [m.type for m in owed] == ["order.placed", "order.completed", "order.cancelled"]
    with db() as session:
        jobs = session.scalars(sa.select(OutboxJob.args).where(OutboxJob.task == WEBHOOK_TASK)).all()
    assert sorted(args[0] for args in jobs) == [m.id for m in owed]

    send_all(db)
    got = receiver.wait_for(3)
    verifier = Verifier(secret)
    bodies = [verifier.verify(r.body, r.headers) for r in got]
    assert [(b["type"], b["data"]["order"], b["data"]["status"]) for b in bodies] == [
        ("order.placed", identifier, "placed"), ("order.completed", identifier, "completed"),
        ("order.cancelled", cancel, "cancelled")]
    assert all(b["data"]["event"] == world["event"] and b["timestamp"].endswith("Z") for b in bodies)
    assert [r.headers["webhook-id"] for r in got] == [m.msg_id for m in owed]
    with pytest.raises(Exception, match="signature"):
        Verifier("whsec_" + base64.b64encode(b"another secret of 24 b.").decode()).verify(got[0].body, got[0].headers)


def test_the_expiry_sweep_notifies_in_its_own_transaction(client: TestClient, world: dict[str, Any],
                                                          receiver: Receiver, db: sessionmaker[Session]) -> None:
    from models.base import utcnow
    from models.expiration import expire_stale

    secret = register(client, world, receiver.url, ["order.expired"]).json()["secret"]
    expire_stale(db, now=utcnow() + timedelta(days=1))
    assert [m.type for m in messages(db)] == ["order.expired", "order.expired"]  # initializing and pending
    send_all(db)
    bodies = [Verifier(secret).verify(r.body, r.headers) for r in receiver.wait_for(2)]
    assert {b["data"]["order"] for b in bodies} == {world["orders"]["initializing"], world["orders"]["pending"]}
    assert {b["data"]["status"] for b in bodies} == {"expired"}


def test_email_outcomes_are_notified(client: TestClient, world: dict[str, Any], receiver: Receiver,
                                     db: sessionmaker[Session], smtp: Any) -> None:
    from models.deliveries import EmailDelivery, EmailKind
    from models.transitions import load_order
    from services import pipeline
    from services.outcomes import fail_delivery
    from services.smtp import close_clients

    secret = register(client, world, receiver.url, ["email.sent", "email.failed"]).json()["secret"]
    identifier = world["orders"]["completed"]
    try:
        pipeline.confirm(db, identifier)
    finally:
        close_clients()  # the process keeps its SMTP connection between messages
    sent = [m for m in messages(db) if m.type == "email.sent"]
    assert sent and len(sent) == len(smtp.messages)
    with db() as session, session.begin():
        order = load_order(session, identifier)
        delivery = EmailDelivery(order_id=order.id, batch="x", kind=EmailKind.CANCELLATION, recipient="a@b.example")
        session.add(delivery)
        session.flush()
        fail_delivery(session, delivery, order, "550 no such mailbox")
    send_all(db)
    bodies = [Verifier(secret).verify(r.body, r.headers) for r in receiver.wait_for(len(sent) + 1)]
    failed = [b for b in bodies if b["type"] == "email.failed"]
    assert failed[0]["data"] | {} == {"event": world["event"], "order": identifier, "status": "completed",
                                       "kind": "cancellation", "recipient": "a@b.example",
                                       "reply": "550 no such mailbox"}
    assert {b["data"]["kind"] for b in bodies if b["type"] == "email.sent"} >= {"confirmation-buyer"}


def test_a_worker_run_publishes_the_notifications_it_committed(
        client: TestClient, world: dict[str, Any], receiver: Receiver, db: sessionmaker[Session], smtp: Any,
        broker: Any) -> None:
    """email.sent leaves with the run that sent the email (its task's end), not at the relay's next
    pass after its grace: the receiver hears within the job, not 5-10 s later."""
    from core.jobs import CONFIRM_TASK, MAIL_QUEUE, WEBHOOK_TASK
    from models.outbox import OutboxJob
    from services.smtp import close_clients
    from worker.celery_app import app

    register(client, world, receiver.url, ["email.sent"])
    app.loader.import_default_modules()
    try:
        app.tasks[CONFIRM_TASK].apply(args=[world["orders"]["completed"]])  # this process, with the run's signals
    finally:
        close_clients()
    sent = [m.id for m in messages(db) if m.type == "email.sent"]
    assert sent and len(sent) == len(smtp.messages)
    with db() as session:
        jobs = session.scalars(sa.select(OutboxJob).where(OutboxJob.task == WEBHOOK_TASK)).all()
    assert sorted(job.args[0] for job in jobs) == sorted(sent)
    assert all(job.published_at is not None for job in jobs)
    queued = {json.loads(raw)["headers"]["id"] for raw in broker.lrange(MAIL_QUEUE, 0, -1)}
    assert queued >= {f"outbox-{job.id}" for job in jobs}


def test_failures_are_retried_with_the_same_id_and_shown_per_attempt(
        client: TestClient, world: dict[str, Any], receiver: Receiver, db: sessionmaker[Session]) -> None:
    from core.jobs import WEBHOOK_TASK
    from models.base import utcnow
    from models.outbox import OutboxJob

    hook = register(client, world, receiver.url, ["order.cancelled"]).json()
    answers = iter([(500, {}), (302, {"location": receiver.url + "/elsewhere"}), (200, {})])
    receiver.answer = lambda _: next(answers)
    client.patch(f"/v1/orders/{world['orders']['placed']}", json={"status": "cancelled"},
                 headers=world["headers"]["coorg"])
    for _ in range(3):
        send_all(db)
    got = receiver.wait_for(3)
    assert [r.path for r in got] == ["/hooks"] * 3  # the redirect was not followed
    assert len({r.headers["webhook-id"] for r in got}) == 1
    with db() as session:
        retries = session.scalars(sa.select(OutboxJob).where(OutboxJob.task == WEBHOOK_TASK,
                                                             OutboxJob.run_after.is_not(None))).all()
    assert len(retries) == 2 and all(r.run_after and r.run_after > utcnow() for r in retries)
    shown = client.get(f"/v1/events/{world['event']}/webhooks/{hook['id']}/deliveries",
                       headers=world["headers"]["owner"]).json()
    (delivery,) = shown["deliveries"]
    assert delivery["state"] == "delivered" and delivery["type"] == "order.cancelled"
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 302, 200]
    assert all(a["duration_ms"] >= 0 and a["at"] for a in delivery["attempts"])


def test_410_disables_the_webhook(client: TestClient, world: dict[str, Any], receiver: Receiver,
                                  db: sessionmaker[Session]) -> None:
    hook = register(client, world, receiver.url, ["order.cancelled", "order.completed"]).json()
    receiver.answer = lambda _: (410, {})
    client.patch(f"/v1/orders/{world['orders']['placed']}", json={"status": "cancelled"},
                 headers=world["headers"]["coorg"])
    send_all(db)
    assert [m.state.value for m in messages(db)] == ["failed"]
    listed = client.get(f"/v1/events/{world['event']}/webhooks", headers=world["headers"]["owner"]).json()
    assert listed["webhooks"][0]["disabled_at"] and "410" in listed["webhooks"][0]["disabled_reason"]
    client.patch(f"/v1/orders/{world['orders']['pending']}", json={"status": "completed"},
                 headers=world["headers"]["coorg"])
    assert len(messages(db)) == 1 and hook["id"]  # nothing more is owed to a disabled webhook


def test_a_send_checks_the_address_again(client: TestClient, world: dict[str, Any], receiver: Receiver,
                                         db: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import settings

    register(client, world, receiver.url, ["order.cancelled"])
    client.patch(f"/v1/orders/{world['orders']['placed']}", json={"status": "cancelled"},
                 headers=world["headers"]["coorg"])
    monkeypatch.setattr(settings, "webhook_allow_private", False)
    send_all(db)
    time.sleep(0.2)
    assert receiver.received == []
    with db() as session:
        from models.webhooks import WebhookAttempt

        (attempt,) = session.scalars(sa.select(WebhookAttempt)).all()
    assert attempt.status_code is None and attempt.error and "127.0.0.1" in attempt.error


def test_a_slow_receiver_times_out_and_is_retried(client: TestClient, world: dict[str, Any], receiver: Receiver,
                                                  db: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    from services import webhook_sending as webhooks

    monkeypatch.setattr(webhooks, "TIMEOUT", 0.3)

    def slow(_: Received) -> tuple[int, dict[str, str]]:
        time.sleep(1)
        return 200, {}

    receiver.answer = slow
    register(client, world, receiver.url, ["order.cancelled"])
    client.patch(f"/v1/orders/{world['orders']['placed']}", json={"status": "cancelled"},
                 headers=world["headers"]["coorg"])
    send_all(db)
    (message,) = messages(db)
    assert message.state.value == "pending" and message.attempts == 1
    with db() as session:
        from models.webhooks import WebhookAttempt

        (attempt,) = session.scalars(sa.select(WebhookAttempt)).all()
    assert attempt.error and "Timeout" in attempt.error
    assert json.loads(message.payload)["type"] == "order.cancelled"


def listed_hook(client: TestClient, world: dict[str, Any], hook_id: int) -> dict[str, Any]:
    listed = client.get(f"/v1/events/{world['event']}/webhooks", headers=world["headers"]["owner"])
    assert listed.status_code == 200
    (hook,) = [h for h in listed.json()["webhooks"] if h["id"] == hook_id]
    return dict(hook)


def test_a_webhook_disabled_by_410_is_enabled_again(client: TestClient, world: dict[str, Any], receiver: Receiver,
                                                    db: sessionmaker[Session]) -> None:
    created = register(client, world, receiver.url, ["order.cancelled", "order.completed"]).json()
    secret, hook_id = created["secret"], created["id"]
    shown = listed_hook(client, world, hook_id)
    assert (shown["enabled"], shown["disabled_at"], shown["disabled_reason"]) == (True, None, None)
    receiver.answer = lambda _: (410, {})
    client.patch(f"/v1/orders/{world['orders']['placed']}", json={"status": "cancelled"},
                 headers=world["headers"]["coorg"])
    send_all(db)
    shown = listed_hook(client, world, hook_id)
    assert shown["enabled"] is False and shown["disabled_at"] and "410" in shown["disabled_reason"]

    enable = f"/v1/events/{world['event']}/webhooks/{hook_id}/enable"
    for who in ("owner", "admin"):  # and again: enabling a live webhook changes nothing
        enabled = client.post(enable, headers=world["headers"][who])
        assert enabled.status_code == 200, enabled.json()
        assert enabled.json() == {"id": hook_id, "event": world["event"], "url": receiver.url,
                                  "events": ["order.cancelled", "order.completed"],
                                  "created_at": created["created_at"], "enabled": True, "disabled_at": None,
                                  "disabled_reason": None}
    assert listed_hook(client, world, hook_id) == enabled.json()

    receiver.answer = lambda _: (204, {})
    client.patch(f"/v1/orders/{world['orders']['pending']}", json={"status": "completed"},
                 headers=world["headers"]["coorg"])
    send_all(db)
    assert [(m.type, m.state.value) for m in messages(db)] == [("order.cancelled", "failed"),
                                                                 ("order.completed", "delivered")]
    (_, got) = receiver.wait_for(2)  # the 410'd notification is not resent; the new one arrives signed
    body = Verifier(secret).verify(got.body, got.headers)
    assert (body["type"], body["data"]["order"]) == ("order.completed", world["orders"]["pending"])


def test_enabling_is_for_the_events_owner_and_its_own_webhooks(client: TestClient, world: dict[str, Any],
                                                               receiver: Receiver, db: sessionmaker[Session]) -> None:
    from models.users import get_or_create_user
    from tests.factories import make_event

    hook_id = register(client, world, receiver.url, ["order.placed"]).json()["id"]
    with db() as session, session.begin():
        other = make_event(session, owner=get_or_create_user(session, "owner@example.org"), name="Other")
        other_id = other.id
    elsewhere = client.post(f"/v1/events/{other_id}/webhooks", json={"url": receiver.url, "events": ["order.placed"]},
                            headers=world["headers"]["owner"]).json()["id"]
    base = f"/v1/events/{world['event']}/webhooks"
    for who in ("coorg", "buyer", "stranger"):
        assert client.post(f"{base}/{hook_id}/enable", headers=world["headers"][who]).status_code == 403
    wrong = client.post(f"{base}/{elsewhere}/enable", headers=world["headers"]["owner"])  # another event's
    assert wrong.status_code == 404 and only_error(wrong)["source"]["pointer"] == "/webhook"
    assert client.post(f"{base}/999999/enable", headers=world["headers"]["owner"]).status_code == 404
    assert client.post(f"/v1/events/999999/webhooks/{hook_id}/enable",
                       headers=world["headers"]["owner"]).status_code == 404
    keyed = {**world["headers"]["owner"], "Idempotency-Key": "enable-1"}
    first = client.post(f"{base}/{hook_id}/enable", headers=keyed)
    again = client.post(f"{base}/{hook_id}/enable", headers=keyed)
    assert (first.status_code, again.status_code) == (200, 200) and again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"


def test_beat_purges_finished_notifications_past_retention_never_pending_ones(
        client: TestClient, world: dict[str, Any], receiver: Receiver, db: sessionmaker[Session],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import celeryconfig
    from core.jobs import ORDERS_QUEUE, PURGE_WEBHOOKS_TASK
    from core.settings import settings
    from models.base import utcnow
    from models.webhooks import WebhookAttempt, WebhookMessage
    from tasks.webhook_jobs import purge_webhook_messages

    scheduled = celeryconfig.beat_schedule["purge-webhook-messages"]
    assert scheduled["task"] == PURGE_WEBHOOKS_TASK and scheduled["options"]["queue"] == ORDERS_QUEUE
    monkeypatch.setattr(settings, "webhook_retention_days", 30)
    hook_id = register(client, world, receiver.url, ["order.cancelled", "order.completed"]).json()["id"]
    receiver.answer = lambda got: (500, {}) if b'"completed"' in got.body else (204, {})
    for order, status in (("placed", "cancelled"), ("pending", "completed"), ("initializing", "cancelled")):
        assert client.patch(f"/v1/orders/{world['orders'][order]}", json={"status": status},
                            headers=world["headers"]["coorg"]).status_code == 200
    send_all(db)
    receiver.wait_for(3)
    old_done, retried, new_done = messages(db)
    assert [m.state.value for m in (old_done, retried, new_done)] == ["delivered", "pending", "delivered"]
    long_ago = utcnow() - timedelta(days=31)
    with db() as session, session.begin():  # the first finished 31 days ago; the pending one is as old
        for message in (old_done, retried):
            session.execute(sa.update(WebhookMessage).where(WebhookMessage.id == message.id).values(
                created_at=long_ago, finished_at=long_ago if message is old_done else None))
            session.execute(sa.update(WebhookAttempt).where(WebhookAttempt.message_id == message.id).values(
                at=long_ago))

    assert purge_webhook_messages() == 1
    assert purge_webhook_messages() == 0
    assert [m.id for m in messages(db)] == [retried.id, new_done.id]
    with db() as session:
        attempts = session.scalars(sa.select(WebhookAttempt.message_id).order_by(WebhookAttempt.id)).all()
    assert attempts == [retried.id, new_done.id]  # the purged one's attempt went with it
    shown = client.get(f"/v1/events/{world['event']}/webhooks/{hook_id}/deliveries",
                       headers=world["headers"]["owner"]).json()
    assert [d["id"] for d in shown["deliveries"]] == [new_done.msg_id, retried.msg_id]

    monkeypatch.setattr(settings, "webhook_retention_days", 1)  # a failed one goes the same way
    with db() as session, session.begin():
        session.execute(sa.update(WebhookMessage).where(WebhookMessage.id == new_done.id).values(
            state="failed", finished_at=utcnow() - timedelta(days=2)))
    assert purge_webhook_messages() == 1
    assert [(m.id, m.state.value) for m in messages(db)] == [(retried.id, "pending")]

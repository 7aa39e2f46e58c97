"""Sending one webhook notification: sign it (Standard Webhooks), POST it to the checked address,
record the attempt, and end it (2xx), disable the webhook (410) or schedule the next try.

Retries are jobs with a later `run_after` written with the attempt (the relay sends them when due),
with exponential backoff for about three days, like a mail server's queue.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks.webhooks import Webhook as Signer

from core.jobs import WEBHOOK_TASK
from models.base import utcnow
from models.outbox import enqueue_job
from models.webhooks import MessageState, Webhook, WebhookAttempt, WebhookMessage
from services.webhook_urls import Target, UnsafeURL, resolve

log = logging.getLogger("ticketq.webhooks")

TIMEOUT = 10.0  # seconds for the whole answer; a slower receiver counts as failed and is retried
RETRY_FOR = timedelta(days=3)
BACKOFF_BASE, BACKOFF_CAP = 5.0, 6 * 3600.0
USER_AGENT = "ticketq-webhooks/1"


@dataclass(frozen=True)
class Answer:
    status_code: int | None
    error: str | None
    duration_ms: int


def backoff(attempts: int) -> float:
    """5 s, 10 s, 20 s … up to 6 h between tries, with jitter so a recovering receiver is not stormed."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(attempts - 1, 0))
    return float(ceiling / 2 + random.uniform(0, ceiling / 2))


def signed_headers(secret: str, msg_id: str, body: str, now: datetime) -> dict[str, str]:
    """The Standard Webhooks headers; the timestamp is the attempt's, so a late retry still verifies."""
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Signer(secret).sign(msg_id, now, body), "content-type": "application/json",
            "user-agent": USER_AGENT}


def post(target: Target, url: str, body: str, headers: dict[str, str]) -> Answer:
    """POST to the checked address (the URL's host stays the Host header and TLS server name); no redirects."""
    started = time.monotonic()
    direct = httpx.URL(url).copy_with(host=str(target.address))
    try:
        with httpx.Client(timeout=TIMEOUT, follow_redirects=False, trust_env=False) as client:
            answer = client.post(direct, content=body.encode(), headers={**headers, "host": _host_header(target)},
                                 extensions={"sni_hostname": target.host})
        return Answer(answer.status_code, None, _since(started))
    except httpx.HTTPError as exc:
        return Answer(None, f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__, _since(started))


def _host_header(target: Target) -> str:
    default = 443 if target.scheme == "https" else 80
    host = f"[{target.host}]" if ":" in target.host else target.host
    return host if target.port == default else f"{host}:{target.port}"


def _since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def send_webhook(factory: sessionmaker[Session], message_id: int) -> str:
    """webhooks.send: one attempt at one notification (a repeat of a finished one does nothing)."""
    with factory() as session:
        message = session.get(WebhookMessage, message_id)
        if message is None or message.state is not MessageState.PENDING:
            return f"webhook message {message_id}: nothing to do"
        hook = session.get(Webhook, message.webhook_id)
        assert hook is not None  # the message is deleted with its webhook
        url, secret, msg_id, body, disabled = hook.url, hook.secret, message.msg_id, message.payload, hook.disabled_at
    if disabled is not None:
        return _finish(factory, message_id, None, MessageState.FAILED)
    try:
        target = resolve(url)
    except UnsafeURL as exc:
        answer = Answer(None, f"refused: {exc}"[:500], 0)
    else:
        answer = post(target, url, body, signed_headers(secret, msg_id, body, utcnow()))
    return _finish(factory, message_id, answer, None)


def _finish(factory: sessionmaker[Session], message_id: int, answer: Answer | None,
            state: MessageState | None) -> str:
    """Record the attempt and what follows from it, in one transaction with the next try's job."""
    now = utcnow()
    with factory() as session, session.begin():
        message = session.scalar(sa.select(WebhookMessage).where(WebhookMessage.id == message_id).with_for_update())
        if message is None or message.state is not MessageState.PENDING:
            return f"webhook message {message_id}: finished meanwhile"
        if answer is not None:
            message.attempts += 1
            session.add(WebhookAttempt(message_id=message.id, at=now, status_code=answer.status_code,
                                       error=answer.error, duration_ms=answer.duration_ms))
            state = _outcome(session, message, answer, now)
        if state is not None:
            message.state, message.finished_at = state, now
        said = f"{answer.status_code or answer.error}" if answer else "webhook disabled"
        log.info("webhook message %s (%s) attempt %d: %s -> %s", message.msg_id, message.type, message.attempts,
                 said, message.state.value)
        return f"webhook message {message.msg_id}: {said}, {message.state.value}"


def _outcome(session: Session, message: WebhookMessage, answer: Answer, now: datetime) -> MessageState | None:
    code = answer.status_code
    if code is not None and 200 <= code < 300:
        return MessageState.DELIVERED
    if code == 410:  # the receiver says it is gone for good: stop sending it anything
        session.execute(sa.update(Webhook).where(Webhook.id == message.webhook_id, Webhook.disabled_at.is_(None))
                        .values(disabled_at=now, disabled_reason="the receiver answered 410 Gone"))
        return MessageState.FAILED
    retry_at = now + timedelta(seconds=backoff(message.attempts))
    if retry_at > message.created_at + RETRY_FOR:
        return MessageState.FAILED
    enqueue_job(session, WEBHOOK_TASK, [message.id], run_after=retry_at)
    return None

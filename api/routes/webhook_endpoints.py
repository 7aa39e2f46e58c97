"""An event's webhooks: register (the secret shown once), list, enable again, delete, and see every
delivery attempt."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy.orm import Session

from api.deps import CurrentUser, DbSession, EventId, WebhookId, closes_session
from api.permissions import find_event, require_granter
from api.publish import commit_and_publish
from api.webhook_schemas import (
    AttemptOut,
    DeliveryList,
    DeliveryOut,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookPublic,
)
from models.errors import InvalidInput, NotFound
from models.users import Principal
from models.webhooks import (
    Webhook,
    create_webhook,
    enable_webhook,
    event_webhooks,
    find_webhook,
    recent_messages,
)
from services.webhook_urls import UnsafeURL, resolve

router = APIRouter(prefix="/v1/events", tags=["webhooks"])


def _public(hook: Webhook) -> WebhookPublic:
    return WebhookPublic(id=hook.id, event=hook.event_id, url=hook.url, events=hook.events, created_at=hook.created_at,
                         enabled=hook.enabled, disabled_at=hook.disabled_at, disabled_reason=hook.disabled_reason)


def _check_access(session: Session, user: Principal, event_id: int) -> None:
    find_event(session, event_id)
    require_granter(session, user, event_id)


@router.post("/{event_id}/webhooks", status_code=201, response_model=WebhookCreated)
@closes_session
def create(event_id: EventId, body: WebhookCreate, user: CurrentUser, session: DbSession) -> WebhookCreated:
    """Register a webhook (owner or organizer); its signing secret is in this answer only."""
    _check_access(session, user, event_id)
    try:
        resolve(body.url)  # checked now and again at every send (DNS can change)
    except UnsafeURL as exc:
        raise InvalidInput(str(exc), pointer="/data/url") from None
    hook = create_webhook(session, event_id, body.url, body.events)
    commit_and_publish(session)
    return WebhookCreated(**_public(hook).model_dump(), secret=hook.secret)


@router.get("/{event_id}/webhooks", response_model=WebhookList)
@closes_session
def list_webhooks(event_id: EventId, user: CurrentUser, session: DbSession) -> WebhookList:
    """The event's webhooks, without their secrets."""
    _check_access(session, user, event_id)
    return WebhookList(event=event_id, webhooks=[_public(h) for h in event_webhooks(session, event_id)])


@router.post("/{event_id}/webhooks/{webhook_id}/enable", response_model=WebhookPublic)
@closes_session
def enable(event_id: EventId, webhook_id: WebhookId, user: CurrentUser, session: DbSession) -> WebhookPublic:
    """Send to a disabled webhook (410 Gone) again, from the next notification on; enabling a live one
    changes nothing. Notifications that failed while it was disabled are not resent."""
    _check_access(session, user, event_id)
    hook = find_webhook(session, event_id, webhook_id)
    if hook is None:
        raise NotFound("Webhook not found", pointer="/data/webhook")
    enable_webhook(session, hook)
    answer = _public(hook)
    commit_and_publish(session)
    return answer


@router.delete("/{event_id}/webhooks/{webhook_id}", status_code=204, response_class=Response)
@closes_session
def delete(event_id: EventId, webhook_id: WebhookId, user: CurrentUser, session: DbSession) -> Response:
    """Remove a webhook; notifications still owed to it are dropped with it."""
    _check_access(session, user, event_id)
    hook = find_webhook(session, event_id, webhook_id)
    if hook is None:
        raise NotFound("Webhook not found", pointer="/data/webhook")
    session.delete(hook)
    commit_and_publish(session)
    return Response(status_code=204)


@router.get("/{event_id}/webhooks/{webhook_id}/deliveries", response_model=DeliveryList)
@closes_session
def deliveries(event_id: EventId, webhook_id: WebhookId, user: CurrentUser, session: DbSession) -> DeliveryList:
    """The webhook's latest 100 notifications, newest first, each with every attempt."""
    _check_access(session, user, event_id)
    if find_webhook(session, event_id, webhook_id) is None:
        raise NotFound("Webhook not found", pointer="/data/webhook")
    return DeliveryList(webhook=webhook_id, deliveries=[
        DeliveryOut(id=m.msg_id, type=m.type, state=m.state.value, created_at=m.created_at, finished_at=m.finished_at,
                    attempts=[AttemptOut(at=a.at, status_code=a.status_code, error=a.error, duration_ms=a.duration_ms)
                              for a in m.tries])
        for m in recent_messages(session, webhook_id)])

"""Request and response bodies of the webhook routes (contract section 10)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

EventType = Literal["order.placed", "order.completed", "order.expired", "order.cancelled", "email.sent",
                    "email.failed"]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    events: Annotated[list[EventType], Field(min_length=1, max_length=6)]


class WebhookPublic(BaseModel):
    id: int
    event: int
    url: str
    events: list[str]
    created_at: datetime
    enabled: bool = Field(default=True, description="false once disabled: nothing is sent until it is enabled")
    disabled_at: datetime | None = None
    disabled_reason: str | None = Field(default=None, description="why it was disabled, e.g. a 410 answer")


class WebhookCreated(WebhookPublic):
    secret: str = Field(description="whsec_ + base64: the signing key, shown only in this answer")


class WebhookList(BaseModel):
    event: int
    webhooks: list[WebhookPublic]


class AttemptOut(BaseModel):
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryOut(BaseModel):
    id: str = Field(description="the webhook-id header of every attempt")
    type: str
    state: str
    created_at: datetime
    finished_at: datetime | None
    attempts: list[AttemptOut]


class DeliveryList(BaseModel):
    webhook: int
    deliveries: list[DeliveryOut]

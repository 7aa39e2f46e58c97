"""Tables, sessions and every rule about orders (see status.py for the transition table)."""

from models.base import Base, utcnow
from models.checkins import CheckIn
from models.deliveries import DeliveryState, Document, DocumentKind, EmailDelivery, EmailKind
from models.events import Event, EventRole, Role, TicketType
from models.idempotency import IdempotencyKey
from models.invoices import Invoice, InvoiceKind, InvoiceSeries
from models.logins import LoginLink
from models.orders import Attendee, Order, OrderEvent
from models.outbox import OutboxJob
from models.status import COLOURS, Actor, OrderStatus
from models.users import ApiToken, User
from models.webhooks import Webhook, WebhookAttempt, WebhookMessage

__all__ = [
    "COLOURS", "Actor", "ApiToken", "Attendee", "Base", "CheckIn", "DeliveryState", "Document", "DocumentKind",
    "EmailDelivery", "EmailKind", "Event", "EventRole", "IdempotencyKey", "Invoice", "InvoiceKind", "InvoiceSeries",
    "LoginLink", "Order", "OrderEvent", "OrderStatus", "OutboxJob", "Role", "TicketType", "User", "Webhook",
    "WebhookAttempt", "WebhookMessage", "utcnow",
]

"""Tables, sessions and every rule about orders (see status.py for the transition table)."""

from models.base import Base, utcnow
from models.deliveries import DeliveryState, Document, DocumentKind, EmailDelivery, EmailKind
from models.events import Event, EventRole, Role, TicketType
from models.invoices import Invoice, InvoiceKind, InvoiceSeries
from models.orders import Attendee, Order, OrderEvent
from models.outbox import OutboxJob
from models.status import COLOURS, Actor, OrderStatus
from models.users import ApiToken, User

__all__ = [
    "COLOURS", "Actor", "ApiToken", "Attendee", "Base", "DeliveryState", "Document", "DocumentKind",
    "EmailDelivery", "EmailKind", "Event", "EventRole", "Invoice", "InvoiceKind", "InvoiceSeries", "Order",
    "OrderEvent", "OrderStatus",
    "OutboxJob", "Role", "TicketType", "User", "utcnow",
]

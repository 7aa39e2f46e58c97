"""Template data for an order: moved to ticketq/presenters.py, which the API may import too (the
stored documents' content fingerprint needs it); these names stay for the worker's modules."""

from ticketq.presenters import (
    attendee_data,
    buyer_of,
    event_times,
    invoice_number,
    line_items,
    load_full_order,
    money,
    order_context,
    seller_of,
)

__all__ = ["attendee_data", "buyer_of", "event_times", "invoice_number", "line_items", "load_full_order", "money",
           "order_context", "seller_of"]

"""GET /v1/events/{event_id}/orders.csv: the order page's filtered list as a spreadsheet."""

from __future__ import annotations

import csv
import io
import zoneinfo
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.deps import DbSession, EventId, EventLookup, closes_session
from api.error_documents import READ_ERRORS, error_responses
from api.permissions import COORGANIZER_REQUIRED, find_event
from api.routes.event_endpoints import Search
from models.errors import Forbidden
from models.listing import export_rows
from models.status import OrderStatus

router = APIRouter(prefix="/v1/events", tags=["events"])
COLUMNS = ("order", "status", "buyer_name", "buyer_email", "amount", "currency", "payment_mode", "created_at")
# A cell starting with one of these is a formula to a spreadsheet: a buyer's name must stay text (OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_RESPONSE = {200: {"content": {"text/csv": {}}, "description": "One row per order, newest first"},
                **error_responses(*READ_ERRORS, 403, 404, 422)}


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


@router.get("/{event_id}/orders.csv", response_class=Response, responses=CSV_RESPONSE)
@closes_session
def export_orders(
    event_id: EventId, found: EventLookup, session: DbSession,
    status: Annotated[OrderStatus | None, Query(description="only orders in this status")] = None,
    q: Search = None,
) -> Response:
    """Every order the page's filters match (co-organizers); times in the event's timezone."""
    if not found.runs_event:
        raise Forbidden(COORGANIZER_REQUIRED, pointer="/data/event")
    event = find_event(session, event_id)
    zone = zoneinfo.ZoneInfo(event.timezone)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for row in export_rows(session, event_id, status=status, search=q):
        writer.writerow([_cell(v) for v in (
            row.identifier, OrderStatus(row.status).value, row.buyer_name, row.buyer_email, f"{row.amount:.2f}",
            row.currency, row.payment_mode, row.created_at.astimezone(zone).isoformat(timespec="seconds"))])
    filename = f"orders-event-{event_id}{'-' + status.value if status else ''}.csv"
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"})

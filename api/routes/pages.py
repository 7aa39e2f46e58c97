"""The organizer pages: server-rendered shells and their static assets. Their data comes from the JSON
API (`GET /v1/events`, `GET /v1/events/{event_id}/orders`), signed in by the session cookie of a
one-time link (api/routes/signin.py) or by a pasted API token."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import jinja2
import limits
from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response

from api.schemas import DB_INT_MAX
from api.sessions import CSRF_HEADER, SESSION_COOKIE, csrf_token
from core.locales import SUPPORTED
from core.settings import settings
from models.listing import DEFAULT_PER_PAGE
from models.status import COLOURS, TRANSITIONS, Actor, OrderStatus, is_resendable

router = APIRouter(tags=["pages"])

PAGES_DIR = Path(__file__).resolve().parents[2] / "templates" / "pages"
# The shell only loads its own script and stylesheet and talks to its own API: hostile data
# that slipped past escaping still could not run.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
ASSETS = {"orders.css": "text/css; charset=utf-8", "orders.js": "text/javascript; charset=utf-8",
          "session.js": "text/javascript; charset=utf-8", "events.js": "text/javascript; charset=utf-8"}

# The shells are rendered in English (the catalogs' source text, `_()` marks it for extraction); the
# browser's language is applied by session.js from GET /v1/locales/{tag}/messages (contract section 9).
_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(PAGES_DIR),
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    undefined=jinja2.StrictUndefined,
    extensions=["jinja2.ext.i18n"],
)
_env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]  # the i18n extension adds it
_env.globals["languages"] = list(SUPPORTED)


def render(template: str, **context: Any) -> str:
    return _env.get_template(template).render(**context)


def _limit() -> limits.RateLimitItem | None:
    try:
        return limits.parse(settings.resend_limit_per_user)
    except ValueError:
        return None


def limit_parts() -> dict[str, Any] | None:
    """RESEND_LIMIT_PER_USER for the page's script, which words the 429 in the page's language:
    {"amount": 5, "multiples": 1, "unit": "minute"}."""
    item = _limit()
    if item is None:
        return None
    return {"amount": item.amount, "multiples": item.multiples, "unit": item.GRANULARITY.name}


def limit_message() -> str:
    """The 429 text, from RESEND_LIMIT_PER_USER: "Only 5 resend actions are allowed in a minute."."""
    item = _limit()
    if item is None:
        return "Too many resend actions."
    unit = item.GRANULARITY.name
    period = f"a {unit}" if item.multiples == 1 else f"{item.multiples} {unit}s"
    return f"Only {item.amount} resend actions are allowed in {period}."


def _organizer_may(current: OrderStatus, target: OrderStatus) -> bool:
    return Actor.ORGANIZER in TRANSITIONS.get((current, target), frozenset())


def _session_config(request: Request) -> dict[str, Any]:
    """Whether a session cookie came, and the CSRF token its writes must send (no database read: a
    dead or expired session shows as a 401 on the first API call)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    return {"cookie": bool(cookie), "csrf": csrf_token(cookie) if cookie else "", "csrfHeader": CSRF_HEADER}


def _orders_config(event_id: int, request: Request) -> dict[str, Any]:
    return {
        "eventId": event_id, "ordersUrl": f"/v1/events/{event_id}/orders", "resendUrl": "/v1/orders/resend-email",
        "statuses": [{"value": s.value, "color": COLOURS[s], "resendable": is_resendable(s),
                      "markPaid": _organizer_may(s, OrderStatus.COMPLETED),
                      "cancel": _organizer_may(s, OrderStatus.CANCELLED)} for s in OrderStatus],
        "perPage": DEFAULT_PER_PAGE, "limitMessage": limit_message(), "limit": limit_parts(),
        "session": _session_config(request),
    }


@router.get("/events/{event_id}/orders", response_class=HTMLResponse, include_in_schema=False)
def orders_page(event_id: Annotated[int, PathParam(ge=1, le=DB_INT_MAX)], request: Request) -> HTMLResponse:
    """The HTML shell; it holds no data, so it needs no auth (the browser signs in)."""
    html = render("orders.html", config=_orders_config(event_id, request), event_id=event_id)
    return HTMLResponse(html, headers=SECURITY_HEADERS)


@router.get("/events", response_class=HTMLResponse, include_in_schema=False)
def events_page(request: Request) -> HTMLResponse:
    """The events the signed-in organizer runs, each linking to its orders."""
    config = {"eventsUrl": "/v1/events", "perPage": DEFAULT_PER_PAGE, "session": _session_config(request)}
    return HTMLResponse(render("events.html", config=config), headers=SECURITY_HEADERS)


@router.get("/pages/{name}", include_in_schema=False)
def page_asset(name: str) -> Response:
    if name not in ASSETS:
        raise HTTPException(404, "Not Found")
    return Response((PAGES_DIR / name).read_bytes(), media_type=ASSETS[name],
                    headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})

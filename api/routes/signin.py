"""Signing in to the organizer page with a one-time link (`ticketq login-link EMAIL`), and out.

GET /login only shows whose link it is and a button: link previewers and prefetchers fetch GETs, and
must not use the link up. The button's POST uses it once and sets the session cookie."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.deps import DbSession, closes_session
from api.error_documents import ApiError
from api.routes.pages import SECURITY_HEADERS, render
from api.sessions import clear_session_cookie, session_token, set_session_cookie
from models.logins import end_session, link_user, redeem_login_link

router = APIRouter(tags=["pages"], include_in_schema=False)
Token = Annotated[str, Query(max_length=100)]
# The login form's POST must carry its Origin, which "no-referrer" would send as "null" (Fetch standard).
LOGIN_HEADERS = {**SECURITY_HEADERS, "Referrer-Policy": "same-origin"}


class ForeignOrigin(ApiError):
    status = 403
    title = "Forbidden"


@router.get("/login", response_class=HTMLResponse)
@closes_session
def login_page(session: DbSession, token: Token = "") -> HTMLResponse:
    user = link_user(session, token) if token else None
    html = render("login.html", email=user.email if user else None, token=token)
    return HTMLResponse(html, status_code=200 if user else 400, headers=LOGIN_HEADERS)


async def form_token(request: Request) -> str:
    """The `token` field of the url-encoded form (stdlib parsing: no multipart parser needed)."""
    fields = parse_qs((await request.body()).decode("utf-8", "replace"))
    return fields.get("token", [""])[0][:100]


@router.post("/login")
@closes_session
def login(request: Request, session: DbSession, token: Annotated[str, Depends(form_token)]) -> Response:
    """Form POST from the page above. The Origin check keeps another site from signing a browser in
    with the attacker's own link (login CSRF; SameSite does not cover a cookie not yet set)."""
    _same_origin(request)
    session_tok = redeem_login_link(session, token) if token else None
    if session_tok is None:
        session.rollback()
        html = render("login.html", email=None, token="")
        return HTMLResponse(html, status_code=400, headers=LOGIN_HEADERS)
    session.commit()
    response = RedirectResponse("/events", status_code=303)
    set_session_cookie(response, request, session_tok)
    return response


@router.post("/logout", status_code=204)
@closes_session
def logout(request: Request, session: DbSession) -> Response:
    """Ends the cookie's session (its CSRF header checked); a bearer token is the browser's to forget."""
    token = session_token(request)
    if token is not None:
        end_session(session, token)
        session.commit()
    response = Response(status_code=204)
    clear_session_cookie(response)
    return response


def _same_origin(request: Request) -> None:
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin is None:
        return  # not a browser (curl, a test client): no ambient cookie to abuse
    sent = urlsplit(origin)
    if (sent.scheme, sent.netloc) != (request.url.scheme, request.url.netloc):
        raise ForeignOrigin("Sign in from the link itself, not from another site", pointer="")


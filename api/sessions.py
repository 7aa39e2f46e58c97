"""The organizer page's browser session: an API token kept in an HttpOnly, SameSite=Strict cookie, and
the CSRF token its writes must echo in a header (Django REST framework's SessionAuthentication does
the same: a cookie alone never authorizes a write)."""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request
from fastapi.responses import Response

from api.error_documents import ApiError
from core.settings import settings
from models.logins import SESSION_TTL

SESSION_COOKIE = "ticketq_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CsrfRefused(ApiError):
    status = 403
    title = "Forbidden"

    def __init__(self) -> None:
        super().__init__(f"Missing or wrong {CSRF_HEADER} header: reload the page and try again", pointer="")


def csrf_token(session_token: str) -> str:
    """Derived from the session, so nothing more is stored; a page of another site cannot read it."""
    return hmac.new(settings.secret(), b"csrf:" + session_token.encode(), hashlib.sha256).hexdigest()


def session_token(request: Request) -> str | None:
    """The cookie's token; a write must carry the matching CSRF header."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), csrf_token(token).encode()):
            raise CsrfRefused()
    return token


def set_session_cookie(response: Response, request: Request, token: str) -> None:
    # Secure wherever the page is served over TLS; plain http only on a developer's loopback.
    secure = request.url.scheme == "https" or settings.environment == "production"
    response.set_cookie(SESSION_COOKIE, token, max_age=int(SESSION_TTL.total_seconds()), path="/",
                        httponly=True, samesite="strict", secure=secure)


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")

"""Request-scoped dependencies as `Annotated` aliases: the session, the caller, the client IP."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from functools import lru_cache
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from api.errors import Unauthorized
from api.ratelimit import ResendLimits
from models.db import get_sessionmaker
from models.users import User, user_for_token
from ticketq.settings import settings

MAX_TOKEN_LENGTH = 256


def get_session() -> Iterator[Session]:
    with get_sessionmaker()() as session:
        yield session


DbSession = Annotated[Session, Depends(get_session)]


def authenticate(request: Request, session: Session) -> User:
    """The user whose bearer token this is; 401 for a missing, malformed or unknown token."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if not header:
        raise Unauthorized("Authentication credentials were not provided")
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
        raise Unauthorized("Invalid authorization header; expected 'Bearer <token>'")
    user = user_for_token(session, token)
    # End the read now: the handler runs in another pool thread, and a connection held "idle in
    # transaction" across that hop deadlocks the pool under load (bench P2: 30 s stalls, 500s).
    session.commit()
    if user is None:
        raise Unauthorized("Invalid or revoked token")
    return user


def current_user(request: Request, session: DbSession) -> User:
    return authenticate(request, session)


CurrentUser = Annotated[User, Depends(current_user)]


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _parse_networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def trusted_networks() -> tuple[Network, ...]:
    """TRUSTED_PROXIES as networks (addresses or CIDR); raises ValueError for a bad entry."""
    return _parse_networks(tuple(settings.trusted_proxies))


def _parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def client_ip(request: Request) -> str:
    """The socket peer, unless the peer is a trusted proxy: then the right-most address in
    X-Forwarded-For that is not itself a trusted proxy (the left part is client-controlled)."""
    peer = request.client.host if request.client else "unknown"
    trusted = trusted_networks()
    address = _parse_ip(peer)
    if address is None or not any(address in net for net in trusted):
        return peer
    forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
    hops = [h for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops):
        hop_ip = _parse_ip(hop)
        if hop_ip is None:
            return peer  # a garbled header from a trusted proxy: fall back to the proxy itself
        if not any(hop_ip in net for net in trusted):
            return str(hop_ip)
    return peer


ClientIP = Annotated[str, Depends(client_ip)]


def ip_limit_key(ip: str) -> str:
    """IPv6 clients usually hold a whole /64: count them per /64, or each address is a fresh quota."""
    address = _parse_ip(ip)
    if address is None:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def resend_caller(request: Request, session: DbSession) -> User:
    """The resend endpoint's gate, in the contract's order: IP limit, token, user limit."""
    limits: ResendLimits = request.app.state.resend_limits
    limits.per_ip.hit(ip_limit_key(client_ip(request)))
    user = authenticate(request, session)
    limits.per_user.hit(str(user.id))
    return user


ResendCaller = Annotated[User, Depends(resend_caller)]

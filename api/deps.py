"""Request-scoped dependencies as `Annotated` aliases: the session, the caller, the client IP."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from functools import lru_cache
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Path, Request
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from api.errors import Unauthorized
from api.schemas import DB_INT_MAX
from models.access import Lookup, lookup
from models.db import create_engine
from models.users import Caller
from ticketq.settings import settings

MAX_TOKEN_LENGTH = 256
# Pooled connections kept open per process and engine (an overflow one is closed on return, and
# opening one costs more than a whole request); anyio runs at most 40 request threads at once.
POOL_SIZE, MAX_OVERFLOW = 10, 20


@lru_cache(maxsize=4)
def _engines(url: str) -> tuple[sa.Engine, sa.Engine]:
    """(reads, writes) for the API. No pre-ping round trip per checkout: a connection found dropped
    is retried instead (`checked_lookup`). On PostgreSQL the reads run in autocommit: one statement,
    one round trip, no BEGIN/ROLLBACK around it."""
    writes = create_engine(url, pool_pre_ping=False, **_pool_options(url))
    if make_url(url).get_backend_name() != "postgresql":
        return writes, writes
    return create_engine(url, pool_pre_ping=False, isolation_level="AUTOCOMMIT", **_pool_options(url)), writes


def _pool_options(url: str) -> dict[str, int]:
    return {} if make_url(url).get_backend_name() == "sqlite" else {"pool_size": POOL_SIZE,
                                                                    "max_overflow": MAX_OVERFLOW}


def read_engine() -> sa.Engine:
    return _engines(settings.database_url)[0]


@lru_cache(maxsize=4)
def _sessionmaker(url: str) -> sessionmaker[Session]:
    return sessionmaker(_engines(url)[1], expire_on_commit=False)


def get_session() -> Iterator[Session]:
    with _sessionmaker(settings.database_url)() as session:
        yield session


DbSession = Annotated[Session, Depends(get_session)]


def bearer_token(request: Request) -> str:
    """The token of the Authorization header; 401 for a missing or malformed one."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if not header:
        raise Unauthorized("Authentication credentials were not provided")
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
        raise Unauthorized("Invalid authorization header; expected 'Bearer <token>'")
    return token


def checked_lookup(token: str, *, identifier: str | None = None, event_id: int | None = None) -> Lookup:
    """The caller (and the named order) in one statement; 401 for an unknown token. A pooled
    connection the server dropped fails its first statement: the pool is refreshed, and it is
    tried once more on a new connection."""
    for attempt in (1, 2):
        try:
            with read_engine().connect() as conn:
                found = lookup(conn, token, identifier=identifier, event_id=event_id)
            break
        except sa.exc.DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated:
                raise
    if found is None:
        raise Unauthorized("Invalid or revoked token")
    return found


def authenticate(request: Request) -> Caller:
    """The user whose bearer token this is; 401 for a missing, malformed or unknown token."""
    return checked_lookup(bearer_token(request)).caller


def current_user(request: Request) -> Caller:
    return authenticate(request)


CurrentUser = Annotated[Caller, Depends(current_user)]


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


def order_lookup(identifier: str, request: Request) -> Lookup:
    """The caller and the order of the path, in one statement (404/403 are the handler's to raise,
    after the body was validated)."""
    from api.access import valid_identifier

    return checked_lookup(bearer_token(request), identifier=identifier if valid_identifier(identifier) else None)


OrderLookup = Annotated[Lookup, Depends(order_lookup)]


def event_lookup(event_id: Annotated[int, Path(ge=1, le=DB_INT_MAX)], request: Request) -> Lookup:
    """The caller and whether they run the event of the path, in one statement."""
    return checked_lookup(bearer_token(request), event_id=event_id)


EventLookup = Annotated[Lookup, Depends(event_lookup)]

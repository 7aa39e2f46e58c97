"""Request-scoped dependencies as `Annotated` aliases: the session, the caller, the client IP."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Annotated, Any, TypeVar, cast

import sqlalchemy as sa
from fastapi import Depends, Path, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from api.error_documents import Unauthorized
from api.keyed_requests import call_keyed
from api.schemas import DB_INT_MAX
from api.sessions import session_token
from core.settings import settings
from models.access import Lookup, lookup
from models.db import create_engine
from models.users import Caller

MAX_TOKEN_LENGTH = 256
# Connections per process, all kept open, no overflow: an overflow connection is closed on return, and
# opening one costs PostgreSQL more than a whole request; a request beyond them waits for one instead.
# Two API processes hold at most 50 of PostgreSQL's default 100 however many requests wait.
READ_POOL, WRITE_POOL = (10, 0), (15, 0)


@lru_cache(maxsize=4)
def _engines(url: str) -> tuple[sa.Engine, sa.Engine]:
    """(reads, writes) for the API. No pre-ping round trip per checkout: a connection found dropped is
    retried instead (`checked_lookup`). On PostgreSQL the reads' connections are in autocommit from
    the start (switching a pooled connection per checkout would cost a round trip each way): one
    statement, one round trip, no BEGIN or ROLLBACK around it, and a single statement is its own
    transaction."""
    if make_url(url).get_backend_name() != "postgresql":
        engine = create_engine(url, pool_pre_ping=False)
        return engine, engine
    (read_size, read_overflow), (write_size, write_overflow) = READ_POOL, WRITE_POOL
    reads = create_engine(url, pool_pre_ping=False, isolation_level="AUTOCOMMIT", pool_size=read_size,
                          max_overflow=read_overflow)
    writes = create_engine(url, pool_pre_ping=False, pool_size=write_size, max_overflow=write_overflow)
    return reads, writes


@contextmanager
def read_connection() -> Iterator[sa.Connection]:
    """A connection for one-statement reads and single-statement writes (autocommit on PostgreSQL)."""
    with _engines(settings.database_url)[0].connect() as conn:
        yield conn


@lru_cache(maxsize=4)
def _sessionmaker(url: str) -> sessionmaker[Session]:
    return sessionmaker(_engines(url)[1], expire_on_commit=False)


async def get_session() -> AsyncIterator[Session]:
    """A session for the handler. Made on the event loop (no I/O until used) and closed by the handler
    itself, in its own thread (`closes_session`): a connection left checked out until this teardown
    would wait for a free thread, holding its transaction and any row lock it took (threads waiting
    for connections while the connections wait for threads: a deadlock)."""
    session = _sessionmaker(settings.database_url)()
    try:
        yield session
    finally:
        session.close()  # a no-op once the handler closed it


DbSession = Annotated[Session, Depends(get_session)]

# A row id in a path: an event's, a webhook's (a positive database integer, else 422 before any query).
EventId = Annotated[int, Path(ge=1, le=DB_INT_MAX)]
WebhookId = EventId

Handler = TypeVar("Handler", bound=Callable[..., Any])


def closes_session(handler: Handler) -> Handler:
    """Close the handler's `session` (rollback and return its connection) before its thread is freed,
    whether it answers or raises."""
    @functools.wraps(handler)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return call_keyed(handler, args, kwargs)  # under the request's Idempotency-Key, if any
        finally:
            kwargs["session"].close()

    return cast(Handler, run)


# For /docs only (its Authorize button): `bearer_token` reads the header itself, so that the page's
# session cookie also works and the contract's 401 texts stay.
bearer = HTTPBearer(auto_error=False, scheme_name="bearer",
                    description="The token `ticketq users create EMAIL` prints, as `Authorization: Bearer <token>`")
BearerDocs = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]


def bearer_token(request: Request) -> str:
    """The token of the Authorization header, else the organizer page's session cookie (its writes
    checked for CSRF); 401 for a missing or malformed one."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if not header:
        cookie = session_token(request)
        if cookie is not None and len(cookie) <= MAX_TOKEN_LENGTH:
            return cookie
        raise Unauthorized("Authentication credentials were not provided")
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
        raise Unauthorized("Invalid authorization header; expected 'Bearer <token>'")
    return token


def checked_lookup(token: str, *, identifier: str | None = None, event_id: int | None = None) -> Lookup:
    """The caller (and the named order) in one statement; 401 for an unknown token."""
    with lookup_connection(token, identifier=identifier, event_id=event_id) as (found, _):
        return found


@contextmanager
def lookup_connection(token: str, *, identifier: str | None = None,
                      event_id: int | None = None) -> Iterator[tuple[Lookup, sa.Connection]]:
    """`checked_lookup`, with the read connection it ran on kept for the caller's next statement (one
    pool checkout per request instead of two). A
    pooled connection the server dropped fails its first statement: the pool is refreshed, and the
    lookup is tried once more on a new connection."""
    for attempt in (1, 2):
        with read_connection() as conn:
            try:
                found = lookup(conn, token, identifier=identifier, event_id=event_id)
            except sa.exc.DBAPIError as exc:
                if attempt == 2 or not exc.connection_invalidated:
                    raise
                _engines(settings.database_url)[1].dispose()  # the writes' idle connections died with it
                continue
            if found is None:
                raise Unauthorized("Invalid or revoked token")
            if conn.in_transaction():  # SQLite's read began one (PostgreSQL's reads are autocommit)
                conn.rollback()
            yield found, conn
            return


def authenticate(request: Request) -> Caller:
    """The user whose bearer token this is; 401 for a missing, malformed or unknown token."""
    return checked_lookup(bearer_token(request)).caller


def current_user(request: Request, _: BearerDocs) -> Caller:
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


def order_lookup(identifier: str, request: Request, _: BearerDocs) -> Lookup:
    """The caller and the order of the path, in one statement (404/403 are the handler's to raise,
    after the body was validated)."""
    from api.permissions import valid_identifier

    return checked_lookup(bearer_token(request), identifier=identifier if valid_identifier(identifier) else None)


OrderLookup = Annotated[Lookup, Depends(order_lookup)]


def event_lookup(event_id: EventId, request: Request, _: BearerDocs) -> Lookup:
    """The caller and whether they run the event of the path, in one statement."""
    return checked_lookup(bearer_token(request), event_id=event_id)


EventLookup = Annotated[Lookup, Depends(event_lookup)]

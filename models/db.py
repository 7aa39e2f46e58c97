"""Engines and sessions from DATABASE_URL: PostgreSQL in production, SQLite for the demo."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from core.settings import settings
from core.tracing import tracing_enabled


def create_engine(url: str, **kwargs: Any) -> sa.Engine:
    """One engine per URL; SQLite gets WAL, a busy timeout and writer-serializing transactions."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30}, **kwargs)
        _serialize_sqlite_writers(engine)
        return engine
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"DATABASE_URL scheme '{parsed.drivername}' is not supported: use postgresql:// or sqlite://")
    if parsed.drivername == "postgresql":
        # SQLAlchemy 2.1 defaults to psycopg 3; ticketq ships psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg2")
    kwargs.setdefault("pool_pre_ping", True)
    if _asynchronous_commit:
        kwargs.setdefault("connect_args", {"options": f"-c synchronous_commit=off {_SERVER_KEEPALIVE}",
                                           **_CLIENT_KEEPALIVE})
    return sa.create_engine(parsed, **kwargs)


def _serialize_sqlite_writers(engine: sa.Engine) -> None:
    # SQLite's deferred transactions let two writers both read "10 left" and both insert.
    # BEGIN IMMEDIATE takes the write lock up front, which is what FOR UPDATE does on PostgreSQL.
    # The hooks are SQLAlchemy's documented pysqlite recipe: sqlite3 emits no BEGIN, SQLAlchemy ours.
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.execute(sa.text("BEGIN IMMEDIATE"))


# A worker host cut off from the network: the server ends its sessions, and with them their advisory
# locks on deliveries, within about 25 s instead of the OS's two hours; the worker stops waiting on
# the dead link as soon (libpq's and PostgreSQL's documented TCP keepalive settings).
_SERVER_KEEPALIVE = "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3"
_CLIENT_KEEPALIVE = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
_engines: dict[str, sa.Engine] = {}
_asynchronous_commit = False


def use_asynchronous_commit() -> None:
    """Engines made from now on commit without waiting for the WAL flush (worker processes).

    Everything a worker writes can be written again: a crash of PostgreSQL that loses its last
    commits costs a job run again or, at worst, an email sent twice with the same Message-ID. The
    API's commits (orders, payments) stay synchronous.
    """
    global _asynchronous_commit
    _asynchronous_commit = True
_sessionmakers: dict[str, sessionmaker[Session]] = {}


def get_engine(url: str | None = None) -> sa.Engine:
    url = url or settings.database_url
    if url not in _engines:
        _engines[url] = create_engine(url)
    return _engines[url]


def get_sessionmaker(url: str | None = None) -> sessionmaker[Session]:
    url = url or settings.database_url
    if url not in _sessionmakers:
        _sessionmakers[url] = sessionmaker(get_engine(url), expire_on_commit=False)
    return _sessionmakers[url]


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on any error."""
    with get_sessionmaker(url)() as session, session.begin():
        yield session


PURGE_BATCH = 10_000


def purge_in_batches(purge: Callable[[Session, int], int], batch: int = PURGE_BATCH) -> int:
    """Call `purge(session, batch)` in short transactions of its own until one deletes fewer than
    `batch` rows: a large backlog never holds locks for long. Returns the rows deleted."""
    purged = 0
    while True:
        with session_scope() as session:
            deleted = purge(session, batch)
        purged += deleted
        if deleted < batch:
            return purged


def reset_engines() -> None:
    """Drop pooled connections inherited over fork (Celery prefork children, tests)."""
    for engine in _engines.values():
        engine.dispose(close=False)
    _engines.clear()
    _sessionmakers.clear()


def trace_engines() -> None:
    """A span per statement on this process's engines, those made already and those to come (tracing
    on only; call after core.tracing.setup_tracing)."""
    if not tracing_enabled():
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    instrumentor = SQLAlchemyInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:  # once per process: it wraps create_engine
        # Its declared range ends before SQLAlchemy 2.1, whose engine events it uses unchanged
        # (tests/e2e/test_tracing.py sees both processes' statements); without this it does nothing.
        instrumentor.instrument(engines=list(_engines.values()), skip_dep_check=True)


@contextmanager
def autocommit(conn: sa.Connection) -> Iterator[sa.Connection]:
    """The block's statements each commit by themselves (one round trip, no BEGIN or COMMIT), on a
    connection between transactions; the engine's isolation level again after it."""
    conn.execution_options(isolation_level="AUTOCOMMIT")
    try:
        yield conn
    finally:
        if not conn.invalidated and not conn.closed:
            conn.rollback()  # ends SQLAlchemy's record of the block; the server has nothing open
            conn.execution_options(isolation_level=conn.default_isolation_level)

"""Engines and sessions from DATABASE_URL: PostgreSQL in production, SQLite for the demo."""

from __future__ import annotations

import hashlib
import re
from collections import namedtuple
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.compiler import SQLCompiler

from core.settings import settings


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
        kwargs.setdefault("connect_args", {"options": "-c synchronous_commit=off"})
    return sa.create_engine(parsed, **kwargs)


def _serialize_sqlite_writers(engine: sa.Engine) -> None:
    # SQLite's deferred transactions let two writers both read "10 left" and both insert.
    # BEGIN IMMEDIATE takes the write lock up front, which is what FOR UPDATE does on PostgreSQL.
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
        conn.exec_driver_sql("BEGIN IMMEDIATE")


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


def reset_engines() -> None:
    """Drop pooled connections inherited over fork (Celery prefork children, tests)."""
    for engine in _engines.values():
        engine.dispose(close=False)
    _engines.clear()
    _sessionmakers.clear()


_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
PREPARED = "ticketq_prepared"  # key in a pooled connection's info: names this connection has prepared


@dataclass(frozen=True)
class DriverStatement:
    """A Core statement compiled once for a dialect and prepared on the server once per connection.

    `rows` runs `EXECUTE name(...)` on the connection's DBAPI cursor: no per-call compile-cache key (a
    walk of the whole statement), parameter construction, bind processing, execution context or
    result metadata on our side (bench P2: 0.155 -> 0.068 ms of API CPU for the lookup), and no parse
    or plan on PostgreSQL's (the lookup's joins cost the backend 0.22 ms of CPU as plain SQL, 0.06 ms
    prepared). psycopg2 never prepares by itself, so the first run on a connection sends `PREPARE name
    AS ...` first; the names live in the pooled connection's `info`, which goes with the connection
    when it is dropped or replaced. DATABASE_PREPARED_STATEMENTS=false (behind PgBouncer in
    transaction mode, where a session's prepared statements do not follow it) runs the statement
    itself. The caller passes values the driver takes as they are.

    The driver's cursor only on an autocommit connection (the API's reads), where each statement is
    its own transaction; on any other the statement goes through SQLAlchemy, which tracks the
    transaction it begins (a PREPARE outlives a rollback, so the names stay true).
    Errors are SQLAlchemy's either way: a dropped connection is invalidated and raised as DBAPIError
    with `connection_invalidated` set."""

    name: str
    sql: str  # the statement itself, in the driver's paramstyle (DATABASE_PREPARED_STATEMENTS=false)
    prepare: str  # PREPARE name AS <the statement with $1..$n>
    run: str  # EXECUTE name(%(a)s, ...), in the driver's paramstyle
    literals: dict[str, Any]  # the values of its literal parameters (LIMIT 1, a constant)
    row: Any  # a named tuple of the statement's columns

    def rows(self, conn: sa.Connection, params: dict[str, Any]) -> list[Any]:
        values = {**self.literals, **params}
        use_prepared = settings.database_prepared_statements
        prepared = conn.connection.info.setdefault(PREPARED, set())
        dbapi_connection = conn.connection.dbapi_connection
        assert dbapi_connection is not None  # a live checkout
        if not getattr(dbapi_connection, "autocommit", False):
            if use_prepared and self.name not in prepared:
                conn.exec_driver_sql(self.prepare, execution_options={"no_parameters": True})
                prepared.add(self.name)
            return [self.row(*r) for r in conn.exec_driver_sql(self.run if use_prepared else self.sql, values)]
        cursor = dbapi_connection.cursor()
        try:
            if use_prepared and self.name not in prepared:
                cursor.execute(self.prepare)
                prepared.add(self.name)
            cursor.execute(self.run if use_prepared else self.sql, values)
            return [self.row(*r) for r in cursor.fetchall()] if cursor.description else []
        except conn.dialect.loaded_dbapi.Error as exc:
            invalidated = conn.dialect.is_disconnect(exc, dbapi_connection, cursor)
            if invalidated:  # as SQLAlchemy does: the connection, and the pool's others made before it
                conn.invalidate(exc)
                conn.engine.dispose()
            raise sa.exc.DBAPIError.instance(self.run, values, exc, conn.dialect.loaded_dbapi.Error,
                                             connection_invalidated=invalidated) from exc
        finally:
            if not cursor.closed:
                cursor.close()


@lru_cache(maxsize=128)  # one entry per (statement, dialect): the worker has about 10, the API 2
def driver_statement(statement: sa.Select[Any], dialect: sa.Dialect) -> DriverStatement:
    compiled = statement.compile(dialect=dialect)
    assert isinstance(compiled, SQLCompiler)
    assert dialect.name == "postgresql" and dialect.paramstyle == "pyformat", "built for psycopg2"
    literals = {name: bind.value for bind, name in compiled.bind_names.items() if bind.value is not None}
    names: list[str] = []

    def numbered(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    body = _PLACEHOLDER.sub(numbered, compiled.string).replace("%%", "%")
    name = "ticketq_" + hashlib.sha256(body.encode()).hexdigest()[:16]
    run = f"EXECUTE {name}({', '.join(f'%({n})s' for n in names)})" if names else f"EXECUTE {name}"
    row = namedtuple("row", list(statement.selected_columns.keys()), rename=True)  # type: ignore[misc]
    return DriverStatement(name, compiled.string, f"PREPARE {name} AS {body}", run, literals, row)


def driver_rows(conn: sa.Connection, statement: sa.Select[Any] | sa.TextualSelect, params: dict[str, Any]) -> list[Any]:
    """`statement`'s rows, run as its driver statement on `conn` (PostgreSQL)."""
    return driver_statement(statement, conn.dialect).rows(conn, params)


@contextmanager
def autocommit(conn: sa.Connection) -> Iterator[sa.Connection]:
    """The connection's driver in autocommit for the block, on a connection between transactions
    (psycopg2): each statement is its own transaction, one round trip instead of BEGIN, the
    statement and COMMIT. A connection that died in the block is left as it is."""
    raw: Any = conn.connection.dbapi_connection
    raw.autocommit = True
    try:
        yield conn
    finally:
        if not raw.closed:
            raw.autocommit = False

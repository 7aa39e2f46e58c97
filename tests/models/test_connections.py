"""Connections as the product uses them: the API's one-statement reads and writes on an autocommit
engine (a connection the server dropped fails as invalidated, which the request path retries), and
`autocommit` blocks on a transactional connection (the claimed connection of a send)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from models import OrderEvent, OutboxJob
from models.access import lookup
from models.db import autocommit, create_engine, get_engine
from models.resending import request_resend
from models.status import OrderStatus
from models.users import create_user_token
from tests.factories import make_event, make_order

_events = OrderEvent.__table__


@pytest.fixture
def reads(db: sessionmaker[Session]) -> Iterator[sa.Engine]:
    """An engine like the API's reads: every statement commits by itself."""
    engine = create_engine(get_engine().url.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def an_order(factory: sessionmaker[Session]) -> tuple[int, str, str]:
    """(order id, identifier, the buyer's token)."""
    with factory() as session, session.begin():
        buyer, token = create_user_token(session, "buyer@example.org")
        order = make_order(session, make_event(session), buyer)
        return order.id, order.identifier, token


def notes(factory: sessionmaker[Session], order_id: int) -> int:
    with factory() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(OrderEvent).where(
            OrderEvent.order_id == order_id, OrderEvent.kind == "note")) or 0)


def note(conn: sa.Connection, order_id: int) -> None:
    conn.execute(sa.insert(_events).values(order_id=order_id, kind="note", detail={}, created_at=sa.func.now()))


def test_the_lookup_reads_caller_and_order_on_an_autocommit_connection(
        db: sessionmaker[Session], reads: sa.Engine) -> None:
    order_id, identifier, token = an_order(db)
    with reads.connect() as conn:
        found = lookup(conn, token, identifier=identifier)
        no_order = lookup(conn, token, identifier="NOSUCHORDER")
        unknown = lookup(conn, "not-a-token", identifier=identifier)
    assert found is not None and found.order is not None
    assert (found.caller.email, found.order.id, found.order.status) == ("buyer@example.org", order_id,
                                                                      OrderStatus.INITIALIZING)
    assert not found.runs_event
    assert no_order is not None and no_order.order is None and unknown is None


def test_a_connection_the_server_dropped_fails_as_invalidated(db: sessionmaker[Session], reads: sa.Engine) -> None:
    """What `api.deps.lookup_connection` retries on (tests/api/test_request_path.py: through the API)."""
    _, identifier, token = an_order(db)
    with reads.connect() as conn:
        assert lookup(conn, token, identifier=identifier) is not None
        backend = conn.scalar(sa.select(sa.func.pg_backend_pid()))
        with reads.connect() as other:
            other.execute(sa.select(sa.func.pg_terminate_backend(backend)))
        with pytest.raises(sa.exc.DBAPIError) as failed:
            lookup(conn, token, identifier=identifier)
        assert failed.value.connection_invalidated and conn.invalidated
    with reads.connect() as conn:  # the pool hands out a working connection again
        assert lookup(conn, token, identifier=identifier) is not None


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_a_resend_request_commits_its_job_and_audit_row_together(request: pytest.FixtureRequest,
                                                                  database: str) -> None:
    """One statement on PostgreSQL's autocommit connection, one transaction on SQLite."""
    factory: sessionmaker[Session] = request.getfixturevalue("db" if database == "postgresql" else "sqlite_db")
    order_id, identifier, _ = an_order(factory)
    engine: sa.Engine = factory.kw["bind"]
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if database == "postgresql" else {}
    with engine.connect() as conn:
        job = request_resend(conn.execution_options(**options), order_id, identifier, by="owner@example.org")
    with factory() as session:
        row = session.get(OutboxJob, job.id)
        audit = session.scalars(sa.select(OrderEvent.actor).where(OrderEvent.order_id == order_id,
                                                                  OrderEvent.kind == "resend-requested")).all()
    assert row is not None and (row.task, row.args, row.queue) == (job.task, [identifier, "owner@example.org"],
                                                                   job.queue)
    assert audit == ["owner@example.org"]


def test_an_autocommit_block_commits_each_statement_and_leaves_the_connection_transactional(
        db: sessionmaker[Session]) -> None:
    order_id, _, _ = an_order(db)
    with get_engine().connect() as conn:
        with autocommit(conn):
            note(conn, order_id)
        assert notes(db, order_id) == 1  # committed without a COMMIT
        note(conn, order_id)
        assert conn.in_transaction()
        conn.rollback()
        with pytest.raises(RuntimeError), autocommit(conn):
            note(conn, order_id)
            raise RuntimeError("the block failed after its statement")
        note(conn, order_id)  # a failed block hands the connection back transactional too
        conn.rollback()
    assert notes(db, order_id) == 2


def test_a_sqlite_transaction_takes_the_write_lock_when_it_begins(sqlite_db: sessionmaker[Session]) -> None:
    """BEGIN IMMEDIATE (models.db): a second transaction waits at its BEGIN, even one that only reads,
    so two writers never both read "10 left" (tests/models/test_concurrency.py races fifty buyers)."""
    engine: sa.Engine = sqlite_db.kw["bind"]
    with engine.connect() as first, engine.connect() as second:
        assert first.scalar(sa.select(1)) == 1
        raw: Any = second.connection.dbapi_connection
        raw.execute("PRAGMA busy_timeout = 50")  # instead of 30 s
        with pytest.raises(sa.exc.OperationalError, match="locked"):
            second.scalar(sa.select(1))
        first.rollback()
        second.rollback()
        assert second.scalar(sa.select(1)) == 1

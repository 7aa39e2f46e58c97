"""Driver statements: compiled once, prepared on the server once per connection, run on the driver's
cursor where each statement is its own transaction, and the same rows as the Core statement they
come from. A dropped connection still fails as SQLAlchemy's own error would."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from models.base import Base
from models.db import PREPARED, create_engine, driver_statement, get_engine
from models.orders import Order
from tests.factories import make_event, make_order, make_user

_orders = Order.__table__
BY_IDENTIFIER = (sa.select(_orders.c.id, _orders.c.status)
                 .where(_orders.c.identifier == sa.bindparam("identifier", type_=sa.String),
                        _orders.c.identifier != sa.literal_column("'100%'"))  # a literal % in the SQL
                 .limit(1))
_events = Base.metadata.tables["order_events"]
NOTE_EVENT = sa.select(  # one statement that writes: an insert in a CTE, as request_resend's
    sa.insert(_events).values(order_id=sa.bindparam("order_id", type_=sa.Integer), kind="note", actor="test",
                              detail=sa.literal_column("'{}'"), created_at=sa.func.now())
    .returning(_events.c.id).cte("noted").c.id)


@pytest.fixture
def autocommit(db: sessionmaker[Session]) -> Iterator[sa.Engine]:
    """An engine like the API's reads: autocommit on the driver's connection."""
    engine = create_engine(get_engine().url.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def an_order(db: sessionmaker[Session]) -> tuple[int, str]:
    with db() as session, session.begin():
        order = make_order(session, make_event(session), make_user(session, "buyer@example.org"))
        return order.id, order.identifier


def prepared_here(conn: sa.Connection) -> set[str]:
    return set(conn.exec_driver_sql("SELECT name FROM pg_prepared_statements").scalars())


def notes(db: sessionmaker[Session], order_id: int) -> int:
    with db() as session:
        return int(session.scalar(sa.text("SELECT count(*) FROM order_events WHERE order_id = :o AND kind = 'note'"),
                                  {"o": order_id}) or 0)


@pytest.mark.parametrize("isolation", ["AUTOCOMMIT", "READ COMMITTED"])
def test_a_driver_statement_returns_what_its_core_statement_returns(
        db: sessionmaker[Session], autocommit: sa.Engine, isolation: str) -> None:
    order_id, identifier = an_order(db)
    engine = autocommit if isolation == "AUTOCOMMIT" else get_engine()
    with engine.connect() as conn:
        expected = conn.execute(BY_IDENTIFIER, {"identifier": identifier}).all()
        got = driver_statement(BY_IDENTIFIER, conn.dialect).rows(conn, {"identifier": identifier})
        none = driver_statement(BY_IDENTIFIER, conn.dialect).rows(conn, {"identifier": "nope"})
    assert [tuple(r) for r in got] == [tuple(r) for r in expected] and len(got) == 1
    assert (got[0].id, got[0].status) == (order_id, expected[0].status)
    assert none == []


def test_on_an_autocommit_connection_a_write_commits_by_itself(
        db: sessionmaker[Session], autocommit: sa.Engine) -> None:
    order_id, _ = an_order(db)
    with autocommit.connect() as conn:
        [(note_id,)] = driver_statement(NOTE_EVENT, conn.dialect).rows(conn, {"order_id": order_id})
    assert note_id > 0 and notes(db, order_id) == 1


def test_elsewhere_a_write_is_in_the_transaction_sqlalchemy_began(db: sessionmaker[Session]) -> None:
    order_id, _ = an_order(db)
    with get_engine().connect() as conn:
        driver_statement(NOTE_EVENT, conn.dialect).rows(conn, {"order_id": order_id})
        assert conn.in_transaction()
        conn.rollback()
    assert notes(db, order_id) == 0


def test_it_is_prepared_once_per_connection_and_again_on_a_new_one(autocommit: sa.Engine) -> None:
    with autocommit.connect() as conn:
        statement = driver_statement(BY_IDENTIFIER, conn.dialect)
        for _ in range(3):
            statement.rows(conn, {"identifier": "x"})
        assert statement.name in prepared_here(conn)
        assert statement.name in conn.connection.info[PREPARED]
        conn.invalidate()  # the server session is gone; the next checkout is a new connection
    with autocommit.connect() as conn:
        assert statement.name not in prepared_here(conn)
        assert statement.rows(conn, {"identifier": "x"}) == []
        assert statement.name in prepared_here(conn)


def test_a_connection_the_server_dropped_fails_as_invalidated(autocommit: sa.Engine) -> None:
    with autocommit.connect() as conn:
        statement = driver_statement(BY_IDENTIFIER, conn.dialect)
        statement.rows(conn, {"identifier": "x"})
        backend = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with autocommit.connect() as other:
            other.exec_driver_sql(f"SELECT pg_terminate_backend({int(backend)})")
        with pytest.raises(sa.exc.DBAPIError) as failed:
            statement.rows(conn, {"identifier": "x"})
        assert failed.value.connection_invalidated
        assert conn.invalidated
    with autocommit.connect() as conn:  # the pool hands out a working connection again
        assert statement.rows(conn, {"identifier": "x"}) == []


def test_with_prepared_statements_off_nothing_is_prepared(
        db: sessionmaker[Session], autocommit: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import settings

    monkeypatch.setattr(settings, "database_prepared_statements", False)  # behind PgBouncer, transaction mode
    order_id, identifier = an_order(db)
    for engine in (autocommit, get_engine()):
        with engine.connect() as conn:
            before = prepared_here(conn)  # a pooled connection may hold what earlier tests prepared
            got = driver_statement(BY_IDENTIFIER, conn.dialect).rows(conn, {"identifier": identifier})
            assert [r.id for r in got] == [order_id]
            assert prepared_here(conn) == before

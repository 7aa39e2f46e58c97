"""Driver statements: compiled once, prepared on the server once per connection, and the same rows as
the Core statement they come from."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from models.db import PREPARED, driver_statement, get_engine
from models.orders import Order
from tests.factories import make_event, make_order, make_user

_orders = Order.__table__
BY_IDENTIFIER = (sa.select(_orders.c.id, _orders.c.status)
                 .where(_orders.c.identifier == sa.bindparam("identifier", type_=sa.String),
                        _orders.c.identifier != sa.literal_column("'100%'"))  # a literal % in the SQL
                 .limit(1))


def prepared_here(conn: sa.Connection) -> set[str]:
    return set(conn.exec_driver_sql("SELECT name FROM pg_prepared_statements").scalars())


def test_a_driver_statement_returns_what_its_core_statement_returns(db: sessionmaker[Session]) -> None:
    with db() as session, session.begin():
        order = make_order(session, make_event(session), make_user(session, "buyer@example.org"))
        identifier = order.identifier
    with get_engine().connect() as conn:
        expected = conn.execute(BY_IDENTIFIER, {"identifier": identifier}).all()
        got = driver_statement(BY_IDENTIFIER, conn.dialect).execute(conn, {"identifier": identifier}).all()
        none = driver_statement(BY_IDENTIFIER, conn.dialect).execute(conn, {"identifier": "nope"}).all()
    assert list(got) == list(expected) and len(got) == 1
    assert none == []


def test_it_is_prepared_once_per_connection_and_again_on_a_new_one(db: sessionmaker[Session]) -> None:
    engine = get_engine()
    with engine.connect() as conn:
        statement = driver_statement(BY_IDENTIFIER, conn.dialect)
        for _ in range(3):
            statement.execute(conn, {"identifier": "x"}).all()
        assert statement.name in prepared_here(conn)
        assert statement.name in conn.connection.info[PREPARED]
        conn.invalidate()  # the server session is gone; the next checkout is a new connection
    with engine.connect() as conn:
        assert statement.name not in prepared_here(conn)
        assert statement.execute(conn, {"identifier": "x"}).all() == []
        assert statement.name in prepared_here(conn)

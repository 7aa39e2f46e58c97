"""Claiming deliveries to send: a PostgreSQL advisory lock per delivery, held on the one connection
that does the whole send.

The locks die with the connection, so a 'sending' row whose lock is free was left by a worker that
died mid-send (send again: at-least-once), while a held lock means a live duplicate job (skip).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session, sessionmaker

from models.db import autocommit

log = logging.getLogger("ticketq.delivery")

ADVISORY_CLASS = 0x7471  # "tq": the namespace of our PostgreSQL advisory locks

# The locks of a set of deliveries, one statement each way.
_ids = sa.func.unnest(sa.bindparam("ids", type_=postgresql.ARRAY(sa.Integer))).column_valued("id")
_TRY_LOCKS = sa.select(_ids).where(sa.func.pg_try_advisory_lock(sa.literal(ADVISORY_CLASS), _ids, type_=sa.Boolean))
_UNLOCK = sa.select(sa.func.pg_advisory_unlock(sa.literal(ADVISORY_CLASS), _ids, type_=sa.Boolean))


@contextmanager
def claimed(factory: sessionmaker[Session], ids: Sequence[int]) -> Iterator[tuple[Session, list[int]]]:
    """A session on ONE connection holding the advisory locks of the deliveries it could claim. SQLite
    has no advisory locks: there all are claimed, and a 'sending' row's age tells (services/sending.py)."""
    engine: sa.Engine = factory.kw["bind"]
    postgres = engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        ours = sorted(set(ids))
        if postgres and ours:  # session locks, not a transaction's: taken in autocommit, one round trip
            with autocommit(conn):
                ours = sorted(conn.scalars(_TRY_LOCKS, {"ids": ours}))
        try:
            with Session(bind=conn, expire_on_commit=False) as session:
                yield session, ours
        finally:
            if postgres and ours:
                _unlock(conn, ours)


def _unlock(conn: sa.Connection, ids: list[int]) -> None:
    if conn.invalidated:  # the database went away under it: its locks went with that session
        return
    try:
        conn.rollback()
        with autocommit(conn):
            conn.execute(_UNLOCK, {"ids": ids})
    except Exception:  # never hand a connection that may still hold a lock back to the pool
        log.exception("could not release the locks of deliveries %s; dropping the connection", ids)
        conn.invalidate()

"""Waiting out a database that went away (a crash, a restart, a failover): which errors say so, and a
bounded retry with backoff that a job uses for what it must not lose."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa

log = logging.getLogger("ticketq.reconnect")

T = TypeVar("T")
FIRST_DELAY, MAX_DELAY = 0.25, 2.0  # a restarted server answers within seconds; poll it that often


def database_gone(exc: BaseException) -> bool:
    """The server went away or is not answering yet (connection refused, reset, in recovery), as
    opposed to a statement it refused; also when such an error caused or preceded this one (a
    rollback on the dead connection)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, sa.exc.DBAPIError) and seen.connection_invalidated:
            return True
        if isinstance(seen, (sa.exc.OperationalError, sa.exc.InterfaceError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def retry_while_gone(action: Callable[[], T], deadline: float, what: str) -> T:
    """`action()`, again with backoff for as long as the database is gone and `deadline`
    (time.monotonic()) is ahead; then its last error. Each wait is logged with `what` is waiting."""
    delay = FIRST_DELAY
    while True:
        try:
            return action()
        except sa.exc.DBAPIError as exc:
            wait = delay / 2 + random.uniform(0, delay / 2)
            if not database_gone(exc) or time.monotonic() + wait > deadline:
                raise
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
            log.warning("%s: database unreachable (%s); trying again in %.1f s", what, reason, wait)
            time.sleep(wait)
            delay = min(MAX_DELAY, delay * 2)


def on_fresh_connection(engine: sa.Engine, work: Callable[[sa.Connection], T]) -> T:
    """`work` on a new pooled connection in autocommit where the server has it (one statement, one
    transaction), else in a transaction; for retries after the connection in use was lost."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            return work(conn.execution_options(isolation_level="AUTOCOMMIT"))
        with conn.begin():
            return work(conn)

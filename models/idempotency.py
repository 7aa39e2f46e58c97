"""Idempotency keys: one row per (user, key) holds the answer of the one request that ran; repeats replay it.

A request takes the key's PostgreSQL advisory lock in the transaction of its effect, and writes its
answer into the key's row in that same transaction: a concurrent repeat finds the lock taken and
answers 409 at once, and a request that dies leaves neither a row nor a lock behind. The unique
(user, key) index decides in the end: an answer whose row another request wrote first does not
commit, and neither does its effect.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, UTCDateTime, utcnow

Executor = Session | sa.Connection


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(sa.String(255))
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    status_code: Mapped[int]
    headers: Mapped[dict[str, str] | None] = mapped_column(sa.JSON)
    body: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    __table_args__ = (sa.UniqueConstraint("user_id", "key", name="uq_idempotency_keys_user_key"),)


class Verdict(enum.StrEnum):
    RUN = "run"  # this request runs: the lock is this transaction's
    REPLAY = "replay"  # answered before: send the stored answer
    MISMATCH = "mismatch"  # the key was used for another request
    BUSY = "busy"  # another request with this key still runs


@dataclass(frozen=True)
class Claim:
    verdict: Verdict
    user_id: int = 0
    key: str = ""
    fingerprint: str = ""
    created_at: datetime | None = None
    ttl: timedelta = timedelta(0)
    status_code: int = 0
    headers: dict[str, str] | None = None
    body: bytes = b""


_keys = cast(sa.Table, IdempotencyKey.__table__)
_ANSWER = ("user_id", "key", "fingerprint", "status_code", "headers", "body", "created_at")


def lock_id(user_id: int, key: str) -> int:
    """The key's advisory lock: 64 bits of a hash of (user, key). PostgreSQL keeps one-bigint locks
    apart from the two-integer ones the deliveries take (services/claims.py)."""
    digest = hashlib.blake2b(f"{user_id}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _look(locked: Any) -> Any:
    """The lock's verdict and the key's row (if any) in one statement: a one-row LEFT JOIN."""
    one = sa.select(sa.literal(1).label("one")).subquery()
    return sa.select(locked.label("locked"), _keys.c.fingerprint, _keys.c.status_code, _keys.c.headers,
                     _keys.c.body, _keys.c.created_at).select_from(one.outerjoin(_keys, sa.and_(
                         _keys.c.user_id == sa.bindparam("p_user"), _keys.c.key == sa.bindparam("p_key"))))


def _answer_insert(insert: Any) -> Any:
    """INSERT the answer, or overwrite a row kept past its time; RETURNING nothing when a live answer
    is there already (another request wrote it first)."""
    stmt = insert(_keys).values({name: sa.bindparam(f"p_{name}", type_=_keys.c[name].type) for name in _ANSWER})
    return stmt.on_conflict_do_update(
        index_elements=["user_id", "key"],
        set_={name: stmt.excluded[name] for name in _ANSWER[2:]},
        where=_keys.c.created_at < sa.bindparam("p_cutoff", type_=_keys.c.created_at.type),
    ).returning(_keys.c.id)


# Built once per dialect: building and cache-keying a statement costs more CPU than running it.
# SQLite has no advisory locks; its writers take turns, and the unique index decides as everywhere.
_LOOK = {"postgresql": _look(sa.func.pg_try_advisory_xact_lock(sa.bindparam("p_lock", type_=sa.BigInteger),
                                                                type_=sa.Boolean)),
         "sqlite": _look(sa.true())}
_STORE = {"postgresql": _answer_insert(postgresql.insert), "sqlite": _answer_insert(sqlite.insert)}


def claim_key(db: Executor, user_id: int, key: str, fingerprint: str, ttl: timedelta,
              now: datetime | None = None) -> Claim:
    """Take (user, key) for this request in `db`'s transaction, or say why not. The lock is held until
    that transaction ends: the caller writes the answer (`store_answer`) before it commits."""
    now = now or utcnow()
    conn = _connection(db)
    row = conn.execute(_LOOK[_dialect(conn)], {"p_lock": lock_id(user_id, key), "p_user": user_id, "p_key": key}).one()
    claim = Claim(Verdict.RUN, user_id, key, fingerprint, now, ttl)
    if row.created_at is not None and row.created_at >= now - ttl:  # a live answer (an older one is forgotten)
        if row.fingerprint != fingerprint:
            return Claim(Verdict.MISMATCH)
        return Claim(Verdict.REPLAY, status_code=row.status_code, headers=row.headers or {},
                     body=bytes(row.body or b""))
    return claim if row.locked else Claim(Verdict.BUSY)


def store_answer(db: Executor, claim: Claim, status_code: int, headers: dict[str, str], body: bytes) -> bool:
    """Write the answer into the key's row (in the effect's transaction, or alone for a refusal); False
    when another request's answer is there already: the caller must not commit its effect."""
    assert claim.created_at is not None
    values = {"p_user_id": claim.user_id, "p_key": claim.key, "p_fingerprint": claim.fingerprint,
              "p_status_code": status_code, "p_headers": headers, "p_body": body, "p_created_at": claim.created_at,
              "p_cutoff": claim.created_at - claim.ttl}
    conn = _connection(db)
    return conn.execute(_STORE[_dialect(conn)], values).scalar() is not None


def purge_keys(session: Session, before: datetime, limit: int = 10_000) -> int:
    """Forget keys created before `before`, a bounded batch at a time."""
    old = sa.select(_keys.c.id).where(_keys.c.created_at < before).limit(limit).scalar_subquery()
    result = session.execute(sa.delete(_keys).where(_keys.c.id.in_(old)).execution_options(
        synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


def _connection(db: Executor) -> sa.Connection:
    """A session's connection in its transaction: Core statements skip the ORM's execute path."""
    return db.connection() if isinstance(db, Session) else db


def _dialect(conn: sa.Connection) -> str:
    return "postgresql" if conn.dialect.name == "postgresql" else "sqlite"

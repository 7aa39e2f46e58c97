"""Idempotency keys: one row per (user, key) decides which request runs; the answer it stored is replayed.

A row is claimed (`run_token` set, `status_code` NULL) in its own short transaction, so a concurrent
repeat sees it and answers 409 instead of waiting. The answer is written into the row in the
transaction that commits the request's effect, conditionally on the claim still being ours.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, UTCDateTime, utcnow

# A claim whose request has not answered within this long is taken to be dead (its effect never
# committed: the answer commits with it); a repeat may then run. Requests take well under a second.
CLAIM_LEASE = timedelta(seconds=60)
Executor = Session | sa.Connection


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(sa.String(255))
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    run_token: Mapped[str | None] = mapped_column(sa.String(32))
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status_code: Mapped[int | None]  # NULL while the first request runs
    headers: Mapped[dict[str, str] | None] = mapped_column(sa.JSON)
    body: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    __table_args__ = (sa.UniqueConstraint("user_id", "key", name="uq_idempotency_keys_user_key"),)


class Verdict(enum.StrEnum):
    RUN = "run"  # this request runs: the claim is ours
    REPLAY = "replay"  # answered before: send the stored answer
    MISMATCH = "mismatch"  # the key was used for another request
    BUSY = "busy"  # the first request still runs


@dataclass(frozen=True)
class Claim:
    verdict: Verdict
    key_id: int = 0
    run_token: str = ""
    status_code: int = 0
    headers: dict[str, str] | None = None
    body: bytes = b""


_keys = cast(sa.Table, IdempotencyKey.__table__)
_CLAIMED = ("user_id", "key", "fingerprint", "run_token", "locked_until", "created_at")


def _claim_insert(insert: Any) -> Any:
    """INSERT … ON CONFLICT DO NOTHING RETURNING id, built once per dialect: building and keying a
    statement costs more CPU than running it, and every keyed request makes one (bench P6)."""
    return insert(_keys).values({name: sa.bindparam(f"p_{name}", type_=_keys.c[name].type) for name in _CLAIMED}) \
        .on_conflict_do_nothing(index_elements=["user_id", "key"]).returning(_keys.c.id)


_CLAIM = {"postgresql": _claim_insert(postgresql.insert), "sqlite": _claim_insert(sqlite.insert)}
_STORE = sa.update(_keys).where(
    _keys.c.id == sa.bindparam("p_id"), _keys.c.run_token == sa.bindparam("p_token"), _keys.c.status_code.is_(None),
).values(status_code=sa.bindparam("p_status", type_=_keys.c.status_code.type),
         headers=sa.bindparam("p_headers", type_=_keys.c.headers.type),
         body=sa.bindparam("p_body", type_=_keys.c.body.type), run_token=None, locked_until=None).returning(_keys.c.id)


def claim_key(db: Executor, user_id: int, key: str, fingerprint: str, ttl: timedelta,
              now: datetime | None = None) -> Claim:
    """Claim (user, key) for this request, or say why not. The caller commits right after."""
    now = now or utcnow()
    token = secrets.token_hex(16)
    values = {"user_id": user_id, "key": key, "fingerprint": fingerprint, "run_token": token,
              "locked_until": now + CLAIM_LEASE, "created_at": now}
    insert = _CLAIM["postgresql" if _dialect(db) == "postgresql" else "sqlite"]
    inserted = db.execute(insert, {f"p_{name}": value for name, value in values.items()}).scalar()
    if inserted is not None:
        return Claim(Verdict.RUN, int(inserted), token)
    row = db.execute(sa.select(_keys).where(_keys.c.user_id == user_id, _keys.c.key == key)).one()
    expired = row.created_at < now - ttl  # kept past its time, not purged yet: as good as new
    if not expired and row.fingerprint != fingerprint:
        return Claim(Verdict.MISMATCH, row.id)
    if not expired and row.status_code is not None:
        return Claim(Verdict.REPLAY, row.id, "", row.status_code, row.headers or {}, bytes(row.body or b""))
    if expired or (row.locked_until is not None and row.locked_until < now):
        taken = db.execute(sa.update(_keys).where(_keys.c.id == row.id, _keys.c.created_at == row.created_at,
                                                  sa.or_(_keys.c.status_code.is_(None), expired),
                                                  sa.or_(_keys.c.run_token == row.run_token,
                                                         _keys.c.run_token.is_(None)))
                           .values(**values, status_code=None, headers=None, body=None)
                           .returning(_keys.c.id)).scalar()
        if taken is not None:
            return Claim(Verdict.RUN, int(taken), token)
    return Claim(Verdict.BUSY, row.id)


def store_answer(db: Executor, claim: Claim, status_code: int, headers: dict[str, str], body: bytes) -> bool:
    """Write the answer into the claimed row (in the effect's transaction); False if the claim was lost."""
    done = db.execute(_STORE, {"p_id": claim.key_id, "p_token": claim.run_token, "p_status": status_code,
                               "p_headers": headers, "p_body": body}).scalar()
    return done is not None


def release_key(db: Executor, claim: Claim) -> None:
    """An answer that is not kept (5xx, 429, 503): the key is free for the retry to run again."""
    db.execute(sa.delete(_keys).where(_keys.c.id == claim.key_id, _keys.c.run_token == claim.run_token,
                                      _keys.c.status_code.is_(None)))


def purge_keys(session: Session, before: datetime, limit: int = 10_000) -> int:
    """Forget keys created before `before`, a bounded batch at a time."""
    old = sa.select(_keys.c.id).where(_keys.c.created_at < before).limit(limit).scalar_subquery()
    result = session.execute(sa.delete(_keys).where(_keys.c.id.in_(old)).execution_options(
        synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


def _dialect(db: Executor) -> str:
    bind: Any = db.get_bind() if isinstance(db, Session) else db
    return str(bind.dialect.name)

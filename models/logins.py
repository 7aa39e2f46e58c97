"""One-time sign-in links for the organizer page, and the browser sessions they open (an API token
with an expiry, kept in a cookie by the API)."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, UTCDateTime, utcnow
from models.users import ApiToken, User, get_or_create_user, hash_token

LINK_TTL = timedelta(minutes=15)
SESSION_TTL = timedelta(hours=12)


class LoginLink(Base):
    """Only the keyed hash of the link's token is stored; `used_at` makes it work once."""

    __tablename__ = "login_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


def create_login_link(session: Session, email: str, *, now: datetime | None = None) -> tuple[User, str]:
    """A link token for the user (created when new); returned in clear once."""
    now = now or utcnow()
    user = get_or_create_user(session, email)
    token = secrets.token_urlsafe(32)
    session.add(LoginLink(user_id=user.id, token_hash=hash_token(token), created_at=now, expires_at=now + LINK_TTL))
    session.flush()
    return user, token


def link_user(session: Session, token: str, *, now: datetime | None = None) -> User | None:
    """Whose unused, unexpired link this is (the sign-in page names them before the click)."""
    now = now or utcnow()
    link = session.scalar(sa.select(LoginLink).where(
        LoginLink.token_hash == hash_token(token), LoginLink.used_at.is_(None), LoginLink.expires_at > now))
    return session.get(User, link.user_id) if link is not None else None


def redeem_login_link(session: Session, token: str, *, now: datetime | None = None) -> str | None:
    """Use the link (a conditional UPDATE: two clicks racing, one wins) and open a session: the new
    session token in clear, or None for an unknown, used or expired link."""
    now = now or utcnow()
    user_id = session.scalar(
        sa.update(LoginLink)
        .where(LoginLink.token_hash == hash_token(token), LoginLink.used_at.is_(None), LoginLink.expires_at > now)
        .values(used_at=now).returning(LoginLink.user_id))
    if user_id is None:
        return None
    session_token = secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user_id, token_hash=hash_token(session_token), created_at=now,
                         expires_at=now + SESSION_TTL))
    session.flush()
    return session_token


def end_session(session: Session, token: str) -> None:
    """Sign out: the session's token stops working at once (API tokens, which never expire, stay)."""
    session.execute(sa.delete(ApiToken).where(ApiToken.token_hash == hash_token(token),
                                              ApiToken.expires_at.is_not(None)))

"""Users and their API tokens (only a keyed hash of a token is ever stored)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from core.settings import settings
from models.base import Base, UTCDateTime, utcnow


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    name: Mapped[str | None] = mapped_column(sa.String(200))
    is_admin: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user", cascade="all, delete-orphan")


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set for a browser session opened by a sign-in link (models/logins.py); API tokens never expire.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(back_populates="tokens")


class Principal(Protocol):
    """Whoever acts: a loaded `User`, or the API's `Caller` read with its token in one statement."""

    @property
    def id(self) -> int: ...
    @property
    def email(self) -> str: ...
    @property
    def is_admin(self) -> bool: ...


@dataclass(frozen=True)
class Caller:
    """The user behind a request's token, as plain values (no session holds it)."""

    id: int
    email: str
    is_admin: bool


def hash_token(token: str) -> str:
    return hmac.new(settings.secret(), token.encode(), hashlib.sha256).hexdigest()


def normalize_email(email: str) -> str:
    return email.strip().lower()


def get_or_create_user(session: Session, email: str, *, name: str | None = None) -> User:
    email = normalize_email(email)
    user = session.scalar(sa.select(User).where(User.email == email))
    if user is None:
        user = User(email=email, name=name)
        session.add(user)
        session.flush()
    return user


def create_user_token(
    session: Session, email: str, *, name: str | None = None, admin: bool = False
) -> tuple[User, str]:
    """Create the user (or find it) and issue a new token; returns the token in clear once."""
    user = get_or_create_user(session, email, name=name)
    if name:
        user.name = name
    if admin:
        user.is_admin = True
    token = secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, token_hash=hash_token(token)))
    session.flush()
    return user, token

"""Accounts: users and their refresh tokens."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, false, func, true
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, CreatedAtMixin, TimestampMixin, UUIDPrimaryKeyMixin


class User(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    """A person who logs in. Every other resource belongs to exactly one user."""

    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(320), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    is_admin: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    is_active: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=True, server_default=true()
    )
    # Access tokens issued before this instant are refused (set when the password
    # changes, so a stolen session ends with the password change, not 15 min later).
    tokens_valid_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    def __repr__(self) -> str:
        return f"User(id={self.id}, email={self.email!r})"


# E-mail addresses are unique regardless of case ("Ann@x.org" == "ann@x.org"). The app
# stores them lower-cased as well; this index makes the rule hold for any writer.
Index("uq_users_email_lower", func.lower(User.email), unique=True)


class RefreshToken(UUIDPrimaryKeyMixin, CreatedAtMixin, Base):
    """A refresh token that was handed out. Only its SHA-256 is stored.

    ``id`` is the token's ``jti`` claim. A token is usable while ``revoked_at`` is
    null and ``expires_at`` is in the future; refreshing revokes it and issues a new
    one (rotation). Presenting a revoked token again means it leaked: all the
    user's tokens are then revoked.
    """

    __tablename__ = "refresh_tokens"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LoginThrottle(Base):
    """Failed logins per e-mail address, so guessing one account's password is slowed
    down whatever the number of IPs guessing (nginx limits per IP only).

    Keyed by the SHA-256 of the normalised address, for unknown addresses too: a
    locked-out answer then says nothing about whether the account exists. The row
    goes away at the next successful login.
    """

    __tablename__ = "login_throttles"

    email_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class PasswordResetToken(UUIDPrimaryKeyMixin, CreatedAtMixin, Base):
    """A password-reset link sent by e-mail. Only the token's SHA-256 is stored; it
    works once (``used_at``) and until ``expires_at``."""

    __tablename__ = "password_reset_tokens"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

"""Accounts: registration, login, token rotation and logout.

Routes stay thin; the rules live here:
* e-mail addresses are stored lower-cased and compared case-insensitively;
* an unknown e-mail costs the same argon2 time as a wrong password;
* a stored hash with outdated argon2 parameters is replaced on successful login;
* refresh tokens rotate: each refresh revokes the presented token and issues a new
  pair; presenting an already revoked token revokes every token of that user
  (the token was stolen, or the client is confused; either way, log in again).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.security import (
    InvalidTokenError,
    create_access_token,
    create_refresh_token,
    decode_token,
    hash_password_async,
    token_digest,
    verify_dummy_password_async,
    verify_password_async,
)
from app.models.user import RefreshToken, User
from app.schemas.auth import TokenPair


class EmailAlreadyRegisteredError(Exception):
    """An account with this e-mail address exists."""


class AuthenticationError(Exception):
    """Credentials or token rejected; the message is safe to show."""


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(func.lower(User.email) == email.lower()))


async def register_user(
    session: AsyncSession, email: str, password: str, *, is_admin: bool = False
) -> User:
    """Create and commit a user; raises EmailAlreadyRegisteredError."""
    if await get_user_by_email(session, email) is not None:
        raise EmailAlreadyRegisteredError(email)
    user = User(
        email=email.lower(),
        password_hash=await hash_password_async(password),
        is_admin=is_admin,
    )
    session.add(user)
    try:
        await session.commit()
    except IntegrityError as error:  # two registrations racing for the same address
        await session.rollback()
        if await get_user_by_email(session, email) is not None:
            raise EmailAlreadyRegisteredError(email) from error
        raise
    return user


async def authenticate(session: AsyncSession, email: str, password: str) -> User:
    """The active user with these credentials, or AuthenticationError (same message for all)."""
    user = await get_user_by_email(session, email)
    if user is None:
        await verify_dummy_password_async(password)
        raise AuthenticationError("Incorrect e-mail or password")
    valid, new_hash = await verify_password_async(password, user.password_hash)
    if not valid or not user.is_active:
        raise AuthenticationError("Incorrect e-mail or password")
    if new_hash is not None:
        user.password_hash = new_hash
        await session.commit()
    return user


async def issue_token_pair(session: AsyncSession, user: User, settings: Settings) -> TokenPair:
    """A new access token and a new (stored) refresh token for ``user``; commits.

    Expired tokens of the user are deleted on the way: they can no longer be used
    nor reused, so keeping them only grows the table.
    """
    await session.execute(
        delete(RefreshToken).where(
            RefreshToken.user_id == user.id, RefreshToken.expires_at < func.now()
        )
    )
    token_id = uuid.uuid4()
    refresh_token, expires_at = create_refresh_token(user.id, token_id, settings)
    session.add(
        RefreshToken(
            id=token_id,
            user_id=user.id,
            token_hash=token_digest(refresh_token),
            expires_at=expires_at,
        )
    )
    await session.commit()
    access_token, expires_in = create_access_token(user.id, settings)
    return TokenPair(access_token=access_token, refresh_token=refresh_token, expires_in=expires_in)


async def _revoke(session: AsyncSession, refresh_token: str, settings: Settings) -> RefreshToken:
    """Atomically revoke a valid refresh token and return its row.

    The UPDATE ... WHERE revoked_at IS NULL makes two concurrent uses of the same
    token race in the database: exactly one wins, the other counts as reuse.
    """
    try:
        claims = decode_token(refresh_token, settings, "refresh")
    except InvalidTokenError as error:
        raise AuthenticationError(str(error)) from None
    digest = token_digest(refresh_token)
    now = datetime.now(UTC)
    revoked = await session.scalar(
        update(RefreshToken)
        .where(
            RefreshToken.token_hash == digest,
            RefreshToken.id == claims.token_id,
            RefreshToken.revoked_at.is_(None),
            RefreshToken.expires_at > now,
        )
        .values(revoked_at=now)
        .returning(RefreshToken)
    )
    if revoked is not None:
        return revoked
    known = await session.scalar(select(RefreshToken).where(RefreshToken.token_hash == digest))
    if known is not None and known.revoked_at is not None:
        # Reuse of a revoked token: assume theft and end every session of this user.
        await revoke_all_tokens(session, known.user_id)
        await session.commit()
        raise AuthenticationError("Refresh token was already used; please log in again")
    raise AuthenticationError("Refresh token is not valid")


async def rotate_refresh_token(
    session: AsyncSession, refresh_token: str, settings: Settings
) -> TokenPair:
    """Exchange a refresh token for a new pair (the old token is revoked)."""
    row = await _revoke(session, refresh_token, settings)
    user = await session.get(User, row.user_id)
    if user is None or not user.is_active:
        await session.commit()
        raise AuthenticationError("Account is disabled")
    return await issue_token_pair(session, user, settings)


async def logout(session: AsyncSession, refresh_token: str, settings: Settings) -> None:
    """Revoke a refresh token (logging out that device).

    Idempotent: logging out twice (a double click, a retried request) is not treated
    as token reuse. The token must still carry a valid signature.
    """
    try:
        decode_token(refresh_token, settings, "refresh")
    except InvalidTokenError as error:
        raise AuthenticationError(str(error)) from None
    await session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.token_hash == token_digest(refresh_token),
            RefreshToken.revoked_at.is_(None),
        )
        .values(revoked_at=func.now())
    )
    await session.commit()


async def revoke_all_tokens(session: AsyncSession, user_id: uuid.UUID) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )


async def create_or_promote_admin(
    session: AsyncSession, email: str, password: str | None
) -> tuple[User, bool]:
    """Make ``email`` an admin: create the account (needs ``password``) or promote it.

    Returns (user, created). An existing account keeps its password.
    """
    user = await get_user_by_email(session, email)
    if user is not None:
        user.is_admin = True
        user.is_active = True
        await session.commit()
        return user, False
    if password is None:
        raise ValueError("a password is needed to create a new account")
    return await register_user(session, email, password, is_admin=True), True

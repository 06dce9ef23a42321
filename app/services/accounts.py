"""Accounts: registration, login, token rotation, logout, password change and reset.

Routes stay thin; the rules live here:
* e-mail addresses are stored lower-cased and compared case-insensitively;
* an unknown e-mail costs the same argon2 time as a wrong password;
* a stored hash with outdated argon2 parameters is replaced on successful login;
* registration answers the same whether the address is taken or not (and hashes the
  password either way), so it does not tell who has an account;
* failed logins are counted per address, in the database (``LoginThrottle``): after
  LOGIN_MAX_FAILURES the address is locked for a while, doubling with each further
  failure; unknown addresses are counted the same way;
* changing or resetting the password revokes every refresh token and every access
  token issued before (``User.tokens_valid_after``);
* refresh tokens rotate: each refresh revokes the presented token and issues a new
  pair; presenting an already revoked token revokes every token of that user
  (the token was stolen, or the client is confused; either way, log in again).
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
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
from app.models.user import LoginThrottle, PasswordResetToken, RefreshToken, User
from app.schemas.auth import TokenPair


class EmailAlreadyRegisteredError(Exception):
    """An account with this e-mail address exists."""


class AuthenticationError(Exception):
    """Credentials or token rejected; the message is safe to show."""


class LoginLocked(Exception):
    """Too many failed logins for this address; try again in ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many failed logins for this address; try again in {retry_after} seconds"
        )
        self.retry_after = retry_after


class InvalidResetToken(Exception):
    """The reset link is unknown, used or expired."""


def email_digest(email: str) -> str:
    return token_digest(email.strip().lower())


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


async def register_quietly(session: AsyncSession, email: str, password: str) -> bool:
    """Create the account unless the address is taken; True if it was created.

    The password is hashed first in both cases, so the answer takes as long either way.
    """
    password_hash = await hash_password_async(password)
    if await get_user_by_email(session, email) is not None:
        return False
    session.add(User(email=email.lower(), password_hash=password_hash))
    try:
        await session.commit()
    except IntegrityError:  # two registrations racing for the same address
        await session.rollback()
        return False
    return True


async def authenticate(
    session: AsyncSession, email: str, password: str, settings: Settings
) -> User:
    """The active user with these credentials, or AuthenticationError (same message for
    all), or LoginLocked while the address is locked out (checked before the password)."""
    digest = email_digest(email)
    throttle = await session.get(LoginThrottle, digest)
    now = datetime.now(UTC)
    if throttle is not None and throttle.locked_until is not None and throttle.locked_until > now:
        raise LoginLocked(max(1, int((throttle.locked_until - now).total_seconds() + 0.999)))
    user = await get_user_by_email(session, email)
    if user is None:
        await verify_dummy_password_async(password)
        valid, new_hash = False, None
    else:
        valid, new_hash = await verify_password_async(password, user.password_hash)
    if user is None or not valid or not user.is_active:
        await _count_failure(session, digest, settings)
        raise AuthenticationError("Incorrect e-mail or password")
    if throttle is not None:
        await session.delete(throttle)
    if new_hash is not None:
        user.password_hash = new_hash
    await session.commit()
    return user


async def _count_failure(session: AsyncSession, digest: str, settings: Settings) -> None:
    """One more failure for ``digest`` (atomic across processes); lock it past the limit."""
    now = datetime.now(UTC)
    failures = await session.scalar(
        insert(LoginThrottle)
        .values(email_digest=digest, failures=1, updated_at=now)
        .on_conflict_do_update(
            index_elements=[LoginThrottle.email_digest],
            set_={"failures": LoginThrottle.failures + 1, "updated_at": now},
        )
        .returning(LoginThrottle.failures)
    )
    assert failures is not None
    over = failures - settings.login_max_failures
    if over >= 0:
        seconds = min(
            settings.login_lockout_seconds * 2 ** min(over, 30), settings.login_lockout_max_seconds
        )
        await session.execute(
            update(LoginThrottle)
            .where(LoginThrottle.email_digest == digest)
            .values(locked_until=now + timedelta(seconds=seconds))
        )
    await session.commit()


async def change_password(
    session: AsyncSession, user: User, current_password: str, new_password: str, settings: Settings
) -> TokenPair:
    """Set a new password (the current one must be right); every other session ends.
    Returns a fresh token pair for the session that made the change."""
    valid, _ = await verify_password_async(current_password, user.password_hash)
    if not valid:
        raise AuthenticationError("The current password is not correct")
    await _set_password(session, user, new_password)
    return await issue_token_pair(session, user, settings)


async def _set_password(session: AsyncSession, user: User, new_password: str) -> None:
    user.password_hash = await hash_password_async(new_password)
    user.tokens_valid_after = datetime.now(UTC)
    await revoke_all_tokens(session, user.id)
    await session.execute(
        delete(LoginThrottle).where(LoginThrottle.email_digest == email_digest(user.email))
    )


@dataclass(frozen=True)
class ResetLink:
    email: str
    token: str


async def create_reset_token(
    session: AsyncSession, email: str, settings: Settings
) -> ResetLink | None:
    """A single-use reset token for the active account of ``email`` (None: no such
    account; the caller answers the same either way). Only its digest is stored."""
    user = await get_user_by_email(session, email)
    if user is None or not user.is_active:
        return None
    token = secrets.token_urlsafe(32)
    session.add(
        PasswordResetToken(
            user_id=user.id,
            token_hash=token_digest(token),
            expires_at=datetime.now(UTC) + timedelta(minutes=settings.password_reset_minutes),
        )
    )
    await session.commit()
    return ResetLink(email=user.email, token=token)


async def reset_password(session: AsyncSession, token: str, new_password: str) -> None:
    """Use a reset token (once, before it expires) to set a new password; every session
    of the account ends, and its other reset tokens stop working."""
    now = datetime.now(UTC)
    row = await session.scalar(
        update(PasswordResetToken)
        .where(
            PasswordResetToken.token_hash == token_digest(token),
            PasswordResetToken.used_at.is_(None),
            PasswordResetToken.expires_at > now,
        )
        .values(used_at=now)
        .returning(PasswordResetToken)
    )
    user = None if row is None else await session.get(User, row.user_id)
    if user is None or not user.is_active:
        await session.rollback()
        raise InvalidResetToken("This reset link is not valid (used, expired or mistyped)")
    await session.execute(
        update(PasswordResetToken)
        .where(PasswordResetToken.user_id == user.id, PasswordResetToken.used_at.is_(None))
        .values(used_at=now)
    )
    await _set_password(session, user, new_password)
    await session.commit()


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

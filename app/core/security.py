"""Passwords (argon2 via pwdlib) and tokens (JWT HS256 via PyJWT).

Passwords
    ``hash_password`` / ``verify_password``. Verification also tells when the stored
    hash uses outdated argon2 parameters, so login can store a fresh hash
    (rehash-on-login). ``verify_dummy_password`` burns the same time as a real
    check and is used when the e-mail is unknown, so response time does not reveal
    which e-mail addresses have accounts.

Tokens
    Both token kinds are JWTs signed with SECRET_KEY and carry ``sub`` (user id),
    ``type`` ("access" or "refresh"), ``iat`` and ``exp``; refresh tokens also carry
    ``jti`` (the id of their ``refresh_tokens`` row). ``decode_token`` checks the
    signature, expiry and the expected type, so a refresh token can never be used
    as an access token or the other way round.

Argon2 hashing takes tens of milliseconds of CPU on purpose; the ``*_async``
variants run it in a worker thread so the event loop keeps serving other requests.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from starlette.concurrency import run_in_threadpool

from app.core.config import Settings

TokenType = Literal["access", "refresh"]
_WRONG_TYPE_MESSAGES: dict[TokenType, str] = {
    "access": "Not an access token",
    "refresh": "Not a refresh token",
}
JWT_ALGORITHM = "HS256"

# argon2id with the first of OWASP's recommended parameter sets (19 MiB, 2 passes,
# 1 lane). argon2-cffi's defaults (64 MiB, 3 passes, 4 lanes) cost ~3x the memory and
# time, which on a small 2-core VPS turns a burst of logins into a denial of service.
# Changing these values is safe: stored hashes are upgraded at the next login.
ARGON2_PARAMETERS = {"time_cost": 2, "memory_cost": 19 * 1024, "parallelism": 1}
password_hasher = PasswordHash((Argon2Hasher(**ARGON2_PARAMETERS),))

# A real hash of a random password, computed once, verified against when the
# e-mail is unknown (its result is always False).
_dummy_hash: str | None = None


class InvalidTokenError(Exception):
    """The token is malformed, forged, expired or of the wrong type."""


@dataclass(frozen=True)
class TokenClaims:
    user_id: uuid.UUID
    token_type: TokenType
    issued_at: datetime
    expires_at: datetime
    token_id: uuid.UUID | None  # jti; set on refresh tokens


# --- passwords -------------------------------------------------------------------------
def hash_password(password: str) -> str:
    return password_hasher.hash(password)


def verify_password(password: str, password_hash: str) -> tuple[bool, str | None]:
    """Check ``password``; returns (valid, new_hash_if_parameters_changed)."""
    try:
        return password_hasher.verify_and_update(password, password_hash)
    except Exception:  # an unreadable stored hash is a failed login, not a 500
        return False, None


def verify_dummy_password(password: str) -> None:
    """Spend the time of a real verification, for unknown e-mail addresses."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = hash_password(secrets.token_urlsafe(16))
    password_hasher.verify(password, _dummy_hash)


async def hash_password_async(password: str) -> str:
    return await run_in_threadpool(hash_password, password)


async def verify_password_async(password: str, password_hash: str) -> tuple[bool, str | None]:
    return await run_in_threadpool(verify_password, password, password_hash)


async def verify_dummy_password_async(password: str) -> None:
    await run_in_threadpool(verify_dummy_password, password)


# --- tokens ----------------------------------------------------------------------------
def _encode(claims: dict[str, object], settings: Settings) -> str:
    return jwt.encode(claims, settings.secret_key.get_secret_value(), algorithm=JWT_ALGORITHM)


def create_access_token(
    user_id: uuid.UUID, settings: Settings, *, lifetime: timedelta | None = None
) -> tuple[str, int]:
    """A signed access token and its lifetime in seconds."""
    lifetime = (
        lifetime if lifetime is not None else timedelta(minutes=settings.access_token_minutes)
    )
    now = datetime.now(UTC)
    token = _encode(
        # "iat" with microseconds: a password change refuses tokens issued before it,
        # and the new pair issued right after it must not fall into the same second.
        {"sub": str(user_id), "type": "access", "iat": now.timestamp(), "exp": now + lifetime},
        settings,
    )
    return token, int(lifetime.total_seconds())


def create_refresh_token(
    user_id: uuid.UUID, token_id: uuid.UUID, settings: Settings
) -> tuple[str, datetime]:
    """A signed refresh token for the ``refresh_tokens`` row ``token_id`` and its expiry."""
    now = datetime.now(UTC)
    expires_at = now + timedelta(days=settings.refresh_token_days)
    token = _encode(
        {
            "sub": str(user_id),
            "type": "refresh",
            "jti": str(token_id),
            "iat": now,
            "exp": expires_at,
        },
        settings,
    )
    return token, expires_at


def decode_token(token: str, settings: Settings, expected_type: TokenType) -> TokenClaims:
    """Verify ``token`` and return its claims, or raise InvalidTokenError."""
    try:
        claims = jwt.decode(
            token,
            settings.secret_key.get_secret_value(),
            algorithms=[JWT_ALGORITHM],
            options={"require": ["sub", "type", "iat", "exp"]},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidTokenError("Token has expired") from None
    except jwt.PyJWTError:
        raise InvalidTokenError("Token is invalid") from None
    if claims.get("type") != expected_type:
        raise InvalidTokenError(_WRONG_TYPE_MESSAGES[expected_type])
    try:
        user_id = uuid.UUID(str(claims["sub"]))
        token_id = uuid.UUID(str(claims["jti"])) if "jti" in claims else None
    except ValueError:
        raise InvalidTokenError("Token is invalid") from None
    if expected_type == "refresh" and token_id is None:
        raise InvalidTokenError("Token is invalid")
    return TokenClaims(
        user_id=user_id,
        token_type=expected_type,
        issued_at=datetime.fromtimestamp(claims["iat"], UTC),
        expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        token_id=token_id,
    )


def token_digest(token: str) -> str:
    """SHA-256 hex digest of a token: what the database stores instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()

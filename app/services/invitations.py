"""Invitations for REGISTRATION_MODE=invite-only: an admin invites an e-mail address.

An invitation is a token signed with SECRET_KEY (a JWT of type "invite" naming the
address and an expiry), so nothing is stored: it is valid for that one address until
it expires, and it is spent once the address has an account (an address registers
once). Its type keeps it from ever being accepted as an access or refresh token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from app.core.config import Settings

INVITE_TYPE = "invite"
_ALGORITHM = "HS256"


class InvalidInvitation(ValueError):
    """The invitation is missing, forged, expired or for another address (answered 403)."""


@dataclass(frozen=True)
class Invitation:
    email: str
    token: str
    expires_at: datetime


def create_invitation(settings: Settings, email: str) -> Invitation:
    """An invitation for ``email`` (already normalised), valid INVITATION_DAYS."""
    now = datetime.now(UTC)
    expires_at = now + timedelta(days=settings.invitation_days)
    token = jwt.encode(
        {"type": INVITE_TYPE, "email": email, "iat": now, "exp": expires_at},
        settings.secret_key.get_secret_value(),
        algorithm=_ALGORITHM,
    )
    return Invitation(email=email, token=token, expires_at=expires_at.replace(microsecond=0))


def check_invitation(settings: Settings, token: str | None, email: str) -> None:
    """Raise InvalidInvitation unless ``token`` invites ``email`` and has not expired."""
    if not token:
        raise InvalidInvitation(
            "Registration is by invitation only: ask an administrator for an invitation."
        )
    try:
        claims = jwt.decode(
            token,
            settings.secret_key.get_secret_value(),
            algorithms=[_ALGORITHM],
            options={"require": ["type", "email", "exp"]},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidInvitation("This invitation has expired: ask for a new one.") from None
    except jwt.InvalidTokenError:
        raise InvalidInvitation("This invitation is not valid.") from None
    if claims.get("type") != INVITE_TYPE:
        raise InvalidInvitation("This invitation is not valid.")
    if claims.get("email") != email:
        raise InvalidInvitation("This invitation is for another e-mail address.")

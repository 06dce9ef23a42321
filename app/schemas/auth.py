"""Request/response bodies of /api/auth."""

from __future__ import annotations

from typing import Annotated, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from app.schemas.types import NO_NUL_PATTERN, text

PASSWORD_MIN_LENGTH = 10
PASSWORD_MAX_LENGTH = 256  # argon2 takes any length; the cap keeps hashing cost bounded


def _validate_email(value: str) -> str:
    """A syntactically valid address, normalised and lower-cased.

    Unlike pydantic's EmailStr, intranet domains without a public suffix
    (``ann@wiki.internal``) and the reserved ``.test`` domain used by demos
    (``demo@knowledgetree.test``) are accepted: a self-hosted appliance often lives on
    an intranet, and it never sends mail to these addresses. No DNS lookups are made.
    """
    try:
        result = validate_email(
            value, check_deliverability=False, globally_deliverable=False, test_environment=True
        )
    except EmailNotValidError as error:
        raise ValueError(f"value is not a valid e-mail address: {error}") from None
    return result.normalized.lower()


Email = Annotated[
    str,
    StringConstraints(pattern=NO_NUL_PATTERN, max_length=320),
    Field(json_schema_extra={"format": "email"}),
    AfterValidator(_validate_email),
]
NewPassword = text(
    min_length=PASSWORD_MIN_LENGTH,
    max_length=PASSWORD_MAX_LENGTH,
    description=f"At least {PASSWORD_MIN_LENGTH} characters.",
)
Password = text(min_length=1, max_length=PASSWORD_MAX_LENGTH)
Token = text(min_length=1, max_length=4096)


class RegisterRequest(BaseModel):
    email: Email
    password: NewPassword
    invitation: Token | None = Field(
        default=None,
        description="Needed when REGISTRATION_MODE is invite-only: the token of an invitation "
        "for this address (POST /api/invitations).",
    )


class LoginRequest(BaseModel):
    email: Email
    password: Password


class RefreshRequest(BaseModel):
    refresh_token: Token


class LogoutRequest(RefreshRequest):
    pass


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type
    expires_in: int = Field(description="Seconds until the access token expires.")


class PasswordChangeRequest(BaseModel):
    current_password: Password
    new_password: NewPassword


class PasswordResetRequest(BaseModel):
    email: Email


class PasswordResetConfirm(BaseModel):
    token: Token
    new_password: NewPassword


class Accepted(BaseModel):
    """An answer that is the same whatever the outcome (so it reveals nothing)."""

    detail: str

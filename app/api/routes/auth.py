"""/api/auth: register, login, refresh, logout, me, password change and reset."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, BackgroundTasks, HTTPException, status
from starlette.concurrency import run_in_threadpool

from app.api.deps import CurrentUser, SessionDep, SettingsDep, unauthorized
from app.schemas.auth import (
    Accepted,
    LoginRequest,
    LogoutRequest,
    PasswordChangeRequest,
    PasswordResetConfirm,
    PasswordResetRequest,
    RefreshRequest,
    RegisterRequest,
    TokenPair,
)
from app.schemas.user import UserRead
from app.services import accounts, invitations, mail

router = APIRouter(prefix="/auth", tags=["auth"])


REGISTERED = (
    "If this address has no account yet, it has one now: log in with it. "
    "If it had one, nothing changed (use 'forgot password' if needed)."
)
RESET_SUBJECT = "Reset your KnowledgeTree password"
RESET_REQUESTED = (
    "If an account uses this address, a link to set a new password is on its way "
    "(valid {minutes} minutes)."
)


@router.post(
    "/register",
    response_model=Accepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        403: {"description": "Registration is closed, or invite-only without a valid invitation"}
    },
)
async def register(body: RegisterRequest, session: SessionDep, settings: SettingsDep) -> Accepted:
    """The same answer, after the same work, whether the address already has an account:
    registration does not tell who has one."""
    mode = settings.effective_registration_mode  # REGISTRATION_MODE
    if mode == "closed":
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail="Registration is closed; ask an administrator for an account",
        )
    if mode == "invite-only":
        try:
            invitations.check_invitation(settings, body.invitation, body.email)
        except invitations.InvalidInvitation as error:
            raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=str(error)) from None
    await accounts.register_quietly(session, body.email, body.password)
    return Accepted(detail=REGISTERED)


@router.post(
    "/login",
    response_model=TokenPair,
    responses={
        401: {"description": "Bad login"},
        429: {"description": "Too many failed logins for this address (see Retry-After)"},
    },
)
async def login(body: LoginRequest, session: SessionDep, settings: SettingsDep) -> TokenPair:
    try:
        user = await accounts.authenticate(session, body.email, body.password, settings)
    except accounts.LoginLocked as error:
        raise HTTPException(
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            detail=str(error),
            headers={"Retry-After": str(error.retry_after)},
        ) from None
    except accounts.AuthenticationError as error:
        raise unauthorized(str(error)) from None
    return await accounts.issue_token_pair(session, user, settings)


@router.post(
    "/password",
    response_model=TokenPair,
    responses={403: {"description": "The current password is not correct"}},
)
async def change_password(
    body: PasswordChangeRequest, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> TokenPair:
    """Set a new password. Every other session (refresh and access tokens) ends; the
    answer is a new token pair for this one."""
    try:
        return await accounts.change_password(
            session, user, body.current_password, body.new_password, settings
        )
    except accounts.AuthenticationError as error:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=str(error)) from None


@router.post(
    "/password-reset",
    response_model=Accepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses={503: {"description": "This server sends no e-mail (SMTP_HOST unset)"}},
)
async def request_password_reset(
    body: PasswordResetRequest,
    session: SessionDep,
    settings: SettingsDep,
    background: BackgroundTasks,
) -> Accepted:
    """E-mail a single-use link to set a new password. The same answer whether the
    address has an account; the mail leaves after the answer."""
    if not mail.mail_enabled(settings):
        raise HTTPException(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="This server cannot send e-mail; ask an administrator to reset it",
        )
    link = await accounts.create_reset_token(session, body.email, settings)
    if link is not None:
        url = f"{settings.public_url}/reset-password?token={quote(link.token)}"
        text = (
            f"Someone (hopefully you) asked to reset the KnowledgeTree password of "
            f"{link.email}.\n\nSet a new password here (valid "
            f"{settings.password_reset_minutes} minutes, once):\n{url}\n\n"
            "If it was not you, ignore this mail: your password stays as it is.\n"
        )
        background.add_task(
            run_in_threadpool, mail.send_mail_logged, settings, link.email, RESET_SUBJECT, text
        )
    return Accepted(detail=RESET_REQUESTED.format(minutes=settings.password_reset_minutes))


@router.post(
    "/password-reset/confirm",
    status_code=status.HTTP_204_NO_CONTENT,
    # 404: no valid link has this token (a made-up token is a request for nothing).
    responses={404: {"description": "The link is not valid (used, expired or mistyped)"}},
)
async def confirm_password_reset(body: PasswordResetConfirm, session: SessionDep) -> None:
    """Set a new password with the token of the e-mailed link; every session ends."""
    try:
        await accounts.reset_password(session, body.token, body.new_password)
    except accounts.InvalidResetToken as error:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=str(error)) from None


@router.post("/refresh", response_model=TokenPair, responses={401: {"description": "Bad token"}})
async def refresh(body: RefreshRequest, session: SessionDep, settings: SettingsDep) -> TokenPair:
    """Exchange a refresh token for a new pair; the presented token stops working."""
    try:
        return await accounts.rotate_refresh_token(session, body.refresh_token, settings)
    except accounts.AuthenticationError as error:
        raise unauthorized(str(error)) from None


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={401: {"description": "Not a valid refresh token"}},
)
async def logout(body: LogoutRequest, session: SessionDep, settings: SettingsDep) -> None:
    """Revoke the refresh token. The short-lived access token simply expires."""
    try:
        await accounts.logout(session, body.refresh_token, settings)
    except accounts.AuthenticationError as error:
        raise unauthorized(str(error)) from None


@router.get("/me", response_model=UserRead)
async def me(user: CurrentUser) -> UserRead:
    return UserRead.model_validate(user)

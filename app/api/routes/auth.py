"""/api/auth: register, login, refresh, logout, me."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from app.api.deps import CurrentUser, SessionDep, SettingsDep, unauthorized
from app.schemas.auth import LoginRequest, LogoutRequest, RefreshRequest, RegisterRequest, TokenPair
from app.schemas.user import UserRead
from app.services import accounts

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post(
    "/register",
    response_model=UserRead,
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "E-mail already registered"}},
)
async def register(body: RegisterRequest, session: SessionDep, settings: SettingsDep) -> UserRead:
    if not settings.registration_open:
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail="Registration is closed; ask an administrator for an account",
        )
    try:
        user = await accounts.register_user(session, body.email, body.password)
    except accounts.EmailAlreadyRegisteredError:
        raise HTTPException(
            status_code=status.HTTP_409_CONFLICT,
            detail="An account with this e-mail address already exists; log in instead",
        ) from None
    return UserRead.model_validate(user)


@router.post("/login", response_model=TokenPair, responses={401: {"description": "Bad login"}})
async def login(body: LoginRequest, session: SessionDep, settings: SettingsDep) -> TokenPair:
    try:
        user = await accounts.authenticate(session, body.email, body.password)
    except accounts.AuthenticationError as error:
        raise unauthorized(str(error)) from None
    return await accounts.issue_token_pair(session, user, settings)


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

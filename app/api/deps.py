"""FastAPI dependencies shared by the routes.

* ``SessionDep``: an AsyncSession for the request.
* ``SettingsDep``: the app's Settings (``app.state.settings``; tests may build apps
  with their own).
* ``CurrentUser``: the active user of a valid ``Authorization: Bearer <access token>``
  header; 401 with ``WWW-Authenticate: Bearer`` otherwise.
* ``OwnedProject``: the project named by the ``project_id`` path parameter if it
  belongs to the current user; 404 "Project not found" otherwise (also for other
  users' projects: answering 403 would reveal that the id exists).

Helpers the routes share: ``unauthorized`` (a 401 with ``WWW-Authenticate: Bearer``) and
``allowed_model`` (a requested model must be one of CHAT_ALLOWED_MODELS, else 422).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.db import get_session
from app.core.security import InvalidTokenError, decode_token
from app.models.project import Project
from app.models.user import User
from app.services import projects as project_service

SessionDep = Annotated[AsyncSession, Depends(get_session)]


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]

# auto_error=False: we answer 401 (not 403) ourselves when the header is missing.
_bearer = HTTPBearer(auto_error=False, description="Access token from POST /api/auth/login")


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": "Bearer"},
    )


async def get_current_user(
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    if credentials is None:
        raise unauthorized("Not authenticated")
    try:
        claims = decode_token(credentials.credentials, settings, "access")
    except InvalidTokenError as error:
        raise unauthorized(str(error)) from None
    user = await session.get(User, claims.user_id)
    if user is None or not user.is_active:
        raise unauthorized("Account not found or disabled")
    if user.tokens_valid_after is not None and claims.issued_at < user.tokens_valid_after:
        raise unauthorized("Session ended by a password change; log in again")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_current_admin(user: CurrentUser) -> User:
    if not user.is_admin:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="Admins only")
    return user


CurrentAdmin = Annotated[User, Depends(get_current_admin)]


async def get_owned_project(
    project_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> Project:
    project = await project_service.get_owned_project(session, user.id, project_id)
    if project is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="Project not found")
    return project


OwnedProject = Annotated[Project, Depends(get_owned_project)]


def allowed_model(requested: str | None, settings: Settings) -> str:
    """The model to answer with: ``requested`` if it is allowed (else a 422 naming the
    allowed ones, like any invalid body field), or CHAT_MODEL when none was asked for."""
    if requested is not None and requested not in settings.chat_allowed_models:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("body", "model"),
                    "msg": f"model must be one of: {', '.join(settings.chat_allowed_models)}",
                    "input": requested,
                }
            ]
        )
    return requested or settings.chat_model

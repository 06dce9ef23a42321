"""/api/admin: the admin page (users, registration mode, failed documents). Admins only:
anybody else gets 403 "Admins only" (invitations live in /api/invitations)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from app.api.deps import CurrentAdmin, SessionDep, SettingsDep
from app.schemas.admin import (
    AdminUserPage,
    AdminUserRead,
    AdminUserUpdate,
    FailedDocumentRead,
    RegistrationRead,
)
from app.schemas.types import NO_NUL_PATTERN
from app.services import admin

router = APIRouter(prefix="/admin", tags=["admin"], responses={403: {"description": "Admins only"}})


def _user_read(summary: admin.UserSummary) -> AdminUserRead:
    user = summary.user
    return AdminUserRead(
        id=user.id,
        email=user.email,
        is_admin=user.is_admin,
        is_active=user.is_active,
        created_at=user.created_at,
        plan=summary.plan,
        messages_used=summary.messages_used,
        messages_limit=summary.messages_limit,
        documents=summary.documents,
        storage_bytes=summary.storage_bytes,
    )


@router.get("/users", response_model=AdminUserPage)
async def list_users(
    _admin: CurrentAdmin,
    session: SessionDep,
    settings: SettingsDep,
    q: Annotated[
        str | None,
        Query(max_length=320, pattern=NO_NUL_PATTERN, description="Part of the e-mail address."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> AdminUserPage:
    """Users, newest first, with their plan, this period's model calls and documents."""
    summaries, total = await admin.list_users(
        session, settings, search=q or None, limit=limit, offset=offset
    )
    return AdminUserPage(items=[_user_read(s) for s in summaries], total=total)


@router.patch(
    "/users/{user_id}",
    response_model=AdminUserRead,
    responses={
        404: {"description": "No such user"},
        409: {"description": "An admin cannot disable their own account"},
    },
)
async def update_user(
    user_id: uuid.UUID,
    body: AdminUserUpdate,
    current: CurrentAdmin,
    session: SessionDep,
    settings: SettingsDep,
) -> AdminUserRead:
    """Disable (`is_active: false`) or enable an account. A disabled account cannot log
    in, its refresh tokens are revoked and its access tokens refused at once."""
    try:
        user = await admin.set_active(session, current, user_id, body.is_active)
    except admin.SelfDisable as error:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(error)) from None
    if user is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="User not found")
    summaries, _ = await admin.list_users(
        session, settings, search=None, limit=1, offset=0, user_id=user.id
    )
    return _user_read(summaries[0])


@router.get("/documents/failed", response_model=list[FailedDocumentRead])
async def failed_documents(
    _admin: CurrentAdmin,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[FailedDocumentRead]:
    """Documents whose processing failed, most recent first, with the reason and owner."""
    return [
        FailedDocumentRead(
            id=item.document.id,
            filename=item.document.filename,
            project_id=item.document.project_id,
            project_name=item.project_name,
            owner_email=item.owner_email,
            error=item.document.error,
            attempts=item.document.attempts,
            updated_at=item.document.updated_at,
        )
        for item in await admin.failed_documents(session, limit=limit)
    ]


@router.get("/registration", response_model=RegistrationRead)
async def registration(_admin: CurrentAdmin, settings: SettingsDep) -> RegistrationRead:
    """Who may sign up now (REGISTRATION_MODE)."""
    return RegistrationRead(mode=settings.effective_registration_mode)

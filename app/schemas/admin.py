"""Request/response bodies of /api/admin (admins only)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from app.core.config import RegistrationMode


class AdminUserRead(BaseModel):
    id: uuid.UUID
    email: str
    is_admin: bool
    is_active: bool
    created_at: datetime
    plan: str = Field(description="The plan's key (free, starter, pro, enterprise).")
    messages_used: int = Field(description="Model calls this billing period.")
    messages_limit: int | None = Field(description="The plan's allowance; null: no limit.")
    documents: int
    storage_bytes: int


class AdminUserPage(BaseModel):
    items: list[AdminUserRead]
    total: int = Field(description="Users matching the search, over all pages.")


class AdminUserUpdate(BaseModel):
    is_active: bool = Field(
        description="false disables the account: it cannot log in and its sessions end."
    )


class FailedDocumentRead(BaseModel):
    id: uuid.UUID
    filename: str
    project_id: uuid.UUID
    project_name: str
    owner_email: str
    error: str | None = Field(description="Why processing failed, in words for people.")
    attempts: int
    updated_at: datetime


class RegistrationRead(BaseModel):
    mode: RegistrationMode = Field(
        description="open, invite-only or closed: set by REGISTRATION_MODE in the server's "
        "configuration (a restart applies a change)."
    )

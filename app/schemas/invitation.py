"""Request/response bodies of /api/invitations (REGISTRATION_MODE=invite-only)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from app.schemas.auth import Email


class InvitationCreate(BaseModel):
    email: Email


class InvitationRead(BaseModel):
    email: str
    token: str = Field(description="Give it to the person: they register with it.")
    expires_at: datetime
    register_url: str = Field(description="PUBLIC_URL/register?invitation=<token>")

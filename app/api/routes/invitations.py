"""/api/invitations: admins invite people when REGISTRATION_MODE is invite-only."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, status

from app.api.deps import CurrentAdmin, SettingsDep
from app.schemas.invitation import InvitationCreate, InvitationRead
from app.services import invitations

router = APIRouter(prefix="/invitations", tags=["invitations"])


@router.post(
    "",
    response_model=InvitationRead,
    status_code=status.HTTP_201_CREATED,
    responses={403: {"description": "Admins only"}},
)
async def create_invitation(
    body: InvitationCreate, _admin: CurrentAdmin, settings: SettingsDep
) -> InvitationRead:
    """An invitation for one e-mail address, valid INVITATION_DAYS: the person registers
    with it (`invitation` in POST /api/auth/register). Works in every registration
    mode, so invitations can be sent before switching to invite-only."""
    invitation = invitations.create_invitation(settings, body.email)
    return InvitationRead(
        email=invitation.email,
        token=invitation.token,
        expires_at=invitation.expires_at,
        register_url=f"{settings.public_url}/register?invitation={quote(invitation.token)}",
    )

"""``knowledgetree invite EMAIL``: an invitation to register (REGISTRATION_MODE=invite-only).

Prints the invitation token and the link to send; the token is valid INVITATION_DAYS
for that address only. The same as POST /api/invitations, for an admin on the server.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import typer


def register(cli: typer.Typer) -> None:
    cli.command("invite")(invite)


def invite(
    email: Annotated[str, typer.Argument(help="The address of the person to invite.")],
) -> None:
    """Print an invitation to register for EMAIL (token and link)."""
    from pydantic import TypeAdapter, ValidationError

    from app.cli import fail, load_settings_or_exit
    from app.schemas.auth import Email
    from app.services.invitations import create_invitation

    settings = load_settings_or_exit()
    try:
        address = TypeAdapter(Email).validate_python(email)
    except ValidationError as error:
        raise fail(f"'{email}' {error.errors()[0]['msg']}", code=2) from None
    invitation = create_invitation(settings, address)
    if settings.registration_mode != "invite-only":
        typer.secho(
            f"Note: REGISTRATION_MODE is '{settings.registration_mode}', not 'invite-only'.",
            err=True,
            fg=typer.colors.YELLOW,
        )
    typer.echo(
        f"Invitation for {invitation.email}, valid until {invitation.expires_at:%Y-%m-%d %H:%M} UTC"
    )
    typer.echo(f"token: {invitation.token}")
    typer.echo(f"link:  {settings.public_url}/register?invitation={quote(invitation.token)}")

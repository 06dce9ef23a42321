"""The ``knowledgetree`` command.

Built-in commands: ``serve``, ``migrate``, ``create-admin``, ``check-config``. Other parts of the
app add theirs in their own module under ``app/commands/`` that defines
``register(cli: typer.Typer) -> None``; list that module in ``COMMAND_MODULES``
below. Keep heavy imports (torch, LlamaIndex) inside the command functions so
``knowledgetree --help`` stays instant.

Exit codes: 0 success, 1 the command failed, 2 invalid usage or configuration.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import SecretStr, TypeAdapter, ValidationError
from sqlalchemy.engine import make_url

from app.core.config import ConfigurationError, Settings, get_settings, load_settings
from app.schemas.auth import Email, NewPassword

# Modules under app/commands that add sub-commands (each has register(cli)).
COMMAND_MODULES: list[str] = ["app.commands.ingest", "app.commands.invite", "app.commands.release"]

cli = typer.Typer(
    name="knowledgetree",
    help="KnowledgeTree: self-hosted RAG chat over your documents.",
    no_args_is_help=True,
    add_completion=False,
)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` on stderr and return the Exit to raise."""
    typer.secho(message, err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def load_settings_or_exit() -> Settings:
    """The settings, or exit 2 with the readable configuration message."""
    try:
        return get_settings()
    except ConfigurationError as error:
        raise fail(str(error), code=2) from None


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
    graceful_timeout: Annotated[
        int,
        typer.Option(
            min=0,
            help="Seconds open requests and answer streams may run on after SIGTERM "
            "(a blue-green drain); the rest are then cancelled.",
        ),
    ] = 30,
) -> None:
    """Run the HTTP API with uvicorn."""
    import uvicorn

    settings = load_settings_or_exit()  # fail here, readably, not inside a worker
    # sse-starlette ends every open answer stream as soon as uvicorn gets SIGTERM; a
    # blue-green drain lets them finish (uvicorn cancels what is left after the timeout).
    from sse_starlette.sse import AppStatus

    AppStatus.disable_automatic_graceful_drain()
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        reload=reload,
        proxy_headers=True,  # behind nginx: trust X-Forwarded-* from 127.0.0.1
        log_level=settings.log_level.lower(),
        # uvicorn's loggers go through the app's JSON handler (app.core.logging), whose
        # access line names the route template; uvicorn's own would log raw query strings.
        log_config=None,
        access_log=False,
        # On SIGTERM uvicorn stops listening and lets open streams finish (the drain).
        timeout_graceful_shutdown=graceful_timeout,
    )


@cli.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "heads",
) -> None:
    """Apply database migrations (Alembic) up to the newest revision."""
    from app.core import migrations

    settings = load_settings_or_exit()
    try:
        migrations.upgrade(settings, revision)
    except Exception as error:
        raise fail(f"Migration failed: {error}") from None
    typer.echo(f"Database is at revision {', '.join(sorted(migrations.script_heads()))}.")


@cli.command("check-config")
def check_config(
    env_file: Annotated[
        Path | None,
        typer.Option(
            "--env-file",
            exists=True,
            dir_okay=False,
            readable=True,
            help="Check this .env file (plus the environment) instead of ./.env.",
        ),
    ] = None,
) -> None:
    """Validate the settings and print them (secrets masked); exit 2 if invalid.

    Deployment tools can validate a new .env before installing it, e.g. Ansible's
    ``template: ... validate: "knowledgetree check-config --env-file %s"``.
    """
    try:
        settings = load_settings(_env_file=env_file) if env_file else get_settings()
    except ConfigurationError as error:
        raise fail(str(error), code=2) from None
    for name, value in settings.model_dump().items():
        if isinstance(value, SecretStr):
            value = "********"
        elif name == "database_url":
            value = make_url(value).render_as_string(hide_password=True)
        typer.echo(f"{name.upper()}={value}")


def _stdin_is_a_terminal() -> bool:
    return sys.stdin.isatty()


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    # Without a terminal the prompt cannot hide what is typed: the password would echo.
    if not _stdin_is_a_terminal():
        raise fail(
            "No terminal to ask for the password without echoing it. Run it in a terminal "
            "(over ssh: `ssh -t HOST sudo knowledgetree create-admin EMAIL`), or pipe the "
            "password in with --password-stdin.",
            code=2,
        )
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


@cli.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Argument(help="E-mail address of the admin account.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create an admin account, or make an existing account an admin.

    The password is prompted for (or read from stdin with --password-stdin); an
    existing account keeps its password.
    """
    from app.core.db import standalone_session
    from app.services import accounts

    try:
        email = TypeAdapter(Email).validate_python(email)
    except ValidationError:
        raise fail(f"'{email}' is not a valid e-mail address.", code=2) from None
    settings = load_settings_or_exit()

    async def run() -> tuple[bool, bool]:
        async with standalone_session(settings) as session:
            exists = await accounts.get_user_by_email(session, email) is not None
            password = None
            if not exists:
                password = _read_password(password_stdin)
                try:
                    TypeAdapter(NewPassword).validate_python(password)
                except ValidationError as error:
                    raise fail(f"Password rejected: {error.errors()[0]['msg']}.", 2) from None
            _, created = await accounts.create_or_promote_admin(session, email, password)
            return exists, created

    _, created = asyncio.run(run())
    typer.echo(f"Created admin {email}." if created else f"{email} is now an admin.")


def _register_command_modules() -> None:
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(cli)


_register_command_modules()


def main() -> None:
    """Console-script entry point (``knowledgetree``)."""
    cli()

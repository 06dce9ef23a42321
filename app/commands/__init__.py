"""Sub-commands of ``knowledgetree`` contributed by parts of the app.

Each module here defines ``register(cli: typer.Typer) -> None`` (adding commands
with ``@cli.command(...)`` or ``cli.add_typer(...)``) and is listed in
``app.cli.COMMAND_MODULES``.
"""

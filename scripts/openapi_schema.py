"""Write the API's OpenAPI schema to frontend/src/api/openapi.json (the typed client's source).

    .venv/bin/python scripts/openapi_schema.py           # write it
    .venv/bin/python scripts/openapi_schema.py --check   # exit 1 if the committed copy is stale

The schema comes from the app factory itself, so no server, database or secret is needed
(throwaway DATABASE_URL and SECRET_KEY satisfy the settings; nothing connects).
`make api-client` runs this and turns the schema into frontend/src/api/schema.d.ts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "frontend" / "src" / "api" / "openapi.json"


def schema_text() -> str:
    os.environ.setdefault("SECRET_KEY", "openapi-schema-only-" + "x" * 32)
    os.environ.setdefault("DATABASE_URL", "postgresql+asyncpg://schema@localhost/unused")
    from app.main import create_app

    return json.dumps(create_app().openapi(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed file differs")
    options = parser.parse_args()
    text = schema_text()
    if options.check:
        if not TARGET.exists() or TARGET.read_text() != text:
            sys.exit(f"{TARGET.relative_to(ROOT)} is stale: run make api-client")
        return
    TARGET.write_text(text)
    print(f"wrote {TARGET.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

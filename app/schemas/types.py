"""The field types every request schema and query parameter is built from.

Each type says in the OpenAPI schema exactly what the server accepts, so a request
that is valid by the schema is accepted and one that is not is refused with 422
(never a 500 from the database, never a surprise 422):

* text never contains NUL (U+0000): Postgres cannot store it in a text column.
  Lone surrogates, the other thing UTF-8 cannot carry, are already refused by
  pydantic.
* a name (project, conversation, artifact title) must contain a visible character;
  surrounding whitespace is stripped. The pattern states it, so a name of only
  spaces is invalid by the schema as well as by the server.
* integers are bounded (a limit or an offset past 64 bits reached Postgres).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

# Whitespace as both the pattern and the stripping below understand it (ASCII only:
# the regex engines of pydantic, JSON Schema and the fuzzers agree on these).
_SPACE = "\t\n\x0b\x0c\r "
NO_NUL_PATTERN = r"^[^\x00]*$"
VISIBLE_PATTERN = r"^[^\x00]*[^\x00\t\n\x0b\x0c\r ][^\x00]*$"

# Database integers are 32-bit where the app stores positions and versions.
MAX_INT32 = 2**31 - 1
MAX_OFFSET = 1_000_000


def text(*, max_length: int, min_length: int = 0, description: str | None = None) -> object:
    """A string without NUL, kept as sent."""
    return Annotated[
        str,
        StringConstraints(pattern=NO_NUL_PATTERN, min_length=min_length, max_length=max_length),
        Field(description=description),
    ]


def visible_text(*, max_length: int, description: str | None = None) -> object:
    """A string without NUL that contains at least one visible character, kept as sent
    (a chat message, an artifact request)."""
    return Annotated[
        str,
        StringConstraints(pattern=VISIBLE_PATTERN, min_length=1, max_length=max_length),
        Field(description=description),
    ]


def name(*, max_length: int, description: str | None = None) -> object:
    """Like ``visible_text``, with surrounding whitespace stripped (a project name)."""
    return Annotated[
        str,
        StringConstraints(pattern=VISIBLE_PATTERN, min_length=1, max_length=max_length),
        AfterValidator(lambda value: value.strip(_SPACE)),
        Field(description=description),
    ]


Offset = Annotated[int, Field(ge=0, le=MAX_OFFSET, description="Items to skip.")]
VersionNumber = Annotated[int, Field(ge=1, le=MAX_INT32)]


def given(*fields: str, exactly_one: bool = False) -> dict[str, object]:
    """JSON Schema for "at least one (or exactly one) of ``fields`` is given, not null",
    for a model's ``json_schema_extra``: the rule its model validator enforces."""
    branches = [
        {"required": [field], "properties": {field: {"not": {"type": "null"}}}} for field in fields
    ]
    return {"oneOf" if exactly_one else "anyOf": branches}

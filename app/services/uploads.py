"""Receive uploaded files by streaming the multipart body straight to disk.

Starlette's form parsing would read the whole request (spooling files) before the
route sees any of it, so a 2 GB upload would be accepted in full before being refused.
Here the body is parsed as it arrives (python-multipart's streaming parser): each file
part is written to ``DATA_DIR/uploads/.incoming/`` while its size and SHA-256 are
counted, and the request is refused with 413 the moment a file passes
``MAX_UPLOAD_MB`` or the number of files passes ``MAX_FILES_PER_UPLOAD``. Nothing
received so far is kept when a request is refused: ``discard`` removes the partial
files.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from fastapi import Request, status
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from app.core.config import Settings

UPLOAD_FIELD = "files"
# Room for multipart boundaries and part headers when judging Content-Length up front.
_MULTIPART_OVERHEAD = 64 * 1024


class UploadRejected(Exception):
    """The request's files are refused; ``status_code`` and ``message`` go to the client."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass
class StagedFile:
    """One received file, complete on disk but not yet a document."""

    filename: str
    path: Path
    size: int = 0
    sha256: str = ""
    _hash: hashlib._Hash = field(default_factory=hashlib.sha256, repr=False)
    _handle: IO[bytes] | None = field(default=None, repr=False)


def incoming_dir(settings: Settings) -> Path:
    return settings.uploads_dir / ".incoming"


def safe_filename(raw: str) -> str:
    """The file's base name without directories or control characters (max 255 chars)."""
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r"[\x00-\x1f\x7f]", "", name).strip().lstrip(".") or "upload"
    if len(name) > 255:
        stem, dot, suffix = name.rpartition(".")
        name = (stem[: 254 - len(suffix)] + dot + suffix) if dot and len(suffix) < 20 else name
        name = name[:255]
    return name


def discard(files: list[StagedFile]) -> None:
    """Remove staged files (a refused request keeps nothing)."""
    for staged in files:
        if staged._handle is not None:
            staged._handle.close()
        staged.path.unlink(missing_ok=True)


async def receive_files(request: Request, settings: Settings) -> list[StagedFile]:
    """Stream the request's ``files`` parts to disk; raise ``UploadRejected`` on bad input."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise UploadRejected(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"Send the files as multipart/form-data, one or more parts named '{UPLOAD_FIELD}'.",
        )
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length")
    most = settings.max_files_per_upload * (limit + _MULTIPART_OVERHEAD)
    if declared and declared.isdigit() and int(declared) > most:
        raise UploadRejected(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"The upload is too large: at most {settings.max_files_per_upload} files of "
            f"{settings.max_upload_mb} MiB each.",
        )

    directory = incoming_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    files: list[StagedFile] = []
    part: dict[str, object] = {}
    header_name = bytearray()
    header_value = bytearray()

    def on_part_begin() -> None:
        part.clear()
        part["headers"] = {}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_name.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        part["headers"][bytes(header_name).lower()] = bytes(header_value)  # type: ignore[index]
        header_name.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        headers: dict[bytes, bytes] = part["headers"]  # type: ignore[assignment]
        _, options = parse_options_header(headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" not in options:
            raise UploadRejected(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"Unexpected form field '{name}': send only files, in parts named "
                f"'{UPLOAD_FIELD}'.",
            )
        if name != UPLOAD_FIELD:
            raise UploadRejected(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"Files must be sent in parts named '{UPLOAD_FIELD}', not '{name}'.",
            )
        if len(files) >= settings.max_files_per_upload:
            raise UploadRejected(
                status.HTTP_413_CONTENT_TOO_LARGE,
                f"Too many files: at most {settings.max_files_per_upload} per upload.",
            )
        filename = safe_filename(options[b"filename"].decode("utf-8", "replace"))
        staged = StagedFile(filename=filename, path=directory / f"{uuid.uuid4()}.part")
        staged._handle = staged.path.open("wb")
        files.append(staged)
        part["file"] = staged

    def on_part_data(data: bytes, start: int, end: int) -> None:
        staged: StagedFile = part["file"]  # type: ignore[assignment]
        piece = data[start:end]
        staged.size += len(piece)
        if staged.size > limit:
            raise UploadRejected(
                status.HTTP_413_CONTENT_TOO_LARGE,
                f"'{staged.filename}' is larger than the limit of {settings.max_upload_mb} MiB.",
            )
        staged._hash.update(piece)
        assert staged._handle is not None
        staged._handle.write(piece)

    def on_part_end() -> None:
        staged: StagedFile = part["file"]  # type: ignore[assignment]
        assert staged._handle is not None
        staged._handle.close()
        staged._handle = None
        staged.sha256 = staged._hash.hexdigest()

    parser = MultipartParser(
        params[b"boundary"],
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
        },
    )
    try:
        async for piece in request.stream():
            parser.write(piece)
        parser.finalize()
    except UploadRejected:
        discard(files)
        raise
    except FormParserError:
        discard(files)
        raise UploadRejected(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "The multipart body is malformed."
        ) from None
    except BaseException:
        discard(files)  # client went away, or we are shutting down
        raise
    if not files:
        raise UploadRejected(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"No file in the request: send one or more parts named '{UPLOAD_FIELD}'.",
        )
    if any(staged._handle is not None for staged in files):  # body ended mid-file
        discard(files)
        raise UploadRejected(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "The multipart body ended in the middle of a file.",
        )
    return files

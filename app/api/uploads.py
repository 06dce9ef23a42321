"""Receiving uploaded files over HTTP: the multipart body streamed straight to disk.

Starlette's form parsing would read the whole request (spooling files) before the route
sees any of it, so a 2 GB upload would be accepted in full before being refused. Here
the body is parsed as it arrives (python-multipart's streaming parser): each file part
is written to ``DATA_DIR/uploads/.incoming/`` while its size and SHA-256 are counted,
and the request is refused the moment a file passes ``MAX_UPLOAD_MB`` or the number of
files passes ``MAX_FILES_PER_UPLOAD``. A refused request keeps nothing received so far.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import uuid
from collections.abc import AsyncIterable
from pathlib import Path
from typing import IO

from fastapi import HTTPException, Request, status
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from app.core.config import Settings
from app.services.uploads import (
    RejectReason,
    StagedFile,
    UploadRejected,
    discard,
    incoming_dir,
    safe_filename,
)
from app.services.usage import DiskFull

UPLOAD_FIELD = "files"
# Room for multipart boundaries and part headers when judging Content-Length up front.
_MULTIPART_OVERHEAD = 64 * 1024

# The one place an upload refusal becomes an HTTP status.
REJECT_STATUS: dict[RejectReason, int] = {
    RejectReason.MALFORMED: status.HTTP_422_UNPROCESSABLE_CONTENT,
    RejectReason.EMPTY: status.HTTP_422_UNPROCESSABLE_CONTENT,
    RejectReason.TOO_LARGE: status.HTTP_413_CONTENT_TOO_LARGE,
    RejectReason.TOO_MANY_FILES: status.HTTP_413_CONTENT_TOO_LARGE,
    RejectReason.UNSUPPORTED_TYPE: status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
    RejectReason.CONCURRENT_DUPLICATE: status.HTTP_409_CONFLICT,
}


def http_error(error: UploadRejected) -> HTTPException:
    return HTTPException(REJECT_STATUS[error.reason], error.message)


def _malformed(message: str) -> UploadRejected:
    return UploadRejected(RejectReason.MALFORMED, message)


class MultipartReceiver:
    """Writes the ``files`` parts of one multipart body to ``directory`` as they arrive.

    python-multipart calls the ``on_*`` methods while ``receive`` feeds it the body; the
    part being received is ``_staged`` (its open file ``_handle``, its running ``_hash``).
    """

    def __init__(self, settings: Settings, boundary: bytes, directory: Path) -> None:
        self.settings = settings
        self.directory = directory
        self.files: list[StagedFile] = []
        self._part_headers: dict[bytes, bytes] = {}
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._staged: StagedFile | None = None
        self._handle: IO[bytes] | None = None
        self._hash = hashlib.sha256()
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self.on_part_begin,
                "on_header_field": self.on_header_field,
                "on_header_value": self.on_header_value,
                "on_header_end": self.on_header_end,
                "on_headers_finished": self.on_headers_finished,
                "on_part_data": self.on_part_data,
                "on_part_end": self.on_part_end,
            },
        )

    async def receive(self, body: AsyncIterable[bytes]) -> list[StagedFile]:
        """Stream ``body`` to disk; the staged files, or ``UploadRejected`` (nothing kept)."""
        try:
            async for piece in body:
                self._parser.write(piece)
            self._parser.finalize()
            if not self.files:
                raise _malformed(
                    f"No file in the request: send one or more parts named '{UPLOAD_FIELD}'."
                )
            if self._handle is not None:
                raise _malformed("The multipart body ended in the middle of a file.")
        except FormParserError:
            self._discard()
            raise _malformed("The multipart body is malformed.") from None
        except OSError as error:
            self._discard()
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                # Above MIN_FREE_DISK_MB when it started, full before it ended (a large
                # upload, several at once, or Postgres growing): a clear 507, nothing kept.
                raise DiskFull(
                    "The server's disk filled up while receiving the upload; nothing was "
                    "stored. Try again later, or ask an administrator to make room."
                ) from None
            raise
        except BaseException:  # refused, the client went away, or we are shutting down
            self._discard()
            raise
        return self.files

    def _discard(self) -> None:
        if self._handle is not None:
            # Closing flushes the buffer, which fails again on a full disk.
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None
        discard(self.files)

    # -- python-multipart callbacks
    def on_part_begin(self) -> None:
        self._part_headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name.extend(data[start:end])

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value.extend(data[start:end])

    def on_header_end(self) -> None:
        self._part_headers[bytes(self._header_name).lower()] = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        disposition = self._part_headers.get(b"content-disposition", b"")
        _, options = parse_options_header(disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" not in options:
            raise _malformed(
                f"Unexpected form field '{name}': send only files, in parts named '{UPLOAD_FIELD}'."
            )
        if name != UPLOAD_FIELD:
            raise _malformed(f"Files must be sent in parts named '{UPLOAD_FIELD}', not '{name}'.")
        if len(self.files) >= self.settings.max_files_per_upload:
            raise UploadRejected(
                RejectReason.TOO_MANY_FILES,
                f"Too many files: at most {self.settings.max_files_per_upload} per upload.",
            )
        filename = safe_filename(options[b"filename"].decode("utf-8", "replace"))
        self._staged = StagedFile(filename=filename, path=self.directory / f"{uuid.uuid4()}.part")
        self.files.append(self._staged)
        self._handle = self._staged.path.open("wb")
        self._hash = hashlib.sha256()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        assert self._staged is not None and self._handle is not None
        piece = data[start:end]
        self._staged.size += len(piece)
        if self._staged.size > self.settings.max_upload_bytes:
            raise UploadRejected(
                RejectReason.TOO_LARGE,
                f"'{self._staged.filename}' is larger than the limit of "
                f"{self.settings.max_upload_mb} MiB.",
            )
        self._hash.update(piece)
        self._handle.write(piece)

    def on_part_end(self) -> None:
        assert self._staged is not None and self._handle is not None
        self._handle.close()
        self._handle = None
        self._staged.sha256 = self._hash.hexdigest()


async def receive_files(request: Request, settings: Settings) -> list[StagedFile]:
    """Stream the request's ``files`` parts to disk; ``UploadRejected`` on bad input."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise _malformed(
            f"Send the files as multipart/form-data, one or more parts named '{UPLOAD_FIELD}'."
        )
    declared = request.headers.get("content-length")
    most = settings.max_files_per_upload * (settings.max_upload_bytes + _MULTIPART_OVERHEAD)
    if declared and declared.isdigit() and int(declared) > most:
        raise UploadRejected(
            RejectReason.TOO_LARGE,
            f"The upload is too large: at most {settings.max_files_per_upload} files of "
            f"{settings.max_upload_mb} MiB each.",
        )
    directory = incoming_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    receiver = MultipartReceiver(settings, params[b"boundary"], directory)
    return await receiver.receive(request.stream())

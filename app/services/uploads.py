"""Staged uploads: files received (by the API or the CLI) but not yet documents.

A staged file lies in ``DATA_DIR/uploads/.incoming/`` with its size and SHA-256 already
counted; ``app.services.documents`` turns it into a document or refuses it. A refusal is
an ``UploadRejected`` with a ``reason``; the API layer decides what HTTP answer it is.
"""

from __future__ import annotations

import contextlib
import enum
import re
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from app.core.config import Settings


class RejectReason(enum.Enum):
    """Why an upload is refused (``app.api.uploads`` maps each to an HTTP status)."""

    MALFORMED = "malformed"  # not multipart, a wrong field, a body cut mid-file, no file
    EMPTY = "empty"
    TOO_LARGE = "too_large"  # a file over MAX_UPLOAD_MB, or the whole body too big
    TOO_MANY_FILES = "too_many_files"
    UNSUPPORTED_TYPE = "unsupported_type"
    CONCURRENT_DUPLICATE = "concurrent_duplicate"  # the same content uploaded at once


class UploadRejected(Exception):
    """The files are refused; ``message`` says why in a sentence for the user."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class StagedFile:
    """One received file, complete on disk but not yet a document."""

    filename: str
    path: Path
    size: int = 0
    sha256: str = ""


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


# An upload in progress writes its .part file continuously; one untouched this long
# was left by a process that died mid-upload (the other blue-green colour may be
# receiving right now, so age, not "before this start", decides).
STALE_PART_SECONDS = 3600


def sweep_partial_uploads(settings: Settings, *, now: float | None = None) -> int:
    """Delete ``.part`` files of uploads interrupted by a crash; returns how many."""
    directory = incoming_dir(settings)
    if not directory.is_dir():
        return 0
    cutoff = (now if now is not None else time.time()) - STALE_PART_SECONDS
    removed = 0
    for path in directory.glob("*.part"):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed


def discard(files: Iterable[StagedFile]) -> None:
    """Remove staged files (a refused request keeps nothing)."""
    for staged in files:
        staged.path.unlink(missing_ok=True)

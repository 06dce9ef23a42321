"""The data disk filling up in the middle of an upload.

DATA_DIR is a real, small file system (a tmpfs mounted for this test, so it needs root):
the upload starts with enough free space (MIN_FREE_DISK_MB passes) and runs out while the
body is written. The client gets a clear 507, no partial file or document row is left,
and the app keeps working: the next upload that fits is accepted.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from app.core.config import Settings
from app.core.db import get_sessionmaker
from app.main import create_app
from app.models.document import Document
from tests.app.utils.clients import app_client

TMPFS_MB = 8
BOUNDARY = "kt-disk-full-boundary"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m,mode=0700", "tmpfs", str(mount_point)],
        check=True,
    )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=False)


@pytest.fixture
async def disk_client(settings: Settings, small_disk: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        settings.model_copy(
            # The check before an upload passes (1 MiB is free); the enterprise plan takes
            # files larger than the disk.
            update={"data_dir": small_disk, "min_free_disk_mb": 1, "default_plan": "enterprise"}
        )
    )
    async with app_client(app, timeout=60, raise_app_exceptions=False) as client:
        yield client


def multipart(*files: tuple[str, bytes]) -> bytes:
    body = b""
    for name, content in files:
        body += (
            (
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; '
                f'filename="{name}"\r\nContent-Type: text/plain\r\n\r\n'
            ).encode()
            + content
            + b"\r\n"
        )
    return body + f"--{BOUNDARY}--\r\n".encode()


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


async def test_disk_full_during_an_upload_is_a_clear_507_and_leaves_nothing(
    disk_client: httpx.AsyncClient, user_factory, settings: Settings, small_disk: Path
) -> None:
    user = await user_factory()
    project = await disk_client.post("/api/projects", json={"name": "Disk"}, headers=user.headers)
    assert project.status_code == 201, project.text
    documents = f"/api/projects/{project.json()['id']}/documents"
    headers = {**user.headers, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}

    # A first file that fits, then one larger than what is left: the disk fills mid-file.
    line = b"A line of a long report that will not fit on this disk.\n"
    big = line * ((TMPFS_MB + 2) * 1024 * 1024 // len(line))
    response = await disk_client.post(
        documents,
        content=multipart(("fits.txt", line * 1000), ("too-big.txt", big)),
        headers=headers,
    )
    assert response.status_code == 507, response.text
    detail = response.json()["detail"]
    assert "disk filled up" in detail and "nothing was stored" in detail
    assert "Errno" not in detail and "Traceback" not in response.text

    # Nothing half-written: no staged part, no stored file, no document row.
    assert files_under(small_disk) == []
    async with get_sessionmaker(settings)() as session:
        count = await session.scalar(
            select(func.count()).select_from(Document).where(Document.owner_id == user.id)
        )
    assert count == 0

    # The app keeps working: an upload that fits is accepted and stored.
    response = await disk_client.post(
        documents, content=multipart(("small.txt", line * 100)), headers=headers
    )
    assert response.status_code == 202, response.text
    assert [d["filename"] for d in response.json()] == ["small.txt"]
    stored = [p for p in files_under(small_disk) if ".incoming" not in p.parts]
    assert len(stored) == 1 and stored[0].stat().st_size == len(line) * 100

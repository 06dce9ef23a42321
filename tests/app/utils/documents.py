"""Projects and documents through the API: create, upload, wait for ingestion."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

TERMINAL = {"ready", "failed"}


async def make_project(client: httpx.AsyncClient, user, name: str = "Docs") -> str:
    response = await client.post("/api/projects", json={"name": name}, headers=user.headers)
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def upload(client, user, project_id: str, *paths: Path, field: str = "files"):
    files = [(field, (path.name, path.read_bytes())) for path in paths]
    return await client.post(
        f"/api/projects/{project_id}/documents", files=files, headers=user.headers
    )


async def wait_until_done(client, user, project_id: str, document_id: str, seen=None) -> dict:
    """Poll the document until ready/failed; record every status seen on the way."""
    for _ in range(1200):
        response = await client.get(
            f"/api/projects/{project_id}/documents/{document_id}", headers=user.headers
        )
        assert response.status_code == 200, response.text
        body = response.json()
        if seen is not None:
            seen.append((body["status"], body["progress"]))
        if body["status"] in TERMINAL:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"document {document_id} never finished")

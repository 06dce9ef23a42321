"""Uploads whose names are hostile still get a clear answer, never a 500."""

from __future__ import annotations

import os
import time

from app.main import create_app
from app.models.document import Document
from app.services.uploads import incoming_dir
from tests.app.utils import samples
from tests.app.utils.documents import make_project, wait_until_done


async def test_a_250_character_extension_is_not_a_server_error(
    client, user_factory, tmp_path, settings, db_session
):
    user = await user_factory()
    project_id = await make_project(client, user)
    pdf = samples.make_pdf(tmp_path).read_bytes()
    name = "report." + "x" * 240  # a legal name, but uuid + this extension is not
    response = await client.post(
        f"/api/projects/{project_id}/documents",
        files=[("files", (name, pdf))],
        headers=user.headers,
    )
    assert response.status_code == 202, response.text
    [document] = response.json()
    assert document["filename"] == name
    done = await wait_until_done(client, user, project_id, document["id"])
    assert done["status"] == "ready"
    stored = await db_session.get(Document, document["id"])
    assert (settings.uploads_dir / stored.storage_path).name.endswith(".pdf")


async def test_uploads_interrupted_by_a_crash_are_swept_at_start_up(settings):
    incoming = incoming_dir(settings)
    incoming.mkdir(parents=True, exist_ok=True)
    left_over, in_flight = incoming / "crashed.part", incoming / "receiving.part"
    left_over.write_bytes(b"half a file")
    in_flight.write_bytes(b"still arriving")
    hours_ago = time.time() - 2 * 3600
    os.utime(left_over, (hours_ago, hours_ago))

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert not left_over.exists()
        assert in_flight.exists()  # maybe the other colour's upload: left alone

"""A person's first use of the deployed appliance, over HTTPS through nginx.

Register, sign in, create a project, upload a document, wait for it to become ready,
search it, then ask the chat (offline mode: the test inventory sets no Anthropic key)
and read the stream: conversation, sources before the first token, tokens, usage, done.
Finally the conversation reloads with the same sources. This is the proof that the
roles add up to a working product, not only to services that are "active".

Runs before test_nginx.py, whose last test spends this address's sign-in budget.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import kt_target
import pytest

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "corpus" / "honeybees.md"
QUESTION = "How do honey bees tell each other where the flowers are?"


api = kt_target.api
ok_json = kt_target.ok_json


@pytest.fixture(scope="module")
def token(host) -> str:  # `host`: only once the host is provisioned
    credentials = {"email": f"journey-{uuid.uuid4().hex[:8]}@example.com",
                   "password": "correct horse battery staple"}  # fmt: skip
    ok_json(api("POST", "/auth/register", body=credentials), 202)
    return ok_json(api("POST", "/auth/login", body=credentials), 200)["access_token"]


@pytest.fixture(scope="module")
def project_id(token: str) -> str:
    project = ok_json(api("POST", "/projects", token=token, body={"name": "Bees"}), 201)
    uploaded = ok_json(
        api("POST", f"/projects/{project['id']}/documents", token=token,
            form=(f"files=@{SAMPLE};type=text/markdown",)),
        202,
    )  # fmt: skip
    assert [d["filename"] for d in uploaded] == [SAMPLE.name]
    document_url = f"/projects/{project['id']}/documents/{uploaded[0]['id']}"
    deadline = time.monotonic() + 180
    while True:
        document = ok_json(api("GET", document_url, token=token), 200)
        if document["status"] in ("ready", "failed") or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert (document["status"], document["error"]) == ("ready", None)
    return project["id"]


def test_an_uploaded_document_can_be_searched(token: str, project_id: str):
    found = ok_json(
        api("POST", f"/projects/{project_id}/search", token=token,
            body={"query": QUESTION, "top_k": 3}),
        200,
    )  # fmt: skip
    assert found["results"]
    best = found["results"][0]
    assert best["document_name"] == SAMPLE.name
    assert 0 < best["similarity"] <= 1


def read_stream(token: str, body: dict) -> list[tuple[str, dict]]:
    """POST /api/chat/stream through nginx with curl -N; (event, data) pairs in order."""
    cmd = [
        "curl", "--silent", "--show-error", "--no-buffer", "--max-time", "60",
        "--resolve", f"{kt_target.domain()}:443:{kt_target.address()}",
        "--cacert", str(kt_target.PEBBLE_ISSUER_ROOT),
        "-H", f"Authorization: Bearer {token}", "-H", "Content-Type: application/json",
        "--data", json.dumps(body), f"https://{kt_target.domain()}/api/chat/stream",
    ]  # fmt: skip
    raw = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return kt_target.sse_events(raw)


def test_the_chat_streams_a_cited_answer_that_is_saved(token: str, project_id: str):
    events = read_stream(token, {"message": QUESTION, "project_id": project_id})
    names = [name for name, _ in events]
    assert names[:2] == ["conversation", "sources"], names
    assert "token" in names and names.index("sources") < names.index("token")
    assert names[-1] == "done", events[-1]
    assert "error" not in names
    sources = dict(events)["sources"]["sources"]
    assert sources and sources[0]["document_name"] == SAMPLE.name
    answer = "".join(data["text"] for name, data in events if name == "token")
    assert "Offline mode" in answer and "[1]" in answer

    conversation_id = dict(events)["conversation"]["conversation_id"]
    saved = ok_json(api("GET", f"/conversations/{conversation_id}", token=token), 200)
    assert [m["role"] for m in saved["messages"]] == ["user", "assistant"]
    assert saved["messages"][1]["content"] == answer
    assert saved["messages"][1]["sources"]

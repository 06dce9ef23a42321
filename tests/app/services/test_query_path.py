"""Start-up order (issue 14: a colour ready in seconds): ``/readyz`` waits for what
answering needs (the ONNX query encoder, or the torch model when ONNX is not used), not
for the torch model that only ingestion needs; documents uploaded before that model is
loaded wait as ``queued`` and are processed once it is."""

from __future__ import annotations

import asyncio
import threading

import pytest

from app.main import create_app
from app.services import embeddings, query_encoder
from tests.app.utils import samples
from tests.app.utils.clients import app_client
from tests.app.utils.documents import make_project, upload, wait_until_done

EXPORT_WAIT_SECONDS = 600  # a first export on a busy 2-core machine


@pytest.fixture(scope="module")
def exported(settings):
    """The test cache holds this model's ONNX export (made once if missing)."""
    loaded = embeddings.load_model(settings)
    query_encoder.prepare(loaded.model_path, loaded.model_name, settings.models_cache_dir)


class SlowTorch:
    """``embeddings.load_model`` held until ``release()``: a torch model still loading.
    ``callers`` names the threads that asked for it."""

    def __init__(self, monkeypatch) -> None:
        self.callers: list[str] = []
        self._released = threading.Event()
        self._original = embeddings.load_model
        monkeypatch.setattr(embeddings, "load_model", self._load)

    def _load(self, settings=None):
        self.callers.append(threading.current_thread().name)
        self._released.wait(EXPORT_WAIT_SECONDS)
        return self._original(settings)

    def release(self) -> None:
        self._released.set()


@pytest.fixture
def slow_torch(monkeypatch):
    # A query path of its own: the process's one is already prepared.
    monkeypatch.setattr(embeddings, "_query_path", None)
    slow = SlowTorch(monkeypatch)
    yield slow
    slow.release()  # never leave a background thread waiting


async def _until(predicate, what: str) -> None:
    """Wait for background work (not a timing assertion: only a bound on hanging)."""
    for _ in range(EXPORT_WAIT_SECONDS * 20):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never: {what}")


async def _ready(client) -> bool:
    return (await client.get("/readyz")).status_code == 200


async def test_ready_with_onnx_before_the_torch_model_and_uploads_wait_for_it(
    settings, exported, slow_torch, user_factory, tmp_path
):
    app = create_app(settings)
    async with app_client(app, wait_until_ready=False) as client:
        await _until(lambda: _ready(client), "/readyz 200 with the torch model held back")
        detail = (await client.get("/readyz")).json()["checks"]["embedding_model"]["detail"]
        assert detail.endswith("queries embedded by ONNX Runtime"), detail
        # The ingest worker asks for the model too, after the query path: both wait.
        await _until(
            lambda: asyncio.sleep(0, len(set(slow_torch.callers)) >= 2), "the worker waiting"
        )
        assert slow_torch.callers[0] == "query-path"

        user = await user_factory()
        project_id = await make_project(client, user)
        response = await upload(client, user, project_id, samples.make_markdown(tmp_path))
        assert response.status_code == 202, response.text
        [document] = response.json()
        status = await client.get(
            f"/api/projects/{project_id}/documents/{document['id']}", headers=user.headers
        )
        assert status.json()["status"] == "queued"

        slow_torch.release()
        done = await wait_until_done(client, user, project_id, document["id"])
        assert done["status"] == "ready", done
        assert done["chunk_count"] > 0


@pytest.mark.parametrize("why", ["torch backend", "failed export"])
async def test_without_onnx_readiness_waits_for_the_torch_model(
    settings, exported, slow_torch, tmp_path, why
):
    if why == "torch backend":
        settings = settings.model_copy(update={"query_embedding_backend": "torch"})
        expected = "queries embedded by torch (QUERY_EMBEDDING_BACKEND=torch)"
    else:
        settings = settings.model_copy(update={"model_cache_dir": tmp_path})
        loaded = embeddings._loaded
        assert loaded is not None
        folder = query_encoder.export_folder(tmp_path, loaded.model_name, loaded.model_path)
        folder.mkdir(parents=True)
        (folder / query_encoder.FAILED_FILE).write_text("TorchExportError: unsupported op\n")
        expected = "queries embedded by torch (ONNX unavailable: the ONNX export failed earlier"
    app = create_app(settings)
    async with app_client(app, wait_until_ready=False) as client:
        await _until(lambda: asyncio.sleep(0, bool(slow_torch.callers)), "torch loading")
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["embedding_model"] == {
            "ok": False,
            "detail": "query encoder not loaded yet (all-MiniLM-L6-v2)",
        }
        slow_torch.release()
        await _until(lambda: _ready(client), "/readyz 200 once the torch model is loaded")
        detail = (await client.get("/readyz")).json()["checks"]["embedding_model"]["detail"]
        assert expected in detail, detail

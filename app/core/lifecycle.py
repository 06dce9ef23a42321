"""Start-up and shutdown hooks run by the app's lifespan (see ``app.main``).

A hook is ``async def hook(app: FastAPI) -> None``. Start-up hooks run in order
before the first request and must be quick: slow work (loading models) goes to the
background, and ``/readyz`` says when what serving needs is there. Shutdown hooks run in
reverse order after the last request. To add one for the whole app, add an entry to the
lists below. The database engines are closed after the shutdown hooks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI

LifecycleHook = Callable[[FastAPI], Awaitable[None]]


async def _start_ingest_worker(app: FastAPI) -> None:
    """Start this process's ingest worker (which first re-queues documents whose worker
    died, and loads the embedding model once the query path has had its turn)."""
    from app.core.db import get_engine
    from app.services.ingestion.worker import IngestWorker

    worker = IngestWorker(app.state.settings, get_engine(app.state.settings))
    await worker.start()
    app.state.ingest_worker = worker


async def _stop_ingest_worker(app: FastAPI) -> None:
    worker = getattr(app.state, "ingest_worker", None)
    if worker is not None:
        await worker.stop()


async def _stop_parse_helpers(app: FastAPI) -> None:
    # After the ingest worker: no parse can start any more.
    from app.services.isolated_parse import stop_helper_processes

    stop_helper_processes()


async def _start_query_path(app: FastAPI) -> None:
    # In the background: /readyz waits for it (the ONNX encoder, else the torch model).
    from app.services.embeddings import start_query_path

    start_query_path(app.state.settings)


async def _import_sdks_later(app: FastAPI) -> None:
    """Import the Anthropic and Stripe SDKs (if configured) in a background thread once the
    query path has settled: seconds on a loaded host that no longer delay /readyz (a
    rollback waits for it), nor the first question on the event loop."""
    import threading

    from app.services.billing import import_stripe_sdk
    from app.services.embeddings import query_path
    from app.services.llm.factory import import_chat_sdk

    settings = app.state.settings

    def run() -> None:
        path = query_path(settings)
        if path is not None:
            path.settled.wait()
        import_chat_sdk(settings)
        import_stripe_sdk(settings)

    threading.Thread(target=run, name="sdk-import", daemon=True).start()


async def _sweep_partial_uploads(app: FastAPI) -> None:
    import asyncio
    import logging

    from app.services.uploads import sweep_partial_uploads

    removed = await asyncio.to_thread(sweep_partial_uploads, app.state.settings)
    if removed:
        logging.getLogger(__name__).info("removed %d interrupted upload(s)", removed)


STARTUP_HOOKS: list[LifecycleHook] = [
    _sweep_partial_uploads,
    _start_query_path,
    _import_sdks_later,
    _start_ingest_worker,
]


async def _finish_chat_turns(app: FastAPI) -> None:
    # Answers whose browser left are still being saved: let them finish (bounded).
    from app.services.chat import wait_for_turns

    await wait_for_turns()


async def _close_chat_models(app: FastAPI) -> None:
    from app.services.llm.factory import close_chat_models

    await close_chat_models()


# Run in reverse: stop the worker and its parse helpers, let answers finish saving, then
# close the model client.
SHUTDOWN_HOOKS: list[LifecycleHook] = [
    _close_chat_models,
    _finish_chat_turns,
    _stop_parse_helpers,
    _stop_ingest_worker,
]

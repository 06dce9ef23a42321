"""An HTTP client on an app, in-process, with the app's lifespan (start-up hooks) run."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI

from app.services import embeddings

BASE_URL = "http://testserver"
# The first app of a test process loads the query encoder or the torch model (seconds).
QUERY_PATH_WAIT_SECONDS = 600


@contextlib.asynccontextmanager
async def app_client(
    app: FastAPI,
    *,
    timeout: float | None = None,
    raise_app_exceptions: bool = True,
    wait_until_ready: bool = True,
) -> AsyncIterator[httpx.AsyncClient]:
    """``raise_app_exceptions=False``: an exception the app turns into its 500 answer is
    only that answer, as behind uvicorn (the fault tests look at what clients get).
    The client is handed over once the app's query path (started in the background) has
    had its turn, as a load balancer waits for ``/readyz``; ``wait_until_ready=False``
    hands it over at once (tests of start-up itself)."""
    options = {} if timeout is None else {"timeout": timeout}
    async with app.router.lifespan_context(app):
        path = embeddings.query_path(app.state.settings)
        if wait_until_ready and path is not None:
            await asyncio.to_thread(path.settled.wait, QUERY_PATH_WAIT_SECONDS)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL, **options) as client:
            yield client

"""An HTTP client on an app, in-process, with the app's lifespan (start-up hooks) run."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI

BASE_URL = "http://testserver"


@contextlib.asynccontextmanager
async def app_client(
    app: FastAPI, *, timeout: float | None = None, raise_app_exceptions: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """``raise_app_exceptions=False``: an exception the app turns into its 500 answer is
    only that answer, as behind uvicorn (the fault tests look at what clients get)."""
    options = {} if timeout is None else {"timeout": timeout}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL, **options) as client:
            yield client

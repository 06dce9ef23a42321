"""A project whose passages are already indexed, for the chat, conversation and artifact
tests: three small documents stored as ``ready`` and their chunks written by the app's
own vector-store code (``build_nodes`` + the PGVectorStore), with real embeddings.

Faster than uploading and ingesting files, and the chunks have the shape ingestion gives
them, so a change of that shape cannot leave these tests on an old one.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import dataclass

import httpx
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from app.core.config import Settings
from app.core.db import get_engine, get_sessionmaker, sync_database_url
from app.models.document import Document, DocumentStatus
from app.services import embeddings
from app.services.chunking import Chunk
from app.services.vector_store import build_nodes, make_vector_store

# Three short "documents", as (page, heading, text) passages, that the questions of the
# chat tests find.
CORPUS = {
    "refund-policy.pdf": [
        (
            1,
            "Refunds",
            "Customers may ask for a refund within 30 days of delivery. "
            "Refunds are paid back to the original card within five business days.",
        ),
        (2, "Exchanges", "Exchanges are free of charge for unworn items with their tags."),
    ],
    "shipping.md": [
        (
            None,
            "Delivery times",
            "Standard shipping takes three to five days. "
            "Express shipping arrives the next business day if ordered before noon.",
        ),
    ],
    "lighthouse.txt": [
        (None, None, "The lighthouse keeper climbs 217 steps every evening to light the lamp."),
    ],
}


@dataclass
class IndexedProject:
    id: uuid.UUID
    document_ids: dict[str, uuid.UUID]


Corpus = dict[str, list[tuple[int | None, str | None, str]]]


async def index_project(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    settings: Settings,
    name: str = "Shop",
    corpus: Corpus | None = None,
) -> IndexedProject:
    """A project of ``headers``' user holding ``corpus`` (default CORPUS) as ready, indexed
    documents: {filename: [(page, heading, text) of each chunk]}."""
    corpus = CORPUS if corpus is None else corpus
    response = await client.post("/api/projects", json={"name": name}, headers=headers)
    assert response.status_code == 201, response.text
    project_id = uuid.UUID(response.json()["id"])
    owner_id = uuid.UUID((await client.get("/api/auth/me", headers=headers)).json()["id"])

    documents: list[tuple[Document, list[Chunk]]] = []
    async with get_sessionmaker(settings)() as session:
        for filename, passages in corpus.items():
            document = Document(
                project_id=project_id,
                owner_id=owner_id,
                filename=filename,
                content_type="text/plain",
                kind="text",
                size_bytes=100,
                sha256=hashlib.sha256(f"{project_id}{filename}".encode()).hexdigest(),
                storage_path=f"{project_id}/{filename}",
                status=DocumentStatus.READY,
                progress=100,
                chunk_count=len(passages),
            )
            session.add(document)
            chunks = [
                Chunk(text=text, index=index, page=page, heading=heading)
                for index, (page, heading, text) in enumerate(passages)
            ]
            documents.append((document, chunks))
        await session.commit()  # the chunks' rows refer to the documents

    all_chunks = [chunk for _, chunks in documents for chunk in chunks]
    vectors = await asyncio.to_thread(
        embeddings.embed_texts, [chunk.embedding_text for chunk in all_chunks], settings
    )
    nodes, start = [], 0
    for document, chunks in documents:
        nodes += build_nodes(document, chunks, vectors[start : start + len(chunks)])
        start += len(chunks)
    sync_engine = create_engine(sync_database_url(settings), poolclass=NullPool)  # unused
    try:
        store = make_vector_store(settings, len(vectors[0]), sync_engine, get_engine(settings))
        await store.async_add(nodes)
    finally:
        sync_engine.dispose()
    return IndexedProject(
        id=project_id, document_ids={document.filename: document.id for document, _ in documents}
    )

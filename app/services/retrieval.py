"""Hybrid retrieval: pgvector HNSW + Postgres full-text, fused by reciprocal rank.

The SQL names the chunk table (data_chunks) and text-search configuration (english)
literally; both are defined in ``app.services.vector_store``.

``search(session, project_id, query, top_k=..., min_similarity=...)`` is the one entry
point (the search API and the chat call it). One SQL round trip does everything:

1. vector candidates: the project's chunks nearest to the query embedding by cosine
   distance, through the HNSW index (``hnsw.ef_search`` from HNSW_EF_SEARCH, raised to
   the candidate count; ``hnsw.iterative_scan`` so the project filter cannot starve
   the index scan of results);
2. text candidates: chunks matching the query as ``websearch_to_tsquery`` reads it
   (all words, stemmed, stop words ignored; "quoted phrases", ``or``, ``-word`` work as
   in web search engines) ranked by ``ts_rank`` over the stored ``text_search_tsv``.
   All words, not any word: with OR-matching (what LlamaIndex's sparse query does)
   every chunk sharing one common word with a question became a text hit, and the
   fusion then out-voted the semantically best passage (seen on the sample corpus:
   "How do bees survive the cold months?" lost its #1 vector hit to chunks that
   merely said "bees"). Matching all words keeps the text list for what it is good
   at: exact names, codes and rare terms;
3. reciprocal rank fusion, ``score = sum(1 / (60 + rank))`` over the two lists
   (Cormack et al. 2009; k = 60). LlamaIndex's own hybrid mode only concatenates the
   lists, which is why the fusion is done here;
4. every fused hit gets the cosine similarity of its vector to the query (also hits
   found only by full-text), hits under ``min_similarity`` are dropped, and the best
   ``top_k`` by fused score are returned with their document name, page and heading.

Ownership is the caller's job: pass a project the current user owns.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings, get_settings
from app.services import embeddings

RRF_K = 60
_MIN_CANDIDATES = 20


@dataclass(frozen=True)
class SearchHit:
    chunk_id: str  # the LlamaIndex node id
    text: str
    document_id: uuid.UUID
    document_name: str
    page: int | None
    heading: str | None
    similarity: float  # cosine similarity of chunk and query vectors, -1..1
    score: float  # fused reciprocal-rank score (what the order is by)
    rank: int  # 1-based position in the results
    vector_rank: int | None  # position among vector candidates (None: not among them)
    text_rank: int | None  # position among full-text candidates (None: no word matched)


_SEARCH_SQL = text(
    """
    WITH vector_hits AS MATERIALIZED (
        SELECT id, embedding <=> CAST(:embedding AS vector) AS distance
        FROM data_chunks
        WHERE project_id = :project_id AND embedding IS NOT NULL
        ORDER BY embedding <=> CAST(:embedding AS vector)
        LIMIT :candidates
    ),
    vector_ranked AS (
        SELECT id, row_number() OVER (ORDER BY distance, id) AS vector_rank FROM vector_hits
    ),
    text_ranked AS (
        SELECT id, row_number() OVER (ORDER BY score DESC, id) AS text_rank
        FROM (
            SELECT id, ts_rank(text_search_tsv, q.query) AS score
            FROM data_chunks, websearch_to_tsquery('english', :text_query) AS q(query)
            WHERE project_id = :project_id AND text_search_tsv @@ q.query
            ORDER BY score DESC, id
            LIMIT :candidates
        ) AS matches
    ),
    fused AS (
        SELECT coalesce(v.id, t.id) AS id, v.vector_rank, t.text_rank,
               coalesce(1.0 / (:rrf_k + v.vector_rank), 0)
             + coalesce(1.0 / (:rrf_k + t.text_rank), 0) AS score
        FROM vector_ranked v FULL OUTER JOIN text_ranked t ON v.id = t.id
    )
    SELECT c.node_id, c.text, c.document_id, d.filename,
           c.metadata_ ->> 'page' AS page, c.metadata_ ->> 'heading' AS heading,
           1 - (c.embedding <=> CAST(:embedding AS vector)) AS similarity,
           f.score, f.vector_rank, f.text_rank
    FROM fused f
    JOIN data_chunks c ON c.id = f.id
    JOIN documents d ON d.id = c.document_id
    WHERE 1 - (c.embedding <=> CAST(:embedding AS vector)) >= :min_similarity
    ORDER BY f.score DESC, similarity DESC
    LIMIT :top_k
    """
)


_HNSW_SETTINGS_SQL = text(
    "SELECT set_config('hnsw.ef_search', :ef_search, true), "
    "set_config('hnsw.iterative_scan', 'relaxed_order', true)"
)


async def set_hnsw_search_parameters(session: AsyncSession, ef_search: int) -> None:
    """HNSW search settings for the current transaction (like SET LOCAL), in one round trip.

    ``iterative_scan``: when the project filter drops candidates, pgvector keeps scanning
    the index instead of returning fewer than LIMIT rows.
    """
    await session.execute(_HNSW_SETTINGS_SQL, {"ef_search": str(int(ef_search))})


def vector_literal(vector: list[float]) -> str:
    return "[" + ",".join(f"{value:.7g}" for value in vector) + "]"


async def search(
    session: AsyncSession,
    project_id: uuid.UUID,
    query: str,
    *,
    top_k: int | None = None,
    min_similarity: float = 0.0,
    settings: Settings | None = None,
) -> list[SearchHit]:
    """The ``top_k`` chunks of the project that best answer ``query``, best first.

    Args:
        session: an AsyncSession; the search runs inside its current transaction
            (``SET LOCAL`` of the HNSW parameters ends with it).
        project_id: a project the caller has checked the user owns.
        query: the user's question or keywords.
        top_k: most results (default SEARCH_DEFAULT_TOP_K; capped at SEARCH_MAX_TOP_K).
        min_similarity: drop hits whose cosine similarity to the query is lower (0..1).
        settings: defaults to the process settings.
    """
    settings = settings or get_settings()
    if not query.strip():
        return []
    # Query embedding is CPU work (~10-20 ms): keep it off the event loop.
    vector = await asyncio.to_thread(embeddings.embed_query, query.strip(), settings)
    return await search_by_vector(
        session,
        project_id,
        query,
        vector,
        top_k=top_k,
        min_similarity=min_similarity,
        settings=settings,
    )


async def search_by_vector(
    session: AsyncSession,
    project_id: uuid.UUID,
    query: str,
    vector: list[float] | Awaitable[list[float]],
    *,
    top_k: int | None = None,
    min_similarity: float = 0.0,
    settings: Settings | None = None,
) -> list[SearchHit]:
    """``search`` with the query's embedding computed elsewhere.

    ``vector`` may still be under way (an awaitable, as the chat starts it early): the
    session's connection, transaction and HNSW settings are readied while it finishes,
    so only the search itself waits for it.
    """
    settings = settings or get_settings()
    top_k = min(top_k or settings.search_default_top_k, settings.search_max_top_k)
    candidates = max(_MIN_CANDIDATES, 2 * top_k)
    ef_search = max(settings.hnsw_ef_search, candidates)
    await set_hnsw_search_parameters(session, ef_search)
    if not isinstance(vector, list):
        vector = await vector
    rows = await session.execute(
        _SEARCH_SQL,
        {
            "embedding": vector_literal(vector),
            "project_id": project_id,
            "text_query": query.strip(),
            "candidates": candidates,
            "rrf_k": RRF_K,
            "min_similarity": min_similarity,
            "top_k": top_k,
        },
    )
    return [
        SearchHit(
            chunk_id=row.node_id,
            text=row.text,
            document_id=row.document_id,
            document_name=row.filename,
            page=int(row.page) if row.page is not None else None,
            heading=row.heading,
            similarity=float(row.similarity),
            score=float(row.score),
            rank=position,
            vector_rank=row.vector_rank,
            text_rank=row.text_rank,
        )
        for position, row in enumerate(rows, start=1)
    ]

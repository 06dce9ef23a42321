"""Hybrid retrieval: pgvector HNSW and a BM25 keyword ranking, fused by reciprocal rank.

``search`` (or ``search_by_vector`` when the query's embedding is already under way) is
the one entry point: the search API and the chat call it. One SQL round trip ranks the
project's chunks both ways and fuses the two lists; an optional cross-encoder then
reorders the best ones (RERANKER_MODEL). Why each part is as it is, with the
measurements: docs/ARCHITECTURE.md, "Ranking". Ownership is the caller's job.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings, get_settings
from app.services import embeddings

SearchMode = Literal["hybrid", "vector", "keyword"]

# Postings read per query term, densest first: every chunk of a term rarer than this is
# scored exactly; a very common term (low idf) only adds to its densest chunks.
POSTINGS_PER_TERM = 1000


@dataclass(frozen=True)
class Bm25:
    """BM25 parameters of the keyword list."""

    k1: float = 1.2  # term-frequency saturation (the usual value)
    # Length normalisation: none, not the usual 0.75. The chunker cuts chunks to one
    # size, so a short chunk is mostly a fragment (a NAME line, a section's tail), not a
    # focused passage, and normalising ranked those first (bench/eval: keyword list
    # hit@5 0.667 at b = 0, 0.644 at 0.3, 0.578 at 0.75; docs/ARCHITECTURE.md "Ranking").
    b: float = 0.0


@dataclass(frozen=True)
class Fusion:
    """Reciprocal rank fusion: score = sum over lists of weight / (k + rank)."""

    k: int = 10  # 60 is the literature's default; 10 ranked better on bench/eval
    vector_weight: float = 1.0
    text_weight: float = 1.0
    # Candidates each list brings to the fusion (at least twice what is returned): a
    # passage one list ranks 30th can still win when the other ranks it high.
    depth: int = 50


DEFAULT_BM25 = Bm25()  # the measured choices (docs/ARCHITECTURE.md, "Ranking")
DEFAULT_FUSION = Fusion()


@dataclass(frozen=True)
class SearchHit:
    chunk_id: str  # the LlamaIndex node id
    text: str
    document_id: uuid.UUID
    document_name: str
    page: int | None
    heading: str | None
    similarity: float  # cosine similarity of chunk and query vectors, -1..1
    score: float  # fused reciprocal-rank score
    rank: int  # 1-based position in the results
    vector_rank: int | None  # position among vector candidates (None: not among them)
    text_rank: int | None  # position among keyword candidates (None: no term matched)


# The table and text-search names are those of app.services.vector_store and of
# migrations 0008 (chunk_terms, term_stats, project_text_stats and their trigger) and
# 0009 (english_all_words: the English stemmer without a stop-word list, which the
# index uses; the question is read through 'english', plus its option words).
# The numeric parameters are cast once in ``params``: left to itself asyncpg types a
# parameter from its use, and ``1 - :b`` made b an integer (0.75 ran as 0, k1 1.2 as 1).
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
    corpus AS MATERIALIZED (
        SELECT chunks::float8 AS n, terms::float8 / greatest(chunks, 1) AS average_length
        FROM project_text_stats WHERE project_id = :project_id
    ),
    term_weights AS MATERIALIZED (
        SELECT s.term, ln(1 + (c.n - s.chunks + 0.5) / (s.chunks + 0.5)) AS idf
        FROM (
            SELECT lexeme FROM unnest(to_tsvector('english', :text_query))
            UNION
            SELECT lexeme FROM unnest(to_tsvector('english_all_words', :option_words))
        ) AS q
        JOIN term_stats s ON s.project_id = :project_id AND s.term = q.lexeme
        CROSS JOIN corpus c
    ),
    params AS MATERIALIZED (
        SELECT CAST(:k1 AS float8) AS k1, CAST(:b AS float8) AS b,
               CAST(:rrf_k AS float8) AS rrf_k, CAST(:vector_weight AS float8) AS vector_weight,
               CAST(:text_weight AS float8) AS text_weight
    ),
    text_scores AS (
        SELECT p.chunk_id AS id,
               sum(w.idf * p.tf * (x.k1 + 1)
                   / (p.tf + x.k1 * (1 - x.b + x.b * p.chunk_length / c.average_length))) AS score
        FROM term_weights w
        CROSS JOIN corpus c
        CROSS JOIN params x
        CROSS JOIN LATERAL (
            SELECT chunk_id, tf, chunk_length FROM chunk_terms
            WHERE project_id = :project_id AND term = w.term
            ORDER BY tf::real / chunk_length DESC
            LIMIT :postings_per_term
        ) AS p
        GROUP BY p.chunk_id
    ),
    text_ranked AS (
        SELECT id, row_number() OVER (ORDER BY score DESC, id) AS text_rank
        FROM (SELECT id, score FROM text_scores ORDER BY score DESC, id LIMIT :candidates) AS t
    ),
    fused AS (
        SELECT coalesce(v.id, t.id) AS id, v.vector_rank, t.text_rank,
               x.vector_weight * coalesce(1 / (x.rrf_k + v.vector_rank), 0)
             + x.text_weight * coalesce(1 / (x.rrf_k + t.text_rank), 0) AS score
        FROM vector_ranked v FULL OUTER JOIN text_ranked t ON v.id = t.id
        CROSS JOIN params x
    )
    SELECT c.node_id, c.text, c.document_id, d.filename,
           c.metadata_ ->> 'page' AS page, c.metadata_ ->> 'heading' AS heading,
           1 - (c.embedding <=> CAST(:embedding AS vector)) AS similarity,
           f.score, f.vector_rank, f.text_rank
    FROM fused f
    JOIN data_chunks c ON c.id = f.id
    JOIN documents d ON d.id = c.document_id
    WHERE f.score > 0
      AND 1 - (c.embedding <=> CAST(:embedding AS vector)) >= CAST(:min_similarity AS float8)
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


# A word written as a command-line option: "--all", "-a", "--no-ff" (not "cherry-pick").
_OPTION = re.compile(r"(?<![\w-])--?([A-Za-z][\w-]*)")


def option_words(query: str) -> str:
    """The words ``query`` writes as options, which the keyword list keeps even when they
    are stop words (``--all``, ``-a``): the question itself is read without stop words,
    which only added noise ("what", "does", "the"; docs/ARCHITECTURE.md "Ranking")."""
    return " ".join(_OPTION.findall(query))


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
    mode: SearchMode = "hybrid",
    fusion: Fusion = DEFAULT_FUSION,
    bm25: Bm25 = DEFAULT_BM25,
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
        mode: ``hybrid`` (both lists fused), or one list alone: ``vector``, ``keyword``.
        fusion: how the two lists are fused (the default is the measured choice).
        bm25: the keyword list's parameters (likewise).
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
        mode=mode,
        fusion=fusion,
        bm25=bm25,
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
    mode: SearchMode = "hybrid",
    fusion: Fusion = DEFAULT_FUSION,
    bm25: Bm25 = DEFAULT_BM25,
) -> list[SearchHit]:
    """``search`` with the query's embedding computed elsewhere.

    ``vector`` may still be under way (an awaitable, as the chat starts it early): the
    session's connection, transaction and HNSW settings are readied while it finishes,
    so only the search itself waits for it.
    """
    settings = settings or get_settings()
    top_k = min(top_k or settings.search_default_top_k, settings.search_max_top_k)
    reranking = bool(settings.reranker_model) and mode == "hybrid"
    # The reranker reorders a longer list than is returned.
    wanted = max(top_k, settings.reranker_candidates) if reranking else top_k
    candidates = max(fusion.depth, 2 * wanted)
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
            "option_words": option_words(query),
            "candidates": candidates,
            "postings_per_term": POSTINGS_PER_TERM,
            "k1": bm25.k1,
            "b": bm25.b,
            "rrf_k": fusion.k,
            "vector_weight": 0.0 if mode == "keyword" else fusion.vector_weight,
            "text_weight": 0.0 if mode == "vector" else fusion.text_weight,
            "min_similarity": min_similarity,
            "top_k": wanted,
        },
    )
    hits = [
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
    if reranking and len(hits) > 1:
        from app.services import reranking

        order = await asyncio.to_thread(
            reranking.rerank, query.strip(), [hit.text for hit in hits], settings
        )
        hits = [replace(hits[index], rank=rank) for rank, index in enumerate(order, start=1)]
    return hits[:top_k]

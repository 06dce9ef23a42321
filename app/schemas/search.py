"""Request/response bodies of POST /api/projects/{project_id}/search."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, Field

from app.schemas.types import name

SearchQuery = name(max_length=2000)
# SEARCH_MAX_TOP_K can be at most this; larger asks are capped to the setting.
TOP_K_LIMIT = 1000


class SearchRequest(BaseModel):
    query: SearchQuery = Field(description="The question or keywords.")
    top_k: int | None = Field(
        default=None,
        ge=1,
        le=TOP_K_LIMIT,
        description="Most chunks to return (default SEARCH_DEFAULT_TOP_K; more than "
        "SEARCH_MAX_TOP_K gives SEARCH_MAX_TOP_K).",
    )
    min_similarity: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Drop chunks whose cosine similarity to the query is below this (0..1).",
    )
    mode: Literal["hybrid", "vector", "keyword"] = Field(
        default="hybrid",
        description="'hybrid': the vector and keyword (BM25) rankings fused, what the chat "
        "uses; 'vector' or 'keyword': one ranking alone, to see what each contributes.",
    )


class SearchResult(BaseModel):
    rank: int = Field(description="1-based position.")
    chunk_id: str
    text: str
    document_id: uuid.UUID
    document_name: str
    page: int | None = Field(description="PDF page the chunk is on.")
    heading: str | None = Field(description="Heading path, e.g. 'Install > On Debian'.")
    similarity: float = Field(description="Cosine similarity of chunk and query embeddings.")
    score: float = Field(
        description="Reciprocal-rank-fusion score (results are sorted by it, unless a "
        "reranker is configured: then by the reranker, and 'rank' gives the order)."
    )
    vector_rank: int | None = Field(
        description="Rank in the vector (embedding similarity) list; null: not among its "
        "candidates."
    )
    text_rank: int | None = Field(
        description="Rank in the keyword (BM25) list; null: no query term in the chunk or not "
        "among its candidates."
    )


class SearchResponse(BaseModel):
    query: str
    results: list[SearchResult]

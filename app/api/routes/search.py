"""POST /api/projects/{project_id}/search: what the chat would be given for a question."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from app.api.deps import OwnedProject, SessionDep, SettingsDep
from app.schemas.search import SearchRequest, SearchResponse, SearchResult
from app.services import retrieval

router = APIRouter(prefix="/projects/{project_id}/search", tags=["search"])


@router.post(
    "", response_model=SearchResponse, responses={404: {"description": "Project not found"}}
)
async def search_project(
    body: SearchRequest, project: OwnedProject, session: SessionDep, settings: SettingsDep
) -> SearchResponse:
    """Hybrid search (vector + BM25 keyword ranking, reciprocal rank fusion) over the
    project's chunks; ``mode`` shows one ranking alone."""
    # The schema bounds top_k by the largest possible setting; the setting caps it here.
    top_k = None if body.top_k is None else min(body.top_k, settings.search_max_top_k)
    hits = await retrieval.search(
        session,
        project.id,
        body.query,
        top_k=top_k,
        min_similarity=body.min_similarity,
        settings=settings,
        mode=body.mode,
    )
    return SearchResponse(query=body.query, results=[SearchResult(**asdict(hit)) for hit in hits])

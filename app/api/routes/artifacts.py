"""/api/artifacts: documents made in chats, versioned. Other users' artifacts answer 404."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Response, status

from app.api.billing_errors import LIMIT_RESPONSES
from app.api.deps import CurrentUser, SessionDep, SettingsDep, allowed_model
from app.models.conversation import Artifact
from app.schemas.artifact import (
    ArtifactCreate,
    ArtifactRead,
    ArtifactSummary,
    ArtifactUpdate,
    ArtifactVersionRead,
)
from app.schemas.chat import ModelName
from app.schemas.types import VersionNumber
from app.services import artifacts as artifact_service
from app.services import usage
from app.services.chat import NotFound
from app.services.llm.base import LLMError
from app.services.llm.factory import get_chat_model

router = APIRouter(prefix="/artifacts", tags=["artifacts"])

_NOT_FOUND = {404: {"description": "Artifact not found"}}
_MODEL_FAILED = {
    502: {"description": "The model refused the request (not worth retrying)"},
    503: {"description": "The model is unavailable, overloaded or rate-limited (retry later)"},
}


async def _owned_artifact(
    artifact_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> Artifact:
    artifact = await artifact_service.get_artifact(session, user.id, artifact_id)
    if artifact is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="Artifact not found")
    return artifact


OwnedArtifact = Annotated[Artifact, Depends(_owned_artifact)]


def _read(artifact: Artifact) -> ArtifactRead:
    return ArtifactRead.model_validate(
        {
            **{
                field: getattr(artifact, field)
                for field in ArtifactRead.model_fields
                if field != "content"
            },
            "content": artifact_service.current_content(artifact),
        }
    )


def _model_failed(error: LLMError) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE
        if error.retryable
        else status.HTTP_502_BAD_GATEWAY,
        detail={"message": error.message, "retryable": error.retryable, "kind": error.kind},
    )


@router.post(
    "",
    response_model=ArtifactRead,
    status_code=status.HTTP_201_CREATED,
    responses={
        404: {"description": "Message, project or conversation not found"},
        **_MODEL_FAILED,
        **LIMIT_RESPONSES,
    },
)
async def create_artifact(
    body: ArtifactCreate, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> ArtifactRead:
    """From an assistant message (`message_id`), or made by the model on `request`
    (which counts as one message of the plan)."""
    model_name = allowed_model(body.model, settings)
    quota = None
    if body.message_id is None:  # the model writes it: counted before it runs
        quota = await usage.consume_message(session, user.id, settings, model=model_name)
    try:
        if body.message_id is not None:
            artifact = await artifact_service.create_from_message(
                session, user.id, body.message_id, kind=body.kind, title=body.title
            )
        else:
            assert body.request is not None
            artifact = await artifact_service.create_from_request(
                session,
                settings,
                get_chat_model(settings),
                user.id,
                request=body.request,
                kind=body.kind,
                title=body.title,
                project_id=body.project_id,
                conversation_id=body.conversation_id,
                max_context_chunks=body.max_context_chunks,
                min_similarity=body.min_similarity,
                model_name=model_name,
            )
    except NotFound as error:
        await usage.refund(session, quota)
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=str(error)) from None
    except LLMError as error:
        await usage.refund(session, quota)
        raise _model_failed(error) from None
    newest = artifact.versions[-1]
    await usage.record_tokens(session, quota, newest.input_tokens, newest.output_tokens)
    return _read(artifact)


@router.get("", response_model=list[ArtifactSummary])
async def list_artifacts(
    user: CurrentUser, session: SessionDep, conversation_id: uuid.UUID | None = None
) -> list[ArtifactSummary]:
    rows = await artifact_service.list_artifacts(session, user.id, conversation_id=conversation_id)
    return [ArtifactSummary.model_validate(row) for row in rows]


@router.get("/{artifact_id}", response_model=ArtifactRead, responses=_NOT_FOUND)
async def get_artifact(artifact: OwnedArtifact) -> ArtifactRead:
    return _read(artifact)


@router.patch(
    "/{artifact_id}", response_model=ArtifactRead, responses={**_NOT_FOUND, **LIMIT_RESPONSES}
)
async def edit_artifact(
    body: ArtifactUpdate, artifact: OwnedArtifact, session: SessionDep, settings: SettingsDep
) -> ArtifactRead:
    """Rename and/or change the content; new content becomes a new version (up to the
    plan's versions per artifact)."""
    if body.content is not None:
        await usage.check_new_artifact_version(
            session, artifact.user_id, settings, len(artifact.versions)
        )
    artifact = await artifact_service.edit_artifact(
        session, artifact, title=body.title, content=body.content
    )
    return _read(artifact)


@router.delete("/{artifact_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_NOT_FOUND)
async def delete_artifact(artifact: OwnedArtifact, session: SessionDep) -> None:
    await artifact_service.delete_artifact(session, artifact)


@router.get(
    "/{artifact_id}/versions", response_model=list[ArtifactVersionRead], responses=_NOT_FOUND
)
async def list_versions(artifact: OwnedArtifact) -> list[ArtifactVersionRead]:
    """Every version, oldest first."""
    return [ArtifactVersionRead.model_validate(v) for v in artifact.versions]


@router.post(
    "/{artifact_id}/regenerate",
    response_model=ArtifactRead,
    responses={**_NOT_FOUND, **_MODEL_FAILED, **LIMIT_RESPONSES},
)
async def regenerate_artifact(
    artifact: OwnedArtifact,
    session: SessionDep,
    settings: SettingsDep,
    model: ModelName | None = None,
) -> ArtifactRead:
    """A new version written by the model from the same request and sources (one
    message of the plan; up to the plan's versions per artifact)."""
    model_name = allowed_model(model, settings)
    await usage.check_new_artifact_version(
        session, artifact.user_id, settings, len(artifact.versions)
    )
    quota = await usage.consume_message(session, artifact.user_id, settings, model=model_name)
    try:
        artifact = await artifact_service.regenerate_artifact(
            session, settings, get_chat_model(settings), artifact, model_name
        )
    except LLMError as error:
        await usage.refund(session, quota)
        raise _model_failed(error) from None
    newest = artifact.versions[-1]
    await usage.record_tokens(session, quota, newest.input_tokens, newest.output_tokens)
    return _read(artifact)


@router.get(
    "/{artifact_id}/export",
    response_class=Response,
    responses={200: {"content": {"text/markdown": {}}}, **_NOT_FOUND},
)
async def export_artifact(
    artifact: OwnedArtifact, version: VersionNumber | None = None
) -> Response:
    """The artifact (current or a given version) as a Markdown file download."""
    if version is not None and not any(v.version == version for v in artifact.versions):
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="Version not found")
    filename = artifact_service.export_filename(artifact)
    return Response(
        content=artifact_service.artifact_to_markdown(artifact, version),
        media_type="text/markdown; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )

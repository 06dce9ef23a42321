"""Artifacts: documents made in a chat (a FAQ, a table, a code snippet), versioned.

An artifact comes either from an assistant message (its answer becomes version
1, the question that led to it is remembered as the request) or from a request
("draft a FAQ from these documents") that the model answers from retrieved
passages. Editing adds a version; regenerating asks the model again with the same
request and the same passages (stored on the artifact) and adds a version. Old
versions are kept and listable.

All functions are scoped to one user: foreign ids behave as unknown (None / NotFound).
"""

from __future__ import annotations

import re
import uuid

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.core.config import Settings
from app.models.conversation import Artifact, ArtifactVersion, Conversation, Message
from app.models.project import Project
from app.schemas.chat import ChatRequest
from app.services.chat import NotFound, find_passages
from app.services.llm.base import ChatModel, ModelRequest, collect
from app.services.passages import Passage
from app.services.prompt import build_artifact_prompt

TITLE_LENGTH = 80


def _title_from(text: str) -> str:
    """The first Markdown heading or the first line, shortened."""
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1].rstrip() + "…"
    return "Untitled artifact"


def _strip_fences(content: str, kind: str) -> str:
    """Models sometimes wrap code in ``` fences although asked not to; the kind says it's code."""
    if kind == "code":
        match = re.fullmatch(r"\s*```[\w+-]*\n(.*?)\n?```\s*", content, flags=re.S)
        if match:
            return match.group(1)
    return content.strip() + "\n"


async def get_artifact(
    session: AsyncSession, user_id: uuid.UUID, artifact_id: uuid.UUID
) -> Artifact | None:
    return await session.scalar(
        select(Artifact)
        .where(Artifact.id == artifact_id, Artifact.user_id == user_id)
        .options(selectinload(Artifact.versions))
    )


async def list_artifacts(
    session: AsyncSession, user_id: uuid.UUID, *, conversation_id: uuid.UUID | None = None
) -> list[Artifact]:
    query = select(Artifact).where(Artifact.user_id == user_id)
    if conversation_id is not None:
        query = query.where(Artifact.conversation_id == conversation_id)
    return list((await session.scalars(query.order_by(Artifact.updated_at.desc()))).all())


async def _reloaded(session: AsyncSession, artifact: Artifact) -> Artifact:
    """The artifact with the values the database set (timestamps) and all its versions."""
    return await session.scalar(
        select(Artifact)
        .where(Artifact.id == artifact.id)
        .options(selectinload(Artifact.versions))
        .execution_options(populate_existing=True)
    )


def current_content(artifact: Artifact) -> str:
    for version in artifact.versions:
        if version.version == artifact.current_version:
            return version.content
    return ""


async def _add_version(
    session: AsyncSession,
    artifact: Artifact,
    content: str,
    origin: str,
    *,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
) -> None:
    # Lock the artifact row so two concurrent edits get distinct version numbers.
    await session.execute(select(Artifact.id).where(Artifact.id == artifact.id).with_for_update())
    await session.refresh(artifact, ["current_version"])
    number = artifact.current_version + 1  # versions only ever get appended
    version = ArtifactVersion(
        version=number,
        content=content,
        origin=origin,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )
    artifact.versions.append(version)
    artifact.current_version = number


async def create_from_message(
    session: AsyncSession,
    user_id: uuid.UUID,
    message_id: uuid.UUID,
    *,
    kind: str,
    title: str | None,
) -> Artifact:
    row = (
        await session.execute(
            select(Message, Conversation)
            .join(Conversation, Message.conversation_id == Conversation.id)
            .where(Message.id == message_id, Conversation.user_id == user_id)
        )
    ).first()
    if row is None or row[0].role != "assistant":
        raise NotFound("Assistant message not found")
    message, conversation = row
    question = await session.scalar(
        select(Message.content)
        .where(
            Message.conversation_id == conversation.id,
            Message.role == "user",
            Message.position < message.position,
        )
        .order_by(Message.position.desc())
        .limit(1)
    )
    passages = [Passage.from_source(source) for source in message.sources]
    artifact = Artifact(
        user_id=user_id,
        project_id=conversation.project_id,
        conversation_id=conversation.id,
        message_id=message.id,
        title=title or _title_from(message.content),
        kind=kind,
        request=question,
        sources=[p.to_dict() for p in passages],
        current_version=0,
        versions=[],
    )
    session.add(artifact)
    await session.flush()
    await _add_version(session, artifact, _strip_fences(message.content, kind), "created")
    await session.commit()
    return await _reloaded(session, artifact)


async def create_from_request(
    session: AsyncSession,
    settings: Settings,
    model: ChatModel,
    user_id: uuid.UUID,
    *,
    request: str,
    kind: str,
    title: str | None,
    project_id: uuid.UUID | None,
    conversation_id: uuid.UUID | None,
    max_context_chunks: int,
    min_similarity: float,
    model_name: str,
) -> Artifact:
    """Ask the model for the artifact. Raises NotFound (foreign ids) or LLMError (model)."""
    if project_id is not None:
        project = await session.get(Project, project_id)
        if project is None or project.owner_id != user_id:
            raise NotFound("Project not found")
    if conversation_id is not None:
        conversation = await session.get(Conversation, conversation_id)
        if conversation is None or conversation.user_id != user_id:
            raise NotFound("Conversation not found")
    search = ChatRequest(
        message=request,
        project_id=project_id,
        max_context_chunks=max_context_chunks,
        min_similarity=min_similarity,
    )
    passages, _ = await find_passages(session, settings, search, project_id)
    content, usage = await _generate(settings, model, request, kind, passages, model_name)
    artifact = Artifact(
        user_id=user_id,
        project_id=project_id,
        conversation_id=conversation_id,
        message_id=None,
        title=title or _title_from(request),
        kind=kind,
        request=request,
        sources=[p.to_dict() for p in passages],
        current_version=0,
        versions=[],
    )
    session.add(artifact)
    await session.flush()
    await _add_version(
        session,
        artifact,
        content,
        "created",
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
    )
    await session.commit()
    return await _reloaded(session, artifact)


async def _generate(
    settings: Settings,
    model: ChatModel,
    request: str,
    kind: str,
    passages: list[Passage],
    model_name: str,
):
    prompt = build_artifact_prompt(request, kind, passages)
    content, usage = await collect(
        model,
        ModelRequest(
            system=prompt.system,
            messages=prompt.messages,
            model=model_name,
            max_tokens=settings.chat_max_tokens,
            temperature=0.3,
            passages=passages,
            question=request,
        ),
    )
    return _strip_fences(content, kind), usage


async def edit_artifact(
    session: AsyncSession, artifact: Artifact, *, title: str | None, content: str | None
) -> Artifact:
    if title is not None:
        artifact.title = title
    if content is not None and content != current_content(artifact):
        await _add_version(session, artifact, content, "edited")
    await session.commit()
    return await _reloaded(session, artifact)


async def regenerate_artifact(
    session: AsyncSession, settings: Settings, model: ChatModel, artifact: Artifact, model_name: str
) -> Artifact:
    """A new version from the same request and passages. Raises LLMError (model)."""
    request = (
        artifact.request or f"Rewrite this {artifact.kind} document:\n\n{current_content(artifact)}"
    )
    passages = [Passage.from_dict(item) for item in artifact.sources]
    content, usage = await _generate(settings, model, request, artifact.kind, passages, model_name)
    await _add_version(
        session,
        artifact,
        content,
        "regenerated",
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
    )
    await session.commit()
    return await _reloaded(session, artifact)


async def delete_artifact(session: AsyncSession, artifact: Artifact) -> None:
    await session.execute(delete(Artifact).where(Artifact.id == artifact.id))
    await session.commit()


def artifact_to_markdown(artifact: Artifact, version: int | None = None) -> str:
    chosen = next(
        (v for v in artifact.versions if v.version == (version or artifact.current_version)), None
    )
    content = chosen.content if chosen else ""
    lines = [f"# {artifact.title}", ""]
    if artifact.kind == "code":
        lines += ["```", content.rstrip("\n"), "```"]
    else:
        lines.append(content.rstrip("\n"))
    if artifact.sources:
        lines += ["", "## Sources", ""]
        for item in artifact.sources:
            where = [item["document_name"]]
            if item.get("page") is not None:
                where.append(f"page {item['page']}")
            if item.get("heading"):
                where.append(f"“{item['heading']}”")
            lines.append(f"[{item['number']}] {', '.join(where)}")
    stamp = chosen.created_at.strftime("%Y-%m-%d %H:%M UTC") if chosen else ""
    lines += ["", f"*Version {chosen.version if chosen else 0}, {stamp}.*"]
    return "\n".join(lines) + "\n"


def export_filename(artifact: Artifact) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", artifact.title).strip("-").lower()[:60] or "artifact"
    return f"{slug}.md"

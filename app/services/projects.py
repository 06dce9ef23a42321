"""Projects: every query is scoped to the owner.

``delete_project`` is the one place where a project and everything it owns goes
away. Rows referencing the project are removed by ``ON DELETE CASCADE``; files on
disk and other resources outside Postgres must be purged here too (the uploaded files
are, below).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.models.document import Document
from app.models.project import Project
from app.services.documents import forget_document_text, purge_project_files


class ProjectNameTakenError(Exception):
    """The owner already has a project with this name."""


async def _name_taken(
    session: AsyncSession, owner_id: uuid.UUID, name: str, exclude: uuid.UUID | None = None
) -> bool:
    query = select(Project.id).where(Project.owner_id == owner_id, Project.name == name)
    if exclude is not None:
        query = query.where(Project.id != exclude)
    return await session.scalar(query) is not None


async def create_project(
    session: AsyncSession, owner_id: uuid.UUID, name: str, description: str = ""
) -> Project:
    if await _name_taken(session, owner_id, name):
        raise ProjectNameTakenError(name)
    project = Project(owner_id=owner_id, name=name, description=description)
    session.add(project)
    await _commit_or_name_taken(session, name)
    await session.refresh(project)
    return project


async def list_projects(session: AsyncSession, owner_id: uuid.UUID) -> Sequence[Project]:
    result = await session.scalars(
        select(Project).where(Project.owner_id == owner_id).order_by(Project.name, Project.id)
    )
    return result.all()


async def get_owned_project(
    session: AsyncSession, owner_id: uuid.UUID, project_id: uuid.UUID
) -> Project | None:
    """The project if it exists AND belongs to ``owner_id`` (else None: callers answer 404)."""
    return await session.scalar(
        select(Project).where(Project.id == project_id, Project.owner_id == owner_id)
    )


async def get_project_by_name(
    session: AsyncSession, owner_id: uuid.UUID, name: str
) -> Project | None:
    return await session.scalar(
        select(Project).where(Project.owner_id == owner_id, Project.name == name)
    )


async def update_project(
    session: AsyncSession, project: Project, *, name: str | None, description: str | None
) -> Project:
    if name is not None and name != project.name:
        if await _name_taken(session, project.owner_id, name, exclude=project.id):
            raise ProjectNameTakenError(name)
        project.name = name
    if description is not None:
        project.description = description
    await _commit_or_name_taken(session, project.name)
    await session.refresh(project)
    return project


async def delete_project(session: AsyncSession, settings: Settings, project: Project) -> None:
    """Delete the project, its rows (FK cascade) and its files."""
    # A Core DELETE lets Postgres cascade (ON DELETE CASCADE) instead of the ORM loading
    # and deleting children one by one.
    await forget_document_text(session, Document.project_id == project.id)
    await session.execute(delete(Project).where(Project.id == project.id))
    await session.commit()
    # Documents and their chunks went with the cascade; the uploaded files are on disk.
    purge_project_files(settings, project.id)


async def _commit_or_name_taken(session: AsyncSession, name: str) -> None:
    try:
        await session.commit()
    except IntegrityError as error:  # lost a race against a concurrent create/rename
        await session.rollback()
        raise ProjectNameTakenError(name) from error

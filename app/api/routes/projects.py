"""/api/projects: a user's knowledge bases. Other users' projects answer 404."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from app.api.billing_errors import LIMIT_RESPONSES
from app.api.deps import CurrentUser, OwnedProject, SessionDep, SettingsDep
from app.schemas.project import ProjectCreate, ProjectRead, ProjectUpdate
from app.services import projects as project_service
from app.services import usage

router = APIRouter(prefix="/projects", tags=["projects"])

_NOT_FOUND = {404: {"description": "Project not found"}}


def _name_taken(name: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_409_CONFLICT,
        detail=f"You already have a project named '{name}'",
    )


@router.post(
    "",
    response_model=ProjectRead,
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "Name taken"}, **LIMIT_RESPONSES},
)
async def create_project(
    body: ProjectCreate, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> ProjectRead:
    # Under a lock on the account until the project is committed: concurrent creates
    # cannot pass the plan's limit together.
    await usage.check_new_project(session, user.id, settings)
    try:
        project = await project_service.create_project(
            session, user.id, body.name, body.description
        )
    except project_service.ProjectNameTakenError:
        raise _name_taken(body.name) from None
    return ProjectRead.model_validate(project)


@router.get("", response_model=list[ProjectRead])
async def list_projects(user: CurrentUser, session: SessionDep) -> list[ProjectRead]:
    projects = await project_service.list_projects(session, user.id)
    return [ProjectRead.model_validate(project) for project in projects]


@router.get("/{project_id}", response_model=ProjectRead, responses=_NOT_FOUND)
async def get_project(project: OwnedProject) -> ProjectRead:
    return ProjectRead.model_validate(project)


@router.patch(
    "/{project_id}",
    response_model=ProjectRead,
    responses={**_NOT_FOUND, 409: {"description": "Name taken"}},
)
async def update_project(
    body: ProjectUpdate, project: OwnedProject, session: SessionDep
) -> ProjectRead:
    try:
        project = await project_service.update_project(
            session, project, name=body.name, description=body.description
        )
    except project_service.ProjectNameTakenError:
        raise _name_taken(body.name or "") from None
    return ProjectRead.model_validate(project)


@router.delete("/{project_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_NOT_FOUND)
async def delete_project(project: OwnedProject, session: SessionDep, settings: SettingsDep) -> None:
    """Delete the project with its documents, chunks, files and conversations."""
    await project_service.delete_project(session, settings, project)

"""Request/response bodies of /api/projects."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from app.schemas.types import given, name, text

ProjectName = name(max_length=200)
ProjectDescription = Annotated[text(max_length=2000), AfterValidator(str.strip)]


class ProjectCreate(BaseModel):
    name: ProjectName
    description: ProjectDescription = ""


class ProjectUpdate(BaseModel):
    """Fields to change; at least one."""

    model_config = ConfigDict(json_schema_extra=given("name", "description"))

    name: ProjectName | None = None
    description: ProjectDescription | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> ProjectUpdate:
        if self.name is None and self.description is None:
            raise ValueError("give at least one of 'name' or 'description'")
        return self


class ProjectRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    description: str = Field(description="Free text about the project.")
    created_at: datetime
    updated_at: datetime

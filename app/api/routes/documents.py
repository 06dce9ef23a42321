"""/api/projects/{project_id}/documents: upload, list, inspect and delete documents.

Uploads are multipart (one or many parts named ``files``), streamed to disk with the
size limit enforced while receiving (see ``app.api.uploads``). The answer is 202:
processing (parse, chunk, embed) happens in the background; poll a document for its
``status`` and ``progress``.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException, Request, Response, status

from app.api.billing_errors import DISK_RESPONSES, LIMIT_RESPONSES
from app.api.deps import OwnedProject, SessionDep, SettingsDep
from app.api.uploads import http_error, receive_files
from app.models.document import Document
from app.schemas.document import DocumentRead, DocumentUploadRead
from app.services import documents as document_service
from app.services import usage
from app.services.uploads import UploadRejected, discard

router = APIRouter(prefix="/projects/{project_id}/documents", tags=["documents"])

_NOT_FOUND = {404: {"description": "Project or document not found"}}
_MULTIPART_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "additionalProperties": False,
                    "properties": {
                        "files": {
                            "type": "array",
                            "minItems": 1,
                            # An empty file is refused (422): say so in the schema.
                            "items": {"type": "string", "format": "binary", "minLength": 1},
                            "description": "PDF, DOCX, Markdown, HTML or plain-text files.",
                        }
                    },
                }
            }
        },
    }
}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=list[DocumentUploadRead],
    openapi_extra=_MULTIPART_BODY,
    responses={
        **_NOT_FOUND,
        409: {"description": "The same content is being uploaded concurrently"},
        413: {"description": "A file is over MAX_UPLOAD_MB, or too many files"},
        415: {"description": "A file's type is not supported (detected from its content)"},
        422: {"description": "Empty file, or a malformed multipart body"},
        **LIMIT_RESPONSES,
        **DISK_RESPONSES,
    },
)
async def upload_documents(
    request: Request, project: OwnedProject, session: SessionDep, settings: SettingsDep
) -> list[DocumentUploadRead]:
    """Upload one or more files; each becomes a document processed in the background.

    A refused request stores nothing. A file whose content the project already has is
    not stored again: its existing document comes back with ``duplicate: true``.
    The plan limits the documents, their total size and each file's size (402).
    """
    usage.check_disk(settings)  # 507 before a byte is written
    try:
        files = await receive_files(request, settings)
    except UploadRejected as error:
        raise http_error(error) from None
    try:
        # Locks the account until the documents are committed (concurrent uploads wait).
        await usage.check_new_documents(
            session, project.owner_id, settings, [staged.size for staged in files]
        )
        kinds = document_service.check_staged(files)
        outcomes = await document_service.register_uploads(session, settings, project, files, kinds)
    except UploadRejected as error:
        raise http_error(error) from None
    finally:
        discard(files)  # whatever was not moved into the project (duplicates, refusals)
    worker = getattr(request.app.state, "ingest_worker", None)
    if worker is not None:
        worker.notify()
    return [
        DocumentUploadRead.model_validate(
            {**DocumentRead.model_validate(o.document).model_dump(), "duplicate": o.duplicate}
        )
        for o in outcomes
    ]


@router.get("", response_model=list[DocumentRead], responses=_NOT_FOUND)
async def list_documents(project: OwnedProject, session: SessionDep) -> list[DocumentRead]:
    documents = await document_service.list_documents(session, project.id)
    return [DocumentRead.model_validate(document) for document in documents]


async def _owned_document(session: SessionDep, project_id: uuid.UUID, document_id: uuid.UUID):
    document = await document_service.get_document(session, project_id, document_id)
    if document is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Document not found")
    return document


@router.get("/{document_id}", response_model=DocumentRead, responses=_NOT_FOUND)
async def get_document(
    document_id: uuid.UUID, project: OwnedProject, session: SessionDep
) -> DocumentRead:
    """A document's status: ``queued``, ``processing`` (with ``progress``), ``ready`` or
    ``failed`` (with ``error``)."""
    document: Document = await _owned_document(session, project.id, document_id)
    return DocumentRead.model_validate(document)


@router.delete("/{document_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_NOT_FOUND)
async def delete_document(
    document_id: uuid.UUID, project: OwnedProject, session: SessionDep, settings: SettingsDep
) -> Response:
    """Delete the document, its chunks and its stored file."""
    document: Document = await _owned_document(session, project.id, document_id)
    await document_service.delete_document(session, settings, document)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect
from starlette.types import Message

from app.auth.dependencies import Authorize, CurrentPrincipal
from app.auth.schemas import Principal
from app.auth.scopes import Scope
from app.datasets import service
from app.datasets.schemas import DatasetKind, DatasetRead, ListMode, RecordedKind
from app.kit.db import DbSession
from app.kit.errors import FieldError, InvalidInput
from app.kit.inputs import Identifier, RowNumber
from app.kit.openapi import problem_responses
from app.kit.settings import Settings
from app.models import Dataset

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

_UPLOAD_DOC = {
    "requestBody": {
        "required": True,
        "description": "The file: a CSV body, or multipart/form-data with a `file` part.",
        "content": {
            "text/csv": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            },
        },
    }
}


def _read(dataset: Dataset) -> DatasetRead:
    return DatasetRead.model_validate(dataset, from_attributes=True)


def _limited(request: Request, limit: int) -> Request:
    """The request, its body cut off with a 413 once past ``limit`` bytes: a multipart body
    is read by starlette's form parser, which has no limit of its own on a file part."""
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise service.too_large(limit)
        return message

    return Request(request.scope, receive)


async def _upload(request: Request, settings: Settings) -> service.Upload:
    """The uploaded file, spooled to disk (``service.spool``).

    Errors: 413 past ``settings.max_upload_bytes`` (from Content-Length, before reading, else
    while reading), 422 for a multipart body without a file part or a body cut off.
    """
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise service.too_large(limit)
    request = _limited(request, limit)
    directory = settings.upload_directory
    try:
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            return await service.spool(
                request.stream(), request.headers.get("x-filename"), directory, limit
            )
        async with request.form() as form:  # closes (removes) the parser's own files
            part = form.get("file")
            if not isinstance(part, UploadFile):
                raise InvalidInput(
                    "A multipart upload needs a `file` part holding the CSV.",
                    errors=[FieldError(loc=("body", "file"), msg="missing file part")],
                )

            async def chunks() -> AsyncIterator[bytes]:
                while chunk := await part.read(1 << 20):
                    yield chunk

            return await service.spool(chunks(), part.filename, directory, limit)
    except ClientDisconnect:
        # Nobody reads this answer; it keeps the log free of a 500 for a client gone away.
        raise InvalidInput(
            "The upload was cut off before the end of the file. Nothing was loaded.",
            errors=[FieldError(loc=("body",), msg="incomplete upload")],
        ) from None


@router.post(
    "",
    operation_id="loadDataset",
    response_model=DatasetRead,
    status_code=201,
    summary="Load a file (all or nothing)",
    description=(
        "Validates every row, then writes every row, or writes nothing: a file with any bad "
        "row is rejected with 422 and the first 100 row errors (`row`, `column`, `msg`). "
        "The same bytes loaded again with the same parameters (kind, provider, as_of, and for "
        "list-entries mode and policy) answer 200 with the existing dataset; with any other "
        "parameter they are a new dataset (201). Without as_of (kinds that allow it) the "
        "load's date is the as_of. list-entries: `mode=append` (the default) adds the entries "
        "to each policy's list; `mode=replace` makes the file the complete list of each policy "
        "it names, or of `policy` when given (every row must then name it; a header-only file "
        "empties that policy's list); a replace dated before the policy's current list is a "
        "409; rows and `policy` must name existing policies (rules: ones they declare). "
        "The `summary` says what changed against the list before (arms-embargoes: against "
        "the provider's list in force at the as_of). A provider's as-of date is never in the "
        "future: an `as_of` (or a row's as_of, decided_on, edition year) after today in UTC "
        "plus one day is a 422."
    ),
    responses={
        200: {"model": DatasetRead, "description": "Already loaded: the existing dataset."},
        **problem_responses(401, 403, 409, 413),
    },
    openapi_extra=_UPLOAD_DOC,
)
async def create_dataset(
    request: Request,
    response: Response,
    session: DbSession,
    principal: Annotated[Principal, Depends(Authorize(Scope.data_write))],
    kind: Annotated[DatasetKind, Query(description="The file's format.")],
    provider: Annotated[str | None, Query(description="Who published the data.")] = None,
    as_of: Annotated[dt.date | None, Query(description="The provider's as-of date.")] = None,
    mode: Annotated[
        ListMode | None,
        Query(description="list-entries only: append (default) or replace the list."),
    ] = None,
    policy: Annotated[
        str | None,
        Query(description="list-entries only: the one policy this file is (part of) the list of."),
    ] = None,
) -> DatasetRead:
    settings: Settings = request.app.state.settings
    upload = await _upload(request, settings)
    try:
        dataset, created = await service.load_dataset(
            session,
            principal.actor,
            kind,
            upload,
            provider=provider,
            as_of=as_of,
            mode=mode,
            policy=policy,
            progress_seconds=settings.load_progress_seconds,
            max_bytes=settings.max_upload_bytes,  # an xlsx workbook's parts, uncompressed
        )
    finally:
        upload.discard()
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"/v1/datasets/{dataset.id}"
    return _read(dataset)


@router.get(
    "",
    operation_id="listDatasets",
    response_model=list[DatasetRead],
    summary="Loads, newest first",
    responses=problem_responses(401),
)
async def list_datasets(
    session: DbSession,
    _: CurrentPrincipal,
    kind: Annotated[
        DatasetKind | RecordedKind | None,
        Query(description="A file format, or published-exclusion-resolution."),
    ] = None,
    provider: Identifier | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[
        RowNumber | None, Query(description="Page: datasets with id < before.")
    ] = None,
) -> list[DatasetRead]:
    """The loads, newest first, optionally only one `kind` or `provider`: each with its
    kind, provider, as-of date, rows, sha256 of the file, who loaded it and when. Page with
    `before` (the last `id` seen) and `limit` (1 to 1000). Any valid key."""
    datasets = await service.list_datasets(
        session, kind=kind, provider=provider, limit=limit, before_id=before
    )
    return [_read(d) for d in datasets]


@router.get(
    "/{dataset_id}",
    operation_id="getDataset",
    response_model=DatasetRead,
    summary="One load: what, from whom, when, by whom",
    responses=problem_responses(401, 404),
)
async def get_dataset(
    dataset_id: RowNumber, session: DbSession, _: CurrentPrincipal
) -> DatasetRead:
    """One load by id: what (kind, file name and sha256, rows, summary), from whom (provider,
    as-of date), when and by which key. 404 for an unknown id. Any valid key."""
    return _read(await service.get_dataset(session, dataset_id))

"""Base classes for request and response bodies."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Schema(BaseModel):
    """Every body the API accepts rejects unknown fields: a typo must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ProblemFieldError(Schema):
    loc: list[str | int] = Field(description="Where the problem is: body path, query name, row.")
    msg: str
    row: int | None = Field(default=None, description="Uploaded files: the line (header = 1).")
    column: str | None = Field(default=None, description="Uploaded files: the column's name.")


class Problem(Schema):
    """RFC 9457 problem details, the shape of every error response."""

    type: str = Field(description="A URI naming the kind of problem (stable, documented).")
    title: str
    status: int
    detail: str = Field(description="What went wrong, in words a person can act on.")
    instance: str | None = Field(default=None, description="The request path.")
    request_id: str | None = Field(default=None, description="Quote this when asking for help.")
    errors: list[ProblemFieldError] | None = None

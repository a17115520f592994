from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from app.kit.inputs import STORABLE, Identifier
from app.kit.schemas import Schema

EntryStatus = Literal["unresolved", "proposed", "confirmed", "revocation_proposed", "rejected"]
StepAction = Literal["propose", "confirm", "reject", "ask-revoke", "keep", "revoke"]
Note = Annotated[str, StringConstraints(min_length=1, max_length=1000), STORABLE]


class ResolutionRead(Schema):
    id: int
    action: StepAction
    issuer_id: str
    confidence: float = Field(
        description="The name match's confidence, 0..1 (1: the normalised names are equal)."
    )
    at: dt.datetime
    by: str = Field(description="The API key name (or cli:<user>) that took the step.")
    note: str | None
    dataset_id: int | None = Field(
        description="confirm and revoke: the dataset recording the issuer fact written "
        "(/v1/datasets/{id}); null when the step wrote none."
    )


class EntryRead(Schema):
    entry_id: str = Field(description="`{dataset_id}-{source_row}`: the load and the file's row.")
    dataset_id: int
    source_row: int
    investor: str
    company: str = Field(description="The company's name exactly as published.")
    criterion: str | None
    decision: str = Field(description="As published (e.g. Exclusion, Observation).")
    action: Literal["exclusion", "observation", "revocation", "observation_ended", "other"] = Field(
        description="What the decision does to the peer_exclusion.* metrics."
    )
    date: str | None = Field(description="As published: YYYY-MM-DD, YYYY-MM, YYYY, or null.")
    date_precision: Literal["day", "month", "year"] | None
    date_kind: str | None
    source_url: str | None
    note: str | None
    status: EntryStatus = Field(
        description="unresolved (never resolved), proposed (awaiting a second key), confirmed "
        "(affects verdicts), revocation_proposed (a key asked to revoke the confirmation, which "
        "stands until another key revokes it), rejected (a proposal rejected or a confirmation "
        "revoked)."
    )
    issuer_id: str | None = Field(description="The issuer of the latest step, if any.")
    confidence: float | None


class EntryDetail(EntryRead):
    resolutions: list[ResolutionRead] = Field(description="Every step, oldest first.")


class EntryList(Schema):
    count: int = Field(description="Entries matching the filters (all of them are listed).")
    entries: list[EntryRead]


class CandidateRead(Schema):
    issuer_id: str
    name: str
    country: str
    confidence: float = Field(description="0..1; 1 only for an exact normalised name match.")
    exact: bool


class CandidateList(Schema):
    entry_id: str
    company: str
    compared_as: list[str] = Field(
        description="The normalised names compared: the name without its legal form and "
        "punctuation, its parts and aliases ('(Former ...)')."
    )
    candidates: list[CandidateRead] = Field(description="Best first, none below 0.7.")


class ProposeRequest(Schema):
    issuer_id: Identifier = Field(description="The issuer the published name stands for.")
    note: Note | None = Field(default=None, description="Why (kept with the step).")


class StepRequest(Schema):
    note: Note | None = Field(default=None, description="Why (kept with the step).")

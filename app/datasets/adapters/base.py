"""What every format adapter provides, and the SQL checks they share.

A load runs in four steps, all inside the request's one transaction:
1. ``parse``: each CSV row is checked on its own (types, identifiers, countries) and turned
   into staged tuples, written in batches to a temporary staging table (COPY on Postgres);
2. ``check``: checks that need the whole file or the database (duplicate keys inside the file,
   unknown issuer references) run as SQL over the staging table;
3. the ``datasets`` row is written (its provenance is final by then: nothing is updated later);
4. ``publish``: one INSERT ... SELECT moves the staged rows into the append-only tables.
Any row error rejects the file: the transaction rolls back and nothing is written.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sqlalchemy import (
    Column,
    ColumnElement,
    Date,
    Integer,
    String,
    Table,
    case,
    func,
    insert,
    literal,
    null,
    select,
    union,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import FromClause, Subquery

from app.datasets.csvfile import CellError, CsvRow, TableFile
from app.datasets.schemas import DatasetKind
from app.kit.countries import UnknownCountry, resolve_country
from app.kit.errors import FieldError
from app.kit.time import latest_provider_date
from app.models import Base, Fact, InstrumentRecord, IssuerRecord

MAX_ROW_ERRORS = 100
# How many examples a load's summary gives of each thing it counts.
SUMMARY_EXAMPLES = 5


def counted(examples: Sequence[Any]) -> dict[str, Any]:
    """A summary part: ``{count, examples}``, the first ``SUMMARY_EXAMPLES`` of ``examples``
    (already in the order to show)."""
    return {"count": len(examples), "examples": list(examples[:SUMMARY_EXAMPLES])}


@dataclass
class LoadContext:
    provider: str
    # The as_of the load was given (None: not given; a row may carry its own, see facts).
    as_of: dt.date | None
    # The dataset's as_of: the one given, else the load's date (UTC).
    dated: dt.date | None = None
    # The id this load's dataset gets (its data version); the data before it is id - 1.
    dataset_id: int = 0
    # list-entries: "append" or "replace", and the policy the load is restricted to ('' none).
    mode: str = ""
    policy: str = ""
    # The latest provider date a row may carry (``latest_provider_date``, fixed per load).
    latest: dt.date = field(default_factory=latest_provider_date)
    # Filled in by adapters: what was set aside and why, stored with the dataset.
    summary: dict[str, Any] = field(default_factory=dict)

    def note(self, key: str, value: Any) -> None:
        self.summary[key] = value


class Adapter(ABC):
    kind: ClassVar[DatasetKind]
    required_columns: ClassVar[tuple[str, ...]]
    # Other spellings of column names found in published files -> the contract's name.
    column_aliases: ClassVar[dict[str, str]] = {}
    default_provider: ClassVar[str | None] = None
    # Vendor data needs the provider's as-of date; reference data defaults to the load date.
    as_of_required: ClassVar[bool] = True
    # Staged columns (``source_row`` is added first, automatically).
    stage_columns: ClassVar[tuple[tuple[str, type[Any]], ...]]
    # Bulk kinds publish each batch as soon as it is staged, so Postgres writes the final
    # table while Python parses the next batch; a failed check still rolls everything back.
    # Others publish once at the end (e.g. when one row's as_of depends on the whole file).
    publishes_in_batches: ClassVar[bool] = False
    # Where each staged text column is finally stored, when ``target`` has no column of the
    # same name: its type's length bounds the staged values (``stage_limits``).
    stored_as: ClassVar[dict[str, Any]] = {}
    # A staged column's name in the file, where they differ (for row errors).
    column_labels: ClassVar[dict[str, str]] = {}

    def begin(self, csvfile: TableFile, ctx: LoadContext) -> None:  # noqa: B027 - optional hook
        """Inspect the header before the rows (e.g. find a year-suffixed column)."""

    @abstractmethod
    def parse(self, row: CsvRow, ctx: LoadContext) -> Iterable[tuple[Any, ...]]:
        """Staged tuples for one row; raise CellError for a bad cell, SkipRow to set it aside."""

    def checked_rows(self, stage: Table, dataset_id: int) -> FromClause:
        """What the whole-file checks read: the stage, or (for adapters publishing in
        batches, whose stage holds one batch at a time) the rows this load published."""
        return stage

    async def check(
        self, conn: AsyncConnection, rows: FromClause, ctx: LoadContext
    ) -> list[FieldError]:
        return []

    def allows_no_rows(self, ctx: LoadContext) -> bool:
        """Whether a header-only file is a meaningful load (by default: no, a 422)."""
        return False

    # Where staged rows go when they go as they are (same column names), see ``publish``.
    target: ClassVar[type[Base] | None] = None
    # The table a load fills most, whose planner statistics a large load refreshes (Postgres):
    # ``target``, or the table an adapter with its own ``publish`` writes (facts, list entries).
    filled: ClassVar[type[Base] | None] = None

    @classmethod
    def filled_table(cls) -> type[Base] | None:
        return cls.filled or cls.target

    async def publish(
        self,
        conn: AsyncConnection,
        stage: Table,
        dataset_id: int,
        ctx: LoadContext,
    ) -> None:
        """Move the staged rows into the final table (by default: every column to ``target``)."""
        assert self.target is not None, f"{type(self).__name__} must set target or publish"
        columns = ["source_row", *(name for name, _ in self.stage_columns)]
        await conn.execute(
            insert(self.target).from_select(
                ["dataset_id", *columns],
                select(literal(dataset_id), *(stage.c[c] for c in columns)),
            )
        )


def _type_length(column: Any) -> int | None:
    """The length of a stored column's string type (``String(n)``, or the ``String(n)`` a
    ``TypeDecorator`` such as ``DecimalText`` is stored as); None when unbounded."""
    sql_type = column.type
    length = getattr(sql_type, "length", None)
    if length is None:
        length = getattr(getattr(sql_type, "impl", None), "length", None)
    return int(length) if length is not None else None


def stage_limits(adapter: type[Adapter]) -> dict[str, int]:
    """Each staged text column -> the most characters the column it is stored in holds.

    Derived from the ORM (``stored_as``, else ``target``'s column of the same name), never
    repeated: a value the database cannot hold is a row error before it is staged, instead of
    a database error (a 500, a traceback) at publish time. ``KeyError`` for a text column
    stored nowhere known: every adapter must say (tests/test_hostile_files.py checks them all).
    """
    table = adapter.target.__table__ if adapter.target is not None else None
    limits: dict[str, int] = {}
    for name, kind in adapter.stage_columns:
        if kind is not str:
            continue
        column = adapter.stored_as.get(name)
        if column is None and table is not None and name in table.c:
            column = table.c[name]
        if column is None:
            raise KeyError(f"{adapter.__name__}: where is staged column {name!r} stored?")
        length = _type_length(column)
        if length is None:
            raise KeyError(f"{adapter.__name__}: {name!r} is stored in an unbounded column")
        limits[name] = length
    return limits


# Characters no text column can hold: Postgres refuses NUL in text (SQLite would keep it,
# and the same file must load alike on both).
_REFUSED_CHARACTERS = "\x00"


class StagedValues:
    """Checks an adapter's staged tuples against what their columns hold (``check``)."""

    def __init__(self, adapter: type[Adapter]) -> None:
        limits = stage_limits(adapter)
        self.checks = [
            (position, adapter.column_labels.get(name, name), limits[name])
            for position, (name, kind) in enumerate(adapter.stage_columns)
            if kind is str
        ]

    def check(self, staged: Iterable[tuple[Any, ...]]) -> None:
        """Raise ``CellError`` (naming the file's column) for a value too long to store or
        holding a character the databases refuse."""
        for values in staged:
            for position, column, limit in self.checks:
                value = values[position]
                if value is None:
                    continue
                if len(value) > limit:
                    raise CellError(
                        column,
                        f"{len(value):,} characters is too long: at most {limit:,} are kept",
                    )
                if _REFUSED_CHARACTERS in value:
                    raise CellError(
                        column,
                        "holds a NUL character (0x00), which no text can: the file is damaged "
                        "or not UTF-8 text",
                    )


def stage_table(name: str, adapter: Adapter) -> Table:
    from sqlalchemy import MetaData

    sql_types: dict[type[Any], Any] = {str: String(), int: Integer(), dt.date: Date()}
    return Table(
        name,
        MetaData(),
        Column("source_row", Integer, nullable=False),
        *(Column(col, sql_types[kind]) for col, kind in adapter.stage_columns),
        prefixes=["TEMPORARY"],
    )


# --------------------------------------------------------------------------- shared checks


async def duplicate_errors(
    conn: AsyncConnection, stage: FromClause, columns: Sequence[str], what: str
) -> list[FieldError]:
    """Rows whose key repeats an earlier row of the same file."""
    keys = [stage.c[c] for c in columns]
    # One scan and a sort (a window over each key), whatever the planner believes about the
    # rows just loaded: a self-join planned on stale statistics went quadratic at 300k rows.
    numbered = select(
        stage.c.source_row,
        func.min(stage.c.source_row).over(partition_by=keys).label("first_row"),
    ).subquery()
    query = (
        select(numbered.c.source_row, numbered.c.first_row)
        .where(numbered.c.source_row != numbered.c.first_row)
        .order_by(numbered.c.source_row)
        .limit(MAX_ROW_ERRORS)
    )
    return [
        FieldError.in_file(row, columns[0], f"duplicate {what}: row {first_row} has the same")
        for row, first_row in (await conn.execute(query)).all()
    ]


def resolve_ref(ref: ColumnElement[str]) -> ColumnElement[str]:
    """The issuer a reference names, by index lookups (for publishing batch by batch).

    Ambiguous references never get here: ``unresolved_ref_errors`` rejects them first.
    """
    ir, inst = IssuerRecord, InstrumentRecord

    def probe(column: Any, source: Any) -> Any:
        return select(source.issuer_id).where(column == ref).limit(1).scalar_subquery()

    return func.coalesce(
        probe(ir.issuer_id, ir),
        probe(ir.lei, ir),
        probe(ir.msci_issuer_id, ir),
        probe(ir.sustainalytics_entity_id, ir),
        probe(inst.isin, inst),
    )


def resolved_refs(stage: FromClause, ref_column: str, dialect: str) -> Subquery:
    """Each distinct reference of the file -> how many issuers it names, and one of them.

    An issuer can be referred to by its issuer_id, LEI, MSCI ISSUERID, Sustainalytics
    EntityId, or the ISIN of one of its instruments, from any load so far. Two equivalent
    forms, because the planners differ: Postgres hash-joins the file's references against one
    UNION of every identifier fastest (1M references: 4.6 s against 8.7 s for the other form);
    SQLite must probe each source through its index from the references (the UNION form took
    it 7 s for 3,000 references, this one 0.06 s).
    """
    refs = select(stage.c[ref_column].label("ref")).distinct().subquery("refs")
    ir, inst = IssuerRecord, InstrumentRecord
    sources = (
        (ir, ir.issuer_id),
        (ir, ir.lei),
        (ir, ir.msci_issuer_id),
        (ir, ir.sustainalytics_entity_id),
        (inst, inst.isin),
    )
    if dialect == "postgresql":
        found = union_all(
            *(
                select(column.label("ref"), source.issuer_id.label("issuer_id")).where(
                    column.is_not(None)
                )
                for source, column in sources
            )
        ).subquery("identifiers")
    else:
        found = union(
            *(
                select(refs.c.ref, source.issuer_id).join(source, column == refs.c.ref)
                for source, column in sources
            )
        ).subquery("found")
    return (
        select(
            refs.c.ref,
            func.count(found.c.issuer_id.distinct()).label("matches"),
            func.min(found.c.issuer_id).label("issuer_id"),
        )
        .select_from(refs.outerjoin(found, found.c.ref == refs.c.ref))
        .group_by(refs.c.ref)
        .subquery("resolved")
    )


async def unresolved_ref_errors(
    conn: AsyncConnection, stage: FromClause, ref_column: str
) -> list[FieldError]:
    resolved = resolved_refs(stage, ref_column, conn.dialect.name)
    query = (
        select(stage.c.source_row, stage.c[ref_column], resolved.c.matches)
        .join(resolved, resolved.c.ref == stage.c[ref_column])
        .where(resolved.c.matches != 1)
        .order_by(stage.c.source_row)
        .limit(MAX_ROW_ERRORS)
    )
    errors = []
    for row, ref, matches in (await conn.execute(query)).all():
        msg = (
            f"unknown issuer {ref!r}: no issuer has this issuer_id, LEI, instrument ISIN or "
            "provider id; load the issuer (and its instruments) first"
            if matches == 0
            else f"ambiguous issuer reference {ref!r}: it names {matches} different issuers"
        )
        errors.append(FieldError.in_file(row, ref_column, msg))
    return errors


def country_cell(column: str, raw: str) -> str:
    """A country cell as ISO alpha-2; unknown countries are row errors naming the value."""
    try:
        return resolve_country(raw).alpha2
    except UnknownCountry as exc:
        raise CellError(column, str(exc)) from None


def provider_date(column: str, value: dt.date, ctx: LoadContext) -> dt.date:
    """A row's provider date (a fact's ``as_of``, a decision's ``decided_on``): a row error
    when after ``ctx.latest``: a provider's as-of date is never in the future."""
    if value > ctx.latest:
        raise CellError(
            column,
            f"{value.isoformat()} is in the future: a provider's as-of date is a day it has "
            f"seen, at most {ctx.latest.isoformat()} (today in UTC plus a day for time zones)",
        )
    return value


def provider_year(column: str, year: int, ctx: LoadContext) -> int:
    """An edition or score year dating a row (Freedom House, TI): not after ``ctx.latest``'s
    year. Then every older period's derived date (``as_of_by_period``) is on or before
    ``ctx.latest`` too, and the newest takes the load's as_of, checked on its own."""
    if year > ctx.latest.year:
        raise CellError(
            column,
            f"{year} is in the future: a published edition or score year is at most "
            f"{ctx.latest.year}",
        )
    return year


def literal_date(value: dt.date) -> ColumnElement[dt.date]:
    return literal(value, Date())


FACT_COLUMNS = (
    "dataset_id",
    "source_row",
    "issuer_id",
    "country",
    "issuer_ref",
    "metric",
    "provider",
    "value",
    "as_of",
    "source_field",
)


async def insert_country_facts(
    conn: AsyncConnection,
    stage: Table,
    dataset_id: int,
    ctx: LoadContext,
    metric: str,
    value: ColumnElement[Any],
    as_of: ColumnElement[dt.date],
    source_field: str,
) -> None:
    """One metric per staged country row into ``facts``."""
    await conn.execute(
        insert(Fact).from_select(
            list(FACT_COLUMNS),
            select(
                literal(dataset_id),
                stage.c.source_row,
                null(),
                stage.c.country,
                null(),
                literal(metric),
                literal(ctx.provider),
                value,
                as_of,
                literal(source_field),
            ).where(value.is_not(None)),
        )
    )


async def as_of_by_period(
    conn: AsyncConnection, stage: Table, column: str, ctx: LoadContext, year_offset: int
) -> ColumnElement[dt.date]:
    """For files holding several editions or years: each is its own point in time.

    The newest takes the load's ``as_of``; an older period P is dated 1 January of
    P + ``year_offset`` (when that edition became the current one).
    """
    assert ctx.as_of is not None
    periods = sorted(
        p for p in (await conn.execute(select(stage.c[column]).distinct())).scalars() if p
    )
    if not periods:
        return literal_date(ctx.as_of)
    newest = periods[-1]
    ctx.note("periods", [int(p) for p in periods])
    return case(
        {
            p: literal_date(ctx.as_of if p == newest else dt.date(int(p) + year_offset, 1, 1))
            for p in periods
        },
        value=stage.c[column],
        else_=literal_date(ctx.as_of),
    )


async def one_date_errors(
    conn: AsyncConnection, stage: FromClause, key: str, statement: str
) -> list[FieldError]:
    """Rows dated (``as_of``) otherwise than the first row of the same ``key``: a load states
    one report per key (a portfolio's position report, a fund's composition) as of one date.
    ``statement`` names what a key's rows are, with ``{key}`` for its value."""
    first = (
        func.first_value(stage.c.as_of, type_=stage.c.as_of.type)
        .over(partition_by=stage.c[key], order_by=stage.c.source_row)
        .label("first")
    )
    numbered = select(
        stage.c.source_row,
        stage.c[key].label("key"),
        stage.c.as_of,
        first,
        func.min(stage.c.source_row).over(partition_by=stage.c[key]).label("first_row"),
    ).subquery()
    query = (
        select(numbered)
        .where(numbered.c.as_of != numbered.c.first)
        .order_by(numbered.c.source_row)
        .limit(MAX_ROW_ERRORS)
    )
    return [
        FieldError.in_file(
            r.source_row,
            "as_of",
            f"{r.as_of.isoformat()} differs from {r.first.isoformat()} (row {r.first_row}): "
            f"a load is {statement.format(key=r.key)} as of one date",
        )
        for r in await conn.execute(query)
    ]

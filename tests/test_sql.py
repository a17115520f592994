"""``app.kit.sql.one_of``: one array parameter on Postgres, a plain IN elsewhere.

Its results are exercised on both databases by every snapshot read (tests/test_checks.py,
tests/test_index.py, tests/test_portfolio_checks.py ...); here, what it renders.
"""

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from app.kit.sql import one_of
from app.models import InstrumentRecord


def test_postgres_gets_one_array_parameter_whatever_the_number_of_values() -> None:
    values = [f"XS{n:010d}" for n in range(10_000)]
    query = select(InstrumentRecord.isin).where(one_of(InstrumentRecord.isin, values))
    compiled = query.compile(dialect=postgresql.dialect())  # type: ignore[no-untyped-call]
    assert "= ANY (" in str(compiled)
    assert list(compiled.params.values()) == [values]


def test_sqlite_gets_a_plain_in() -> None:
    query = select(InstrumentRecord.isin).where(one_of(InstrumentRecord.isin, ["A", "B"]))
    compiled = query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True})
    assert "IN ('A', 'B')" in str(compiled)


def test_no_values_match_nothing_on_either() -> None:
    query = select(InstrumentRecord.isin).where(one_of(InstrumentRecord.isin, []))
    pg = postgresql.dialect()  # type: ignore[no-untyped-call]
    assert "= ANY (" in str(query.compile(dialect=pg))
    rendered = str(query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
    assert "IN (" in rendered or "1 != 1" in rendered

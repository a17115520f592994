"""Every table that holds records of record refuses UPDATE, DELETE and (Postgres) TRUNCATE.

The tables come from the models' metadata, so a new table is covered by default: it must be
protected by its migration, or be named in ``MUTABLE`` with the reason it may change.
"""

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from app.auth.schemas import Actor
from app.auth.scopes import Scope
from app.decisions import service as decisions_service
from app.models import Base
from tests.conftest import MakeKey, bearer
from tests.support.checks import open_desk
from tests.support.datasets import FIXTURES, load_ok, real_file
from tests.support.policies import post_document, shipped

# Tables whose rows the service legitimately changes, and why.
MUTABLE = {
    "api_keys": "a key is revoked in place (revoked_at); keys are credentials, not records",
    "console_sessions": "a console session is ended in place (ended_at, ended_why); sessions "
    "are credentials like keys (never deleted by the service, kept as who signed in when)",
}
RECORDS = sorted(t.name for t in Base.metadata.sorted_tables if t.name not in MUTABLE)
REFUSED = "append-only|immutable"


async def test_every_table_of_record_refuses_update_delete_and_truncate(
    client: httpx.AsyncClient,
    make_key: MakeKey,
    connection: AsyncConnection,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    assert set(MUTABLE) <= {t.name for t in Base.metadata.sorted_tables}
    # A row in every table (row triggers never fire on an empty table): the universe, both
    # policies approved, a draft, every kind of list, a portfolio and its holdings, a fund's
    # composition, a decision and a checkpoint.
    desk = await open_desk(client, make_key)
    await desk.clean("PMI")
    await load_ok(
        client, desk.steward, "arms-embargoes", FIXTURES / "arms_embargoes.csv", as_of="2025-10-01"
    )
    await load_ok(
        client, desk.steward, "list-entries", FIXTURES / "list_entries.csv", mode="replace"
    )
    await load_ok(
        client,
        desk.steward,
        "ofac-ns-cmic",
        real_file("ofac_ns_cmic/ofac_ns_cmic_entities.csv"),
        as_of="2025-04-21",
    )
    author = await make_key(Scope.policies_write, name="another-author")
    draft = await post_document(client, "asr", shipped("asr"), bearer(author))
    assert draft.status_code == 201, draft.text  # a draft: deleting it is refused too
    await load_ok(
        client,
        desk.steward,
        "portfolios",
        "portfolio_id,name,policy,account,base_currency\nHOUSE,House book,rpf,own,EUR\n",
    )
    await load_ok(
        client,
        desk.steward,
        "holdings",
        "portfolio_id,isin,quantity,market_value\nHOUSE,US7181721090,100,9500\n",
    )
    await load_ok(
        client,
        desk.steward,
        "gleif-relationships",
        "start_node_lei,end_node_lei,relationship_type,relationship_status,rr_registration_status\n"
        "213800X65BJZAEPM4W02,21380068P1DRHMJ8KU70,IS_DIRECTLY_CONSOLIDATED_BY,ACTIVE,PUBLISHED\n",
        as_of="2025-05-15",
    )
    await load_ok(
        client,
        desk.steward,
        "fund-holdings",
        "fund_isin,holding_ref,weight_pct\nXS0000000017,US7181721090,100\n",
    )
    published = await load_ok(
        client,
        desk.steward,
        "published-exclusions",
        "investor,company,criterion,decision,date\nKLP,Philip Morris,Tobacco,Exclusion,2015\n",
    )
    proposed = await client.post(
        f"/v1/published-exclusions/{published['id']}-2/proposals",
        json={"issuer_id": "PMI"},
        headers=bearer(desk.steward),
    )
    assert proposed.status_code == 201, proposed.text
    await desk.check("US7181721090")
    async with sessionmaker() as session:
        await decisions_service.record_checkpoint(session, 1, Actor(name="ops", key_id=None))
        await session.commit()

    postgres = connection.dialect.name == "postgresql"
    for table in RECORDS:
        count = f"SELECT count(*) FROM {table}"
        before = (await connection.execute(text(count))).scalar_one()
        assert before > 0, f"{table} has no rows: the test cannot show its row triggers work"
        column = Base.metadata.tables[table].columns.keys()[0]
        statements = [f"UPDATE {table} SET {column} = {column}", f"DELETE FROM {table}"]
        if postgres:  # SQLite has no TRUNCATE
            statements.append(f"TRUNCATE {table} CASCADE")
        for statement in statements:
            with pytest.raises(DBAPIError, match=REFUSED):
                async with connection.begin_nested():
                    await connection.execute(text(statement))
        assert (await connection.execute(text(count))).scalar_one() == before, table

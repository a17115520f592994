"""`mayhold demo`'s data: the shipped policies approved, and the sample universe loaded."""

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.demo import SHIPPED_POLICIES, generate, load_demo
from app.models import Dataset, PolicyVersion


async def test_demo_loads_once_through_the_real_loaders(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session:
        examples = await load_demo(session)
        datasets = (await session.execute(select(func.count(Dataset.id)))).scalar_one()
        approved = (
            await session.execute(select(func.count()).where(PolicyVersion.status == "approved"))
        ).scalar_one()
        again = await load_demo(session)  # a second start loads nothing more
        assert (await session.execute(select(func.count(Dataset.id)))).scalar_one() == datasets
        await session.rollback()
    assert datasets == 12  # ... including the country financial sanctions (facts)
    assert approved == len(SHIPPED_POLICIES)
    assert again == examples
    assert {"clean company", "tobacco producer", "sovereign RU"} <= set(examples)


def test_generated_universe_exercises_the_rules() -> None:
    universe = generate(companies=400)
    assert any(i.get("parent_control_pct") == "50" for i in universe.issuers)
    assert any(i.get("state_owner_pct") == "50" for i in universe.issuers)
    assert any(i["asset_class"] == "derivative" for i in universe.instruments)
    assert any(f["value"] == "96.4" for f in universe.facts)
    assert any(m["UNCONV_OIL_GAS_MAX_REV_PCT"] == "5-9.9" for m in universe.msci)
    assert generate(companies=400).facts == universe.facts  # seeded: the same every run

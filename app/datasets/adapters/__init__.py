"""One adapter per file format; ``ADAPTERS`` maps a dataset kind to its adapter."""

from app.datasets.adapters.arms_embargoes import ArmsEmbargoesAdapter
from app.datasets.adapters.base import Adapter
from app.datasets.adapters.facts import FactsAdapter
from app.datasets.adapters.freedom_house import FreedomHouseAdapter
from app.datasets.adapters.fund_holdings import FundHoldingsAdapter
from app.datasets.adapters.gleif_relationships import GleifRelationshipsAdapter
from app.datasets.adapters.holdings import HoldingsAdapter
from app.datasets.adapters.instruments import InstrumentsAdapter
from app.datasets.adapters.issuers import IssuersAdapter
from app.datasets.adapters.ituc import ItucAdapter
from app.datasets.adapters.list_entries import ListEntriesAdapter
from app.datasets.adapters.msci_esg import MsciEsgAdapter
from app.datasets.adapters.ofac_ns_cmic import OfacNsCmicAdapter
from app.datasets.adapters.portfolios import PortfoliosAdapter
from app.datasets.adapters.published_exclusions import PublishedExclusionsAdapter
from app.datasets.adapters.ti_cpi import TiCpiAdapter
from app.datasets.schemas import DatasetKind

ADAPTERS: dict[DatasetKind, type[Adapter]] = {
    adapter.kind: adapter
    for adapter in (
        IssuersAdapter,
        InstrumentsAdapter,
        FactsAdapter,
        MsciEsgAdapter,
        FreedomHouseAdapter,
        TiCpiAdapter,
        ItucAdapter,
        ArmsEmbargoesAdapter,
        OfacNsCmicAdapter,
        ListEntriesAdapter,
        PortfoliosAdapter,
        HoldingsAdapter,
        GleifRelationshipsAdapter,
        FundHoldingsAdapter,
        PublishedExclusionsAdapter,
    )
}

__all__ = ["ADAPTERS", "Adapter"]

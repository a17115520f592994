"""The kinds of data file a load accepts, and how a list load relates to the list.

Plain enums without Pydantic: the command line builds its ``--kind`` choices from them, and
``mayhold --help`` imports nothing heavier (``app.datasets.schemas`` re-exports them).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal


class DatasetKind(StrEnum):
    issuers = "issuers"
    instruments = "instruments"
    facts = "facts"
    msci_esg = "msci-esg"
    freedom_house = "freedom-house"
    ti_cpi = "ti-cpi"
    ituc = "ituc"
    arms_embargoes = "arms-embargoes"
    ofac_ns_cmic = "ofac-ns-cmic"
    list_entries = "list-entries"
    portfolios = "portfolios"
    holdings = "holdings"
    gleif_relationships = "gleif-relationships"
    fund_holdings = "fund-holdings"
    published_exclusions = "published-exclusions"


# How a list-entries load relates to the policy's list (contract, "Loads that replace a list"):
# ``append`` adds its entries; ``replace`` makes the file the complete list.
ListMode = Literal["append", "replace"]

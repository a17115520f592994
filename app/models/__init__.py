"""Every ORM model, imported here so Alembic and the mappers see the whole schema."""

from app.models.api_key import ApiKey
from app.models.base import Base
from app.models.console import ConsoleSession
from app.models.consolidation import ConsolidationRecord
from app.models.dataset import (
    ArmsEmbargo,
    Dataset,
    Fact,
    InstrumentRecord,
    IssuerRecord,
    ListEntry,
    ListReplacement,
    SanctionsListEntry,
)
from app.models.decision import VERDICTS, Decision, DecisionCheckpoint
from app.models.fund import FundComposition, FundHolding
from app.models.policy import ImmutableVersionError, Policy, PolicyVersion, VersionStatus
from app.models.portfolio import Holding, HoldingsReport, PortfolioRecord
from app.models.published_exclusion import ExclusionResolution, PublishedExclusion

__all__ = [
    "VERDICTS",
    "ApiKey",
    "ArmsEmbargo",
    "Base",
    "ConsoleSession",
    "ConsolidationRecord",
    "Dataset",
    "Decision",
    "DecisionCheckpoint",
    "ExclusionResolution",
    "Fact",
    "FundComposition",
    "FundHolding",
    "Holding",
    "HoldingsReport",
    "ImmutableVersionError",
    "InstrumentRecord",
    "IssuerRecord",
    "ListEntry",
    "ListReplacement",
    "Policy",
    "PolicyVersion",
    "PortfolioRecord",
    "PublishedExclusion",
    "SanctionsListEntry",
    "VersionStatus",
]

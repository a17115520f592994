"""A typed Python client for mayhold ("may we hold X?"): ``Client`` and ``AsyncClient``.

from mayhold_client import Client

with Client("https://mayhold.example", api_key) as mayhold:
    decision = mayhold.check("rpf", instrument="US7181721090")
    if not decision.may_hold:
        ...
"""

from mayhold_client.client import AsyncClient, Client
from mayhold_client.errors import (
    Conflict,
    FieldError,
    MayholdError,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
    ValidationError,
)
from mayhold_client.models import (
    Audit,
    ChainVerification,
    Decision,
    Evidence,
    ListDownload,
    ListRow,
    Order,
    PolicyRef,
    Reason,
    StoredDecision,
    Verdict,
)

__all__ = [
    "AsyncClient",
    "Audit",
    "ChainVerification",
    "Client",
    "Conflict",
    "Decision",
    "Evidence",
    "FieldError",
    "ListDownload",
    "ListRow",
    "MayholdError",
    "NotAuthenticated",
    "NotFound",
    "Order",
    "PermissionDenied",
    "PolicyRef",
    "Reason",
    "ServiceUnavailable",
    "StoredDecision",
    "ValidationError",
    "Verdict",
]

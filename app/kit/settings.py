"""One settings object for the whole service, read from ``MAYHOLD_*`` environment variables."""

from __future__ import annotations

import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_CHECKOUT = Path(__file__).resolve().parents[2]
# Where migrations/, policies/ and openapi/ are: the source checkout (also an editable
# install), else the copies an installed wheel carries inside the package (pyproject.toml,
# tool.hatch.build.targets.wheel.force-include).
REPO_ROOT = (
    _CHECKOUT
    if (_CHECKOUT / "migrations").is_dir()
    else Path(__file__).resolve().parents[1] / "_bundled"
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MAYHOLD_", extra="ignore")

    # The zero-setup default is a SQLite file in the working directory; production sets a
    # ``postgresql+asyncpg://`` URL.
    database_url: str = "sqlite+aiosqlite:///./mayhold.db"
    database_pool_size: int = Field(default=10, ge=1)
    # Connect timeout (seconds): an unreachable database must fail fast, not hang a pre-trade check.
    database_connect_timeout: float = Field(default=3.0, gt=0)

    # Readiness probe budget (seconds).
    readiness_timeout: float = Field(default=2.0, gt=0)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # JSON lines by default; "console" is easier on the eyes in a terminal.
    log_format: Literal["json", "console"] = "json"

    metrics_enabled: bool = True

    # Verified API keys are remembered this long (seconds; 0: never). A revocation through this
    # process takes effect at once; through another process, within this time.
    auth_cache_seconds: float = Field(default=5.0, ge=0)

    # Current-time checks answered from a compiled in-memory index (see app/screening/index.py).
    index_enabled: bool = True
    index_poll_seconds: float = Field(default=0.5, gt=0)

    # Data loads: the largest file accepted (bytes; a larger upload is a 413), where uploads
    # are held while loaded (default: ``mayhold-uploads-<uid>`` in the system's temporary
    # directory; stale files there are removed at start), and how often a long load logs its
    # progress (seconds).
    max_upload_bytes: int = Field(default=1 << 30, ge=1)
    upload_dir: Path | None = None
    load_progress_seconds: float = Field(default=10.0, ge=0)

    # Decision-log checkpoints (app/decisions/signing.py). ``checkpoint_key_file``: the PEM
    # Ed25519 private key that signs new checkpoints (``mayhold checkpoints keygen``); unset,
    # checkpoints are recorded unsigned. ``checkpoint_trusted_keys``: PEM public keys verify
    # accepts signatures of, besides the signing key's own (comma-separated paths; an auditor
    # sets only these). ``require_signed_checkpoints``: verify reports an unsigned checkpoint
    # as a problem (without it, as ``unsigned``, never as signed).
    checkpoint_key_file: Path | None = None
    checkpoint_trusted_keys: Annotated[tuple[Path, ...], NoDecode] = ()
    require_signed_checkpoints: bool = False

    # Decision-log partitions (Postgres only; app/decisions/partitions.py). The log is
    # partitioned by seq range; a job keeps ``decision_partitions_ahead`` empty partitions
    # ahead of the head, each sized for ``decision_partition_days`` days at the busiest UTC day
    # of the last 30 and today so far (0: the minimum only), and never smaller than
    # ``decision_partition_min_rows`` (decisions). The service runs the job at start and then
    # every ``decision_partition_interval_seconds`` (0: never; cron ``mayhold decisions
    # partitions`` instead). It is cheap (a lock, a catalog read, 32 index probes), so it runs
    # often: the room ahead (2 x 1,000,000 on a new log) must outlast an interval at peak.
    decision_partition_min_rows: int = Field(default=1_000_000, ge=1)
    decision_partitions_ahead: int = Field(default=2, ge=1)
    decision_partition_days: int = Field(default=31, ge=0)
    decision_partition_interval_seconds: float = Field(default=60.0, ge=0)

    # Where the Alembic scripts live; the default is the repository's own ``migrations/``.
    migrations_dir: Path = REPO_ROOT / "migrations"

    @field_validator("checkpoint_trusted_keys", mode="before")
    @classmethod
    def _paths(cls, value: object) -> object:
        # From the environment: "a.pem,b.pem" (a JSON list would be noisy to write).
        if isinstance(value, str):
            return tuple(Path(part.strip()) for part in value.split(",") if part.strip())
        return value

    @property
    def upload_directory(self) -> Path:
        return self.upload_dir or Path(tempfile.gettempdir()) / f"mayhold-uploads-{os.getuid()}"

    @property
    def dialect(self) -> str:
        return self.database_url.split(":", 1)[0].split("+", 1)[0]


@lru_cache
def get_settings() -> Settings:
    return Settings()

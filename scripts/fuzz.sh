#!/usr/bin/env bash
# The long Schemathesis run, on demand: tests/test_fuzz.py with many examples per operation and
# generation mode (default 200), on Postgres and SQLite, printing requests and statuses.
#   scripts/fuzz.sh [EXAMPLES] [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
source scripts/ensure_postgres.sh
ensure_venv ".[dev]"
ensure_postgres
examples="${1:-200}"
shift || true
MAYHOLD_FUZZ_EXAMPLES="$examples" .venv/bin/pytest -q -s tests/test_fuzz.py "$@"

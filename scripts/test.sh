#!/usr/bin/env bash
# Install everything and run the whole test suite: lint, types, migrations check, tests on
# Postgres and SQLite. This is the command CI runs (.ci/run). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
source scripts/ensure_postgres.sh

ensure_venv ".[dev]" client  # client/: the Python client (mayhold_client), its own distribution
ensure_tools
ensure_chromium
ensure_spectral  # the OpenAPI linter tests/test_openapi_lint.py runs
ensure_postgres
echo "== postgres: ${MAYHOLD_TEST_POSTGRES_URL}"

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy (strict)"
.venv/bin/mypy
echo "== alembic check (models and migrations agree; both dialects also in tests/test_migrations.py)"
scratch=$(mktemp -d)
MAYHOLD_DATABASE_URL="sqlite+aiosqlite:///$scratch/check.db" .venv/bin/mayhold migrate >/dev/null 2>&1
MAYHOLD_DATABASE_URL="sqlite+aiosqlite:///$scratch/check.db" .venv/bin/alembic check
rm -rf "$scratch"
echo "== pytest"
.venv/bin/pytest "$@"

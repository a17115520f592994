#!/usr/bin/env bash
# Install and run mayhold on its embedded default (a SQLite file, ./mayhold.db) with sample
# data, printing an admin key and example calls. Extra arguments go to `mayhold demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_venv "."
exec .venv/bin/mayhold demo "$@"

# Sourced by scripts/test.sh. Exports MAYHOLD_TEST_POSTGRES_URL: an admin URL of a Postgres
# server where the test suite may create and drop databases.
#
# 1. MAYHOLD_TEST_POSTGRES_URL already set and answering: use it.
# 2. 127.0.0.1:5432 answers as user postgres without a password: use it.
# 3. Otherwise start a throwaway cluster (initdb + pg_ctl, trust auth) under a temp dir,
#    installing Debian's postgresql package first if no server binaries are present.
#    It is stopped and removed when the calling script exits.

pg_answers() {
  .venv/bin/python - "$1" <<'PY' >/dev/null 2>&1
import asyncio, sys
import asyncpg
url = sys.argv[1].replace("postgresql+asyncpg://", "postgresql://")
async def main() -> None:
    conn = await asyncpg.connect(url, timeout=3)
    await conn.close()
asyncio.run(main())
PY
}

pg_bindir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

start_throwaway_postgres() {
  local bindir owner datadir port
  bindir=$(pg_bindir)
  if [ -z "$bindir" ]; then
    echo "ensure_postgres: no PostgreSQL server binaries; installing Debian's postgresql" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
    bindir=$(pg_bindir)
  fi
  [ -n "$bindir" ] || { echo "ensure_postgres: could not install PostgreSQL" >&2; return 1; }

  PG_THROWAWAY_DIR=$(mktemp -d /tmp/mayhold-pg.XXXXXX)
  datadir="$PG_THROWAWAY_DIR/data"
  port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  owner=$(id -un)
  if [ "$(id -u)" -eq 0 ]; then  # initdb refuses to run as root
    owner=postgres
    id -u "$owner" >/dev/null 2>&1 || useradd --system --no-create-home "$owner"
    chown "$owner" "$PG_THROWAWAY_DIR"
  fi
  as_owner() { if [ "$(id -un)" = "$owner" ]; then "$@"; else runuser -u "$owner" -- "$@"; fi; }
  as_owner "$bindir/initdb" -D "$datadir" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
  as_owner "$bindir/pg_ctl" -D "$datadir" -l "$PG_THROWAWAY_DIR/server.log" -w -o \
    "-p $port -k $PG_THROWAWAY_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
    start >/dev/null
  PG_THROWAWAY_STOP="$bindir/pg_ctl -D $datadir -m immediate stop"
  PG_THROWAWAY_OWNER=$owner
  trap 'stop_throwaway_postgres' EXIT
  export MAYHOLD_TEST_POSTGRES_URL="postgresql+asyncpg://postgres@127.0.0.1:$port/postgres"
  echo "ensure_postgres: started a throwaway PostgreSQL on 127.0.0.1:$port" >&2
}

stop_throwaway_postgres() {
  if [ -n "${PG_THROWAWAY_STOP:-}" ]; then
    if [ "$(id -un)" = "$PG_THROWAWAY_OWNER" ]; then $PG_THROWAWAY_STOP >/dev/null 2>&1 || true
    else runuser -u "$PG_THROWAWAY_OWNER" -- $PG_THROWAWAY_STOP >/dev/null 2>&1 || true; fi
    rm -rf "$PG_THROWAWAY_DIR"
  fi
}

ensure_postgres() {
  if [ -n "${MAYHOLD_TEST_POSTGRES_URL:-}" ] && pg_answers "$MAYHOLD_TEST_POSTGRES_URL"; then
    return 0
  fi
  local default_url="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
  if [ -z "${MAYHOLD_TEST_THROWAWAY_POSTGRES:-}" ] && pg_answers "$default_url"; then
    export MAYHOLD_TEST_POSTGRES_URL="$default_url"
    return 0
  fi
  start_throwaway_postgres
}

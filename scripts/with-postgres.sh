#!/usr/bin/env bash
# Run a command against PostgreSQL, the reference database for the test suite.
#   1. BRICKBOOK_TEST_DATABASE_URL or a postgres DATABASE_URL in the environment: use that server.
#   2. Otherwise start a throwaway cluster (initdb in a temporary folder, its own port, fsync off)
#      and remove it when the command ends. Installs PostgreSQL from Debian if it is missing.
set -euo pipefail

if [[ "${BRICKBOOK_TEST_DATABASE_URL:-}" == postgres* ]]; then
  export DATABASE_URL="$BRICKBOOK_TEST_DATABASE_URL"
fi
if [[ "${DATABASE_URL:-}" == postgres* ]]; then
  echo "with-postgres: using the server given by the environment"
  export BRICKBOOK_EXPECT_DB=postgresql
  exec "$@"
fi

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [[ -z "$pg_bin" ]]; then
  echo "with-postgres: installing PostgreSQL from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi

workdir=$(mktemp -d /tmp/brickbook-pg.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_owner=()
if [[ $(id -u) -eq 0 ]]; then
  # PostgreSQL refuses to run as root.
  chown postgres "$workdir"
  as_owner=(runuser -u postgres --)
fi

cleanup() {
  "${as_owner[@]}" "$pg_bin/pg_ctl" -D "$workdir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$workdir"
}
trap cleanup EXIT

"${as_owner[@]}" "$pg_bin/initdb" -D "$workdir/data" -U postgres -A trust --no-sync -E UTF8 >/dev/null
"${as_owner[@]}" "$pg_bin/pg_ctl" -D "$workdir/data" -l "$workdir/log" -w -o \
  "-p $port -k $workdir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
  start >/dev/null
echo "with-postgres: throwaway PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port"

export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
export BRICKBOOK_EXPECT_DB=postgresql
"$@"

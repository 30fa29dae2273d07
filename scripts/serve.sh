#!/usr/bin/env bash
# `make serve`: the production runtime on one machine — gunicorn, a Celery worker and Celery beat
# against PostgreSQL (DATABASE_URL) and Redis (CELERY_BROKER_URL), after migrate and the demo seed
# (idempotent). Ctrl-C (or SIGTERM) stops everything this script started, and only that.
#
# DATABASE_URL unset: a persistent PostgreSQL cluster under var/postgres (created on first use,
#   kept between runs, stopped on exit). CELERY_BROKER_URL unset: the local redis-server on
#   127.0.0.1:6379 if it answers, else a private one under var/redis on SERVE_REDIS_PORT.
# Knobs: HOST (127.0.0.1), PORT (8000), WEB_WORKERS (2), CELERY_CONCURRENCY (2),
#   SERVE_PG_PORT (54329), SERVE_SHARED_REDIS_PORT (6379), SERVE_REDIS_PORT (private: 6390),
#   SERVE_REDIS_DB (1), SERVE_SKIP_DEMO (unset).
# Across machines: run the same three programs with the same DATABASE_URL, CELERY_BROKER_URL and
# AWS_STORAGE_BUCKET_NAME on each (see README, "Running in production"); beat on one machine only.
set -euo pipefail
cd "$(dirname "$0")/.."

VAR_DIR=${BRICKBOOK_VAR_DIR:-$PWD/var}
PYTHON=.venv/bin/python
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
pids=()
pg_data=""
as_postgres=()
[[ $(id -u) -eq 0 ]] && as_postgres=(runuser -u postgres --)

log() { echo "serve: $*"; }

port_answers() {  # host port: something accepts connections there
  python3 -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1)' "$1" "$2" 2>/dev/null
}

redis_answers() {  # port: a Redis server replies PONG there
  python3 - "$1" <<'EOF' 2>/dev/null
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1) as s:
    s.sendall(b"PING\r\n")
    sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
EOF
}

stop_all() {
  trap - INT TERM EXIT
  log "stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ -n "$pg_data" ]]; then
    "${as_postgres[@]}" "$pg_bin/pg_ctl" -D "$pg_data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  log "stopped"
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap stop_all EXIT

start_postgres() {
  local port=${SERVE_PG_PORT:-54329}
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [[ -z "$pg_bin" ]]; then
    log "installing PostgreSQL from Debian"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  pg_data="$VAR_DIR/postgres/data"
  mkdir -p "$VAR_DIR/postgres"
  [[ ${#as_postgres[@]} -gt 0 ]] && chown postgres "$VAR_DIR/postgres"
  if [[ ! -f "$pg_data/PG_VERSION" ]]; then
    log "creating a PostgreSQL cluster in $pg_data (kept between runs)"
    "${as_postgres[@]}" "$pg_bin/initdb" -D "$pg_data" -U postgres -A trust -E UTF8 >/dev/null
  fi
  if port_answers 127.0.0.1 "$port"; then
    log "port $port is taken: set SERVE_PG_PORT, or DATABASE_URL to use a server you run"
    pg_data=""
    exit 1
  fi
  "${as_postgres[@]}" "$pg_bin/pg_ctl" -D "$pg_data" -l "$VAR_DIR/postgres/log" -w \
    -o "-p $port -k $VAR_DIR/postgres -c listen_addresses=127.0.0.1" start >/dev/null
  "${as_postgres[@]}" "$pg_bin/psql" -h 127.0.0.1 -p "$port" -U postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'brickbook'" | grep -q 1 ||
    "${as_postgres[@]}" "$pg_bin/createdb" -h 127.0.0.1 -p "$port" -U postgres brickbook
  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/brickbook"
  log "PostgreSQL under var/postgres on 127.0.0.1:$port"
}

start_redis() {
  local db=${SERVE_REDIS_DB:-1} port=${SERVE_REDIS_PORT:-6390} shared=${SERVE_SHARED_REDIS_PORT:-6379}
  if redis_answers "$shared"; then
    export CELERY_BROKER_URL="redis://127.0.0.1:$shared/$db"
    log "broker: the local Redis on 127.0.0.1:$shared (database $db)"
    return
  fi
  if ! redis_answers "$port"; then
    command -v redis-server >/dev/null || bash scripts/system-deps.sh
    mkdir -p "$VAR_DIR/redis"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$VAR_DIR/redis" --save "" \
      --appendonly yes --daemonize no >"$VAR_DIR/redis/log" 2>&1 &
    pids+=($!)
    for _ in $(seq 50); do redis_answers "$port" && break; sleep 0.1; done
    log "broker: a private Redis on 127.0.0.1:$port (data in var/redis)"
  fi
  export CELERY_BROKER_URL="redis://127.0.0.1:$port/$db"
}

mkdir -p "$VAR_DIR"
[[ -n "${DATABASE_URL:-}" ]] && log "database: DATABASE_URL from the environment" || start_postgres
[[ -n "${CELERY_BROKER_URL:-}" ]] && log "broker: CELERY_BROKER_URL from the environment" || start_redis

$PYTHON manage.py migrate --noinput -v 0
$PYTHON manage.py collectstatic --noinput -v 0
if [[ -z "${SERVE_SKIP_DEMO:-}" ]]; then
  $PYTHON manage.py demo
fi

.venv/bin/gunicorn -c python:config.gunicorn config.wsgi:application --bind "$HOST:$PORT" \
  --workers "${WEB_WORKERS:-2}" --preload --timeout "${WEB_TIMEOUT:-60}" \
  --access-logfile - --graceful-timeout 10 &
pids+=($!)
.venv/bin/celery -A config worker --loglevel=INFO --concurrency "${CELERY_CONCURRENCY:-2}" \
  --hostname "worker-$$@%h" &
pids+=($!)
.venv/bin/celery -A config beat --loglevel=INFO \
  --schedule "$VAR_DIR/celerybeat-schedule" --pidfile "" &
pids+=($!)
log "http://$HOST:$PORT/api/v1/docs — gunicorn, a Celery worker and beat are running; Ctrl-C stops them"

# Whichever stops first (a crash, a signal) stops the rest.
wait -n "${pids[@]}" || true

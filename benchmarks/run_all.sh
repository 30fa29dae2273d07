#!/usr/bin/env bash
# Runs every benchmark script (benchmarks/bench_*.py). Each prints its figure and its ratio to a
# ceiling measured in the same run. Expects DATABASE_URL to point at PostgreSQL (make bench
# wraps this in scripts/with-postgres.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
  echo "bench: installing wrk (HTTP load generator) from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
status=0
for script in benchmarks/bench_*.py; do
  echo "=== $script"
  .venv/bin/python "$script" || status=1
done
exit $status

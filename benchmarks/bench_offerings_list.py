"""GET /api/v1/offerings (a page of 50) vs a bare one-SELECT django-ninja endpoint.

All served by the same gunicorn (2 sync workers, persistent DB connections) on PostgreSQL,
loaded by wrk from a second process for ~10 s each. Two figures:
- anonymous, as the public is served (the identical public page is cached for at most 2 s,
  keyed by the catalog version): goal ratio ≥ 0.5;
- signed in, rendered on every request (one query, rows straight to JSON): reported as is.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import gunicorn, report, scratch_database, wrk

OFFERINGS = 200
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))


def seed(database_url: str) -> str:
    """Seed the offerings; return a bearer token of an investor account (for signed-in load)."""
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.db import connections

    from benchmarks.seed import investor_token, seed_live_offerings

    seed_live_offerings(count=OFFERINGS)
    token = investor_token()
    connections.close_all()
    return token


def main() -> int:
    with scratch_database("brickbook_bench_offerings") as url:
        token = seed(url)
        signed_in = {"Authorization": f"Bearer {token}"}
        page = "/api/v1/offerings?limit=50"
        with gunicorn(url, workers=2) as base:
            wrk(f"{base}{page}", seconds=2)  # warm up both workers
            ceiling = wrk(f"{base}/bench/bare", seconds=SECONDS)
            anonymous = wrk(f"{base}{page}", seconds=SECONDS)
            rendered = wrk(f"{base}{page}", seconds=SECONDS, headers=signed_in)
    ok = report("GET /offerings anonymous (page of 50)", anonymous, ceiling, goal=0.5)
    ok &= report("GET /offerings signed in (rendered every request)", rendered, ceiling, goal=None)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

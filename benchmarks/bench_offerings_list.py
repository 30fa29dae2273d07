"""GET /api/v1/offerings (a page of 50) vs a bare one-SELECT django-ninja endpoint.

Both served by the same gunicorn (2 sync workers, persistent DB connections) on PostgreSQL,
loaded by wrk from a second process for ~10 s each. Goal: ratio ≥ 0.5.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import gunicorn, report, scratch_database, wrk

OFFERINGS = 200
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))


def seed(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from benchmarks.seed import seed_live_offerings

    seed_live_offerings(count=OFFERINGS)


def main() -> int:
    with scratch_database("brickbook_bench_offerings") as url:
        seed(url)
        with gunicorn(url, workers=2) as base:
            wrk(f"{base}/api/v1/offerings?limit=50", seconds=2)  # warm up both workers
            ceiling = wrk(f"{base}/bench/bare", seconds=SECONDS)
            figure = wrk(f"{base}/api/v1/offerings?limit=50", seconds=SECONDS)
    ok = report("GET /offerings (page of 50)", figure, ceiling, goal=0.5)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

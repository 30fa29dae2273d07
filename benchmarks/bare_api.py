"""The benchmarks' ceilings: bare django-ninja endpoints, no auth, no schema, raw SQL.

- GET /bench/bare: one indexed SELECT;
- POST /bench/hot-update: one transaction that increments one hot row (`UPDATE ... SET
  n = n + 1 ... RETURNING n`) of a tiny table the benchmark creates in its scratch database
  (`hot_row_table_create`; no migration), the least any write that serializes on one row
  (an offering's reserved units, say) can cost.

Mounted (at /bench/) only when BRICKBOOK_BENCH_ENDPOINTS=1, i.e. in the benchmark's own
gunicorn; never in a normal or production run.
"""

from __future__ import annotations

from django.db import connection, transaction
from django.http import HttpRequest
from ninja import NinjaAPI

bench_api = NinjaAPI(title="bench", urls_namespace="bench", docs_url=None, openapi_url=None)

HOT_ROW_TABLE = "bench_hot_row"


def hot_row_table_create() -> None:
    """The tiny table behind POST /bench/hot-update, with its one row (idempotent)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {HOT_ROW_TABLE} "
            "(id integer PRIMARY KEY, n bigint NOT NULL DEFAULT 0)"
        )
        cursor.execute(f"INSERT INTO {HOT_ROW_TABLE} (id) VALUES (1) ON CONFLICT DO NOTHING")


@bench_api.get("/bare")
def bare(request: HttpRequest) -> dict[str, object]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, email FROM common_user WHERE id = %s", [1])
        row = cursor.fetchone()
    return {"id": row[0] if row else None}


@bench_api.post("/hot-update")
def hot_update(request: HttpRequest) -> dict[str, object]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"UPDATE {HOT_ROW_TABLE} SET n = n + 1 WHERE id = 1 RETURNING n")
        row = cursor.fetchone()
    return {"n": row[0] if row else None}

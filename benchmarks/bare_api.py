"""The benchmarks' ceiling: a bare django-ninja endpoint doing one indexed SELECT.

Mounted (at /bench/) only when BRICKBOOK_BENCH_ENDPOINTS=1, i.e. in the benchmark's own
gunicorn; never in a normal or production run.
"""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest
from ninja import NinjaAPI

bench_api = NinjaAPI(title="bench", urls_namespace="bench", docs_url=None, openapi_url=None)


@bench_api.get("/bare")
def bare(request: HttpRequest) -> dict[str, object]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, email FROM common_user WHERE id = %s", [1])
        row = cursor.fetchone()
    return {"id": row[0] if row else None}

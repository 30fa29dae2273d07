"""Fixed-window rate counters kept in the database, so every server process (gunicorn
workers, several hosts) shares them: no per-process memory, no extra server needed.

The increment is one SQL statement (`INSERT … ON CONFLICT DO UPDATE … RETURNING`), atomic on
both PostgreSQL and SQLite, so concurrent requests can never both read a stale count.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.db import connection
from django.utils import timezone

from common.errors import Throttled
from common.models import RateCounter

_UPSERT_SQL = """
    INSERT INTO common_ratecounter (scope, key, window_start, count)
    VALUES (%s, %s, %s, 1)
    ON CONFLICT (scope, key, window_start)
    DO UPDATE SET count = common_ratecounter.count + 1
    RETURNING count
"""
assert RateCounter._meta.db_table == "common_ratecounter"


def _window_start(now: datetime, window_seconds: int) -> datetime:
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % window_seconds, tz=UTC)


def rate_counter_increment(*, scope: str, key: str, window_seconds: int) -> int:
    """Count one event; return the number of events in the current window."""
    start = _window_start(timezone.now(), window_seconds)
    with connection.cursor() as cursor:
        window = connection.ops.adapt_datetimefield_value(start)
        cursor.execute(_UPSERT_SQL, [scope, key[:200], window])
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])


def rate_counter_value(*, scope: str, key: str, window_seconds: int) -> int:
    start = _window_start(timezone.now(), window_seconds)
    counter = RateCounter.objects.filter(scope=scope, key=key[:200], window_start=start).first()
    return counter.count if counter else 0


def rate_limit_check(*, scope: str, key: str, limit: int, window_seconds: int) -> None:
    """Raise `Throttled` if `key` already reached `limit` events in this window."""
    if rate_counter_value(scope=scope, key=key, window_seconds=window_seconds) >= limit:
        now = timezone.now()
        window_end = _window_start(now, window_seconds) + timedelta(seconds=window_seconds)
        retry_after = max(1, int((window_end - now).total_seconds()))
        raise Throttled("Too many attempts; try again later.", retry_after_seconds=retry_after)


def rate_counters_purge(*, older_than: timedelta) -> int:
    deleted, _ = RateCounter.objects.filter(window_start__lt=timezone.now() - older_than).delete()
    return deleted

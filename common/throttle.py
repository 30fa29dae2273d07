"""Fixed-window rate counters kept in the database, so every server process (gunicorn
workers, several hosts) shares them: no per-process memory, no extra server needed.

The increment is one SQL statement (`INSERT … ON CONFLICT DO UPDATE … RETURNING`), atomic on
both PostgreSQL and SQLite, so concurrent requests can never both read a stale count.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.utils import timezone

from common.errors import Throttled
from common.models import RateCounter
from common.sql import adapt_datetime, fetch_one


# The parameters are named so that the statement can also be a CTE of a larger one
# (common/idempotency.py counts a call and claims its key in one statement).
def rate_counter_upsert_sql(*, key_sql: str = "%(counter_key)s", source: str = "") -> str:
    """Count one event: `key_sql`, an expression for the key (a parameter, or read from
    `source`, a FROM item of one row or none: then nothing is counted)."""
    values = (
        f"SELECT CAST(%(counter_scope)s AS varchar), {key_sql}, "  # noqa: S608
        f"CAST(%(counter_window)s AS timestamp with time zone), 1 FROM {source}"
        if source
        else f"VALUES (%(counter_scope)s, {key_sql}, %(counter_window)s, 1)"
    )
    return (
        f"INSERT INTO common_ratecounter (scope, key, window_start, count) {values} "
        "ON CONFLICT (scope, key, window_start) "
        "DO UPDATE SET count = common_ratecounter.count + 1 "
        "RETURNING count"
    )


RATE_COUNTER_UPSERT_SQL = rate_counter_upsert_sql()
assert RateCounter._meta.db_table == "common_ratecounter"


def _window_start(now: datetime, window_seconds: int) -> datetime:
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % window_seconds, tz=UTC)


def rate_counter_parameters(*, scope: str, key: str, window_seconds: int) -> dict[str, object]:
    """The parameters of `RATE_COUNTER_UPSERT_SQL` for one event now."""
    start = _window_start(timezone.now(), window_seconds)
    window = adapt_datetime(start)
    return {"counter_scope": scope, "counter_key": key[:200], "counter_window": window}


def rate_counter_increment(*, scope: str, key: str, window_seconds: int) -> int:
    """Count one event; return the number of events in the current window."""
    parameters = rate_counter_parameters(scope=scope, key=key, window_seconds=window_seconds)
    row = fetch_one(RATE_COUNTER_UPSERT_SQL, parameters)
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

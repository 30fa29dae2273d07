"""Per-user rate limits on expensive writes (subscribe, transfer), shared by every process.

`@rate_limited("subscribe")` on a django-ninja operation counts each call of the signed-in
user in a fixed window and refuses the call past the limit with `Throttled` (429 and
`Retry-After`, mapped in config/api.py) before the operation runs, so nothing is written.

The counters live in a shared store, never in process memory (gunicorn runs several
workers, production several hosts): Redis when `RATE_LIMIT_REDIS_URL` is set (settings
derive it from `REDIS_URL` or a Redis `CELERY_BROKER_URL`), else the database counters of
common/throttle.py. If Redis cannot be reached the database counters take over: a limiter
outage must not refuse every subscription.

Limits come from `settings.RATE_LIMITS` (scope → (calls, window seconds)); a scope with no
entry, or a limit of 0, is not limited.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeVar

import redis
from django.conf import settings
from django.db import DatabaseError, transaction
from django.http import HttpRequest

from common.errors import Throttled
from common.models import User
from common.schemas import ErrorOut
from common.throttle import rate_counter_increment, rate_counter_parameters

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

_REDIS_KEY_PREFIX = "brickbook:ratelimit"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# For the operation's `response=`: a limited operation documents its 429.
THROTTLED_RESPONSE: dict[int, type[ErrorOut]] = {429: ErrorOut}


@functools.cache
def _redis_client(url: str) -> redis.Redis:
    # One client (and its connection pool) per URL per process; short timeouts so a Redis
    # outage costs a request milliseconds, not the whole request timeout.
    return redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)


def user_key(user: User) -> str:
    # date_joined as well as the id: a test or restored database that reuses an id never
    # inherits the counts of another user left in a long-lived Redis. Its microseconds since
    # the epoch exactly (integers, not a float timestamp), so a statement can compute the same
    # key from the user's row (`user_key_sql`).
    microseconds = (user.date_joined - _EPOCH) // timedelta(microseconds=1)
    return f"user:{user.pk}:{microseconds}"


def user_key_sql(user_alias: str) -> str:
    """PostgreSQL: `user_key` of the user row `user_alias` (a table alias of common_user),
    as an SQL expression (EXTRACT's epoch is an exact numeric: the same integer)."""
    return (
        f"'user:' || {user_alias}.id || ':' || "
        f"(EXTRACT(EPOCH FROM {user_alias}.date_joined) * 1000000)::bigint"
    )


def counted_in_database(scope: str) -> bool:
    """Whether calls in `scope` are counted (if at all) in the database counters, inside the
    caller's transaction: never in Redis, so nothing about the user is needed before it."""
    limit, _ = settings.RATE_LIMITS.get(scope, (0, 60))
    return limit <= 0 or not settings.RATE_LIMIT_REDIS_URL


def database_limit(scope: str) -> tuple[int, int] | None:
    """(limit, window seconds) of `scope` when it is limited and counted in the database."""
    limit, window_seconds = settings.RATE_LIMITS.get(scope, (0, 60))
    if limit <= 0 or settings.RATE_LIMIT_REDIS_URL:
        return None
    return limit, window_seconds


def _count_in_redis(url: str, scope: str, key: str, window_seconds: int) -> tuple[int, int]:
    """INCR the current window's key; returns (count, seconds until the window ends)."""
    now = time.time()
    window_index = int(now) // window_seconds
    redis_key = f"{_REDIS_KEY_PREFIX}:{scope}:{key}:{window_index}"
    pipeline = _redis_client(url).pipeline(transaction=True)
    pipeline.incr(redis_key)
    pipeline.expire(redis_key, window_seconds + 1)
    count, _ = pipeline.execute()
    window_end = (window_index + 1) * window_seconds
    return int(count), max(1, int(window_end - now + 0.999))


def _count_in_database(scope: str, key: str, window_seconds: int) -> tuple[int, int]:
    count = rate_counter_increment(scope=f"rl:{scope}", key=key, window_seconds=window_seconds)
    now = time.time()
    window_end = (int(now) // window_seconds + 1) * window_seconds
    return count, max(1, int(window_end - now + 0.999))


def _count(scope: str, key: str, window_seconds: int) -> tuple[int, int]:
    url = settings.RATE_LIMIT_REDIS_URL
    if url:
        try:
            return _count_in_redis(url, scope, key, window_seconds)
        except redis.RedisError as error:
            logger.warning("rate limit store unreachable (%r); counting in the database", error)
    return _count_in_database(scope, key, window_seconds)


def rate_limit_hit(*, scope: str, user: User) -> None:
    """Count one call of `user` in `scope`; raise `Throttled` once past the limit."""
    limit, window_seconds = settings.RATE_LIMITS.get(scope, (0, 60))
    if limit <= 0:
        return
    count, retry_after = _count(scope, user_key(user), window_seconds)
    if count > limit:
        raise _throttled(scope, limit, window_seconds, retry_after)


def rate_limited_call(*, scope: str, user: User, call: Callable[[], R]) -> R:
    """Run `call` in ONE database transaction that also counts it, when the counters live in
    the database: the count costs a statement, not a commit of its own. Refused past the limit
    (`Throttled`) before `call` runs. Whenever the transaction rolls back (refused, or `call`
    raised), its count goes with it, so the call is counted again on its own: every call
    counts once, as with `rate_limit_hit`. With Redis the count is Redis's, then `call` runs
    (in the transaction all the same, so the caller's contract does not depend on the store).
    `call` runs inside the transaction: it may open nested atomic blocks, never a durable one."""
    pending = database_count(scope=scope, user=user)
    if pending is None:
        with transaction.atomic():
            return call()
    with counted_again_if_rolled_back(pending), transaction.atomic():
        pending.check(_count_in_database(scope, pending.key, pending.window_seconds)[0])
        return call()


@dataclass(frozen=True)
class PendingCount:
    """A call to count in the database counters inside the caller's transaction (in a
    statement of the caller's: `RATE_COUNTER_UPSERT_SQL` with `parameters()`), then `check`."""

    scope: str
    key: str
    limit: int
    window_seconds: int

    def parameters(self) -> dict[str, object]:
        return rate_counter_parameters(
            scope=f"rl:{self.scope}", key=self.key, window_seconds=self.window_seconds
        )

    def check(self, count: int) -> None:
        """Raise `Throttled` when `count` (this call's, in its window) is past the limit."""
        if count > self.limit:
            window_end = (int(time.time()) // self.window_seconds + 1) * self.window_seconds
            retry_after = max(1, int(window_end - time.time() + 0.999))
            raise _throttled(self.scope, self.limit, self.window_seconds, retry_after)


def database_count(*, scope: str, user: User) -> PendingCount | None:
    """What the caller's transaction must count for a call of `user` in `scope`, when the
    counters live in the database; None when there is nothing left to count there (`scope` is
    not limited, or Redis counted the call already: refused past the limit with
    `Throttled`)."""
    limit, window_seconds = settings.RATE_LIMITS.get(scope, (0, 60))
    if limit <= 0:
        return None
    if settings.RATE_LIMIT_REDIS_URL:
        rate_limit_hit(scope=scope, user=user)
        return None
    return PendingCount(scope, user_key(user), limit, window_seconds)


@contextlib.contextmanager
def counted_again_if_rolled_back(pending: PendingCount) -> Iterator[None]:
    """Wrap the transaction that counts `pending`: if it fails (refused, or the call raised),
    its rollback took the count with it, so the call is counted again on its own."""
    try:
        yield
    except BaseException:
        recount_rolled_back(pending)
        raise


def recount_rolled_back(pending: PendingCount) -> None:
    """Count on its own a call whose transaction rolled back (and took its count along)."""
    try:
        _count_in_database(pending.scope, pending.key, pending.window_seconds)
    except DatabaseError as error:  # the call's own error is the one to report
        logger.warning("rate limit: a failed call could not be counted (%r)", error)


def _throttled(scope: str, limit: int, window_seconds: int, retry_after: int) -> Throttled:
    return Throttled(
        f"Too many {scope} requests: at most {limit} every {window_seconds} seconds.",
        retry_after_seconds=retry_after,
    )


def rate_limited(scope: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a django-ninja operation (below the router's decorator, so authentication
    has run and `request.auth` is the user). Anonymous calls are not counted here."""

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(view)
        def limited(*args: P.args, **kwargs: P.kwargs) -> R:
            request = args[0] if args else kwargs.get("request")
            user: Any = getattr(request, "auth", None) if isinstance(request, HttpRequest) else None
            if isinstance(user, User):
                rate_limit_hit(scope=scope, user=user)
            return view(*args, **kwargs)

        return limited

    return decorate

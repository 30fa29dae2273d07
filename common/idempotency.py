"""Stripe-style `Idempotency-Key` for POST endpoints: a retried request runs at most once.

Usage in a django-ninja operation (which may return an HttpResponse directly)::

    @router.post("/{offering_id}/subscriptions", response={201: SubscriptionOut})
    def subscribe(request, offering_id: int, payload: SubscriptionIn) -> HttpResponse:
        return idempotent(
            request,
            operation=lambda: (201, subscription_create(investor=..., offering_id=..., ...)),
        )

Semantics (per user — `request.auth` — and key):

- the first request runs `operation` and its response (status and exact JSON bytes) is stored;
- a replay (same key, same method, path and body) returns that first response unchanged, with
  the header `Idempotent-Replayed: true`, and does not run `operation`;
- the same key with a different request raises `Conflict(code="idempotency_key_reused")` (409);
  nothing runs;
- a duplicate arriving while the first is still running waits for it (at most
  `IDEMPOTENCY_WAIT_SECONDS`, default 10) and then replays it, or runs itself if the first
  failed; past the wait it gets `Conflict(code="idempotency_key_in_use")` (409), no effect;
- a missing or malformed header (1 to 255 printable ASCII characters, no leading or trailing
  space) raises `ValidationFailed(code="idempotency_key_required")` (400);
- keys are kept at least `IDEMPOTENCY_KEY_TTL_HOURS` (default 24); `idempotency_records_purge`
  (Celery task `common.idempotency_purge`) deletes older ones, after which a key is new again.

How: ONE transaction holds both the record and the operation. The record is inserted first
with `ON CONFLICT (user_id, key) DO NOTHING`; on PostgreSQL a concurrent duplicate's insert
blocks on the unique index until the first transaction ends, then either sees the committed
record (replay) or, if the first rolled back, inserts and runs the operation itself. So no row
is ever left "in progress" by a crash. On SQLite (BEGIN IMMEDIATE) writers are serialized and
a duplicate simply finds the committed record.

Errors are not remembered: if `operation` raises (a `DomainError` such as a failed compliance
check, or anything else), the transaction rolls back, no record is kept and a retry with the
same key runs again. That is deliberate: a refusal usually depends on state the client can fix
(KYC, funds, a window opening), and there is nothing to undo. Only responses the operation
returns (typically 2xx) are replayed.

Requirements on `operation`: it must not open `transaction.atomic(durable=True)` (it runs
inside this transaction) and it should do slow I/O after commit (`transaction.on_commit`),
never while the key is held.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import orjson
from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from pydantic import BaseModel

from common.errors import Conflict, NotAuthenticated, ValidationFailed
from common.models import IdempotencyRecord, User
from common.sql import adapt_datetime, column, fetch, fetch_one

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_LENGTH_MAX = 255
# Printable ASCII; no leading or trailing space, which proxies may strip.
_KEY_PATTERN = re.compile(r"[!-~](?:[ -~]*[!-~])?")
_LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL SQLSTATE raised when lock_timeout expires
PURGE_BATCH_SIZE = 5_000

Operation = Callable[[], tuple[int, Any]]


def idempotent(
    request: HttpRequest, *, operation: Operation, savepoint: bool = True
) -> HttpResponse:
    """Run `operation` once per (request.auth user, Idempotency-Key header). `operation` returns
    (status_code, json-serialisable body — a dict, or a pydantic model, dumped with
    mode="json"). Returns a JSON HttpResponse; a replay carries `Idempotent-Replayed: true`.
    `savepoint=False` inside a caller's transaction that always rolls back when this raises
    (e.g. `rate_limited_call`): no SAVEPOINT round trips, the caller's rollback undoes it."""
    key = idempotency_key_of(request)
    user = _user_of(request)
    fingerprint = request_fingerprint(request)
    with transaction.atomic(savepoint=savepoint):
        record_id = _record_claim(user=user, key=key, fingerprint=fingerprint, request=request)
        if record_id is None:
            return _replay(user=user, key=key, fingerprint=fingerprint)
        status, body = operation()
        content = render_json(body)
        completed = fetch(_complete_sql(), [status, content.decode(), record_id])
        assert completed, "the record inserted in this transaction must still be there"
    return _json_response(status, content, is_replay=False)


@functools.cache
def _complete_sql() -> str:
    """Store the response on the record (identifiers from the model's metadata)."""
    meta = IdempotencyRecord._meta
    quote = connection.ops.quote_name
    status, body = meta.get_field("response_status"), meta.get_field("response_body")
    return (
        f"UPDATE {quote(meta.db_table)} SET {column(status)} = %s, "  # noqa: S608
        f"{column(body)} = %s WHERE {column(meta.pk)} = %s "
        f"RETURNING {column(meta.pk)}"
    )


def idempotency_key_of(request: HttpRequest) -> str:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None or len(key) > KEY_LENGTH_MAX or not _KEY_PATTERN.fullmatch(key):
        raise ValidationFailed(
            f"An {IDEMPOTENCY_HEADER} header of 1 to {KEY_LENGTH_MAX} printable ASCII "
            "characters is required.",
            code="idempotency_key_required",
        )
    return key


def request_fingerprint(request: HttpRequest) -> str:
    """SHA-256 over method, full path (query included) and body. A JSON body is canonicalised
    so a client that re-serialises the same payload (key order, spacing) still matches."""
    digest = hashlib.sha256()
    for part in (request.method or "", request.get_full_path(), _canonical_body(request.body)):
        encoded = part.encode() if isinstance(part, str) else part
        digest.update(len(encoded).to_bytes(8, "big"))  # length-prefixed: parts cannot blur
        digest.update(encoded)
    return digest.hexdigest()


def render_json(body: Any) -> bytes:
    """The same encoding as the API's renderer (orjson; Decimal as its exact string)."""
    return orjson.dumps(body, default=_json_default)


def idempotency_records_purge(*, batch_size: int = PURGE_BATCH_SIZE) -> int:
    """Delete records older than the TTL, in batches so no single statement holds many row
    locks; returns how many were deleted. Safe to run concurrently and repeatedly."""
    ttl_hours = getattr(settings, "IDEMPOTENCY_KEY_TTL_HOURS", 24)
    cutoff = timezone.now() - timedelta(hours=ttl_hours)
    deleted_total = 0
    while True:
        batch = list(
            IdempotencyRecord.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[
                :batch_size
            ]
        )
        if not batch:
            return deleted_total
        deleted, _ = IdempotencyRecord.objects.filter(pk__in=batch).delete()
        deleted_total += deleted


def _user_of(request: HttpRequest) -> User:
    user = getattr(request, "auth", None)
    if not isinstance(user, User):
        # Keys are per user; an anonymous caller has no scope to keep them in.
        raise NotAuthenticated("Sign in to send an idempotent request.")
    return user


def _canonical_body(body: bytes) -> bytes:
    """Sorted keys and no whitespace, but every number kept as its exact text: orjson or a
    float would turn two different 20-digit amounts into one request. Not JSON: the raw bytes."""
    if not body:
        return b""
    try:
        parsed = json.loads(body, parse_float=_number, parse_int=_number, parse_constant=_number)
        return b"json:" + repr(_sorted_keys(parsed)).encode()
    except (ValueError, RecursionError):
        return b"raw:" + body


def _number(text: str) -> tuple[str, str]:
    return ("number", text)  # a tuple: parsed JSON holds none otherwise, so it cannot clash


def _sorted_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return ("object", sorted((key, _sorted_keys(item)) for key, item in value.items()))
    if isinstance(value, list):
        return [_sorted_keys(item) for item in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # exact, never a float
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot serialize {type(value).__name__} to JSON")


def _record_claim(*, user: User, key: str, fingerprint: str, request: HttpRequest) -> int | None:
    """Insert the record; its id, or None if the key already has a committed record. Blocks
    (bounded, on PostgreSQL) while another transaction holds the same key."""
    values = [
        user.pk,
        key,
        fingerprint,
        request.method or "",
        request.get_full_path(),
        "",
        adapt_datetime(timezone.now()),
    ]
    if connection.vendor != "postgresql":
        row = fetch_one(_claim_sql(bounded=False), values)
        return None if row is None else int(row[0])
    wait_milliseconds = int(getattr(settings, "IDEMPOTENCY_WAIT_SECONDS", 10) * 1000)
    try:
        row = fetch_one(_claim_sql(bounded=True), [f"{wait_milliseconds}ms", *values])
    except OperationalError as error:
        if _is_lock_timeout(error):
            raise Conflict(
                "A request with this Idempotency-Key is still being processed; retry later.",
                code="idempotency_key_in_use",
            ) from error
        raise
    assert row is not None
    return None if row[0] is None else int(row[0])


@functools.cache
def _claim_sql(*, bounded: bool) -> str:
    """`INSERT … ON CONFLICT (user, key) DO NOTHING RETURNING id` (NULL: the key exists).
    `bounded` (PostgreSQL), in the same statement: this transaction's lock_timeout is set for
    the wait on a concurrent holder of the key, and set back to what it was once the INSERT is
    done, so the operation's own locks wait as they usually do."""
    meta = IdempotencyRecord._meta
    quote = connection.ops.quote_name
    names = ("user", "key", "fingerprint", "method", "path", "response_body", "created_at")
    fields = [meta.get_field(name) for name in names]
    columns = ", ".join(column(field) for field in fields)
    table, conflict = quote(meta.db_table), f"{column(fields[0])}, {column(fields[1])}"
    returning = column(meta.pk)
    # Identifiers come from the model's metadata; every value is a query parameter.
    if not bounded:
        return (
            f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(fields))}) "  # noqa: S608
            f"ON CONFLICT ({conflict}) DO NOTHING RETURNING {returning}"
        )
    casts = ", ".join(f"CAST(%s AS {field.db_type(connection)})" for field in fields)
    # Order: the INSERT reads its row from `bound`, which sets the timeout first; the outer
    # SELECT evaluates its set_config on the rows of the join with `claimed`, i.e. after the
    # INSERT (and any wait) is done.
    return (
        "WITH bound AS MATERIALIZED (SELECT current_setting('lock_timeout') AS previous, "  # noqa: S608
        "set_config('lock_timeout', %s, true) AS applied), "
        f"claimed AS (INSERT INTO {table} ({columns}) SELECT {casts} FROM bound "
        f"ON CONFLICT ({conflict}) DO NOTHING RETURNING {returning}) "
        f"SELECT claimed.{returning}, set_config('lock_timeout', bound.previous, true) "
        "FROM bound LEFT JOIN claimed ON true"
    )


def _is_lock_timeout(error: OperationalError) -> bool:
    return getattr(error.__cause__, "sqlstate", None) == _LOCK_NOT_AVAILABLE


def _replay(*, user: User, key: str, fingerprint: str) -> HttpResponse:
    record = IdempotencyRecord.objects.filter(user=user, key=key).first()
    if record is None or record.response_status is None:
        # Purged between our insert attempt and this read, or held by this very transaction
        # (a nested call with the same key): nothing consistent to replay.
        raise Conflict(
            "A request with this Idempotency-Key is still being processed; retry later.",
            code="idempotency_key_in_use",
        )
    if record.fingerprint != fingerprint:
        raise Conflict(
            f"This {IDEMPOTENCY_HEADER} was already used for a different request "
            f"({record.method} {record.path}); use a new key for a new request.",
            code="idempotency_key_reused",
        )
    return _json_response(record.response_status, record.response_body.encode(), is_replay=True)


def _json_response(status: int, content: bytes, *, is_replay: bool) -> HttpResponse:
    response = HttpResponse(content, status=status, content_type="application/json")
    if is_replay:
        response[REPLAYED_HEADER] = "true"
    return response

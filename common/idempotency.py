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
  space) raises `ValidationFailed(code="idempotency_key_required")` (400); over HTTP, where the
  endpoints declare the header as a required parameter, a missing one is refused by the
  schema before this runs (422, nothing done);
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

import contextlib
import functools
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, OperationalError, connection, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from ninja.errors import AuthenticationError

from common.api_json import api_json
from common.auth import PendingToken, pending_token_columns, token_resolve, user_of_token_row
from common.errors import Conflict, NotAuthenticated, ValidationFailed
from common.models import IdempotencyRecord, User
from common.ratelimit import (
    PendingCount,
    counted_again_if_rolled_back,
    counted_in_database,
    database_count,
    database_limit,
    rate_limited_call,
    recount_rolled_back,
    user_key,
    user_key_sql,
)
from common.sql import Rider, adapt_datetime, column, fetch, fetch_one
from common.throttle import RATE_COUNTER_UPSERT_SQL, rate_counter_upsert_sql

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_LENGTH_MAX = 255
# Printable ASCII; no leading or trailing space, which proxies may strip.
_KEY_PATTERN = re.compile(r"[!-~](?:[ -~]*[!-~])?")
_LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL SQLSTATE raised when lock_timeout expires
PURGE_BATCH_SIZE = 5_000

Operation = Callable[[], tuple[int, Any]]
# An operation given the claim it runs under (None where there is none to ride on).
ClaimOperation = Callable[["Claim | None"], tuple[int, Any]]


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
        status, content = _run_and_store(Claim(record_id), lambda _claim: operation())
    return _json_response(status, content, is_replay=False)


def idempotent_rate_limited(
    request: HttpRequest, *, scope: str, operation: ClaimOperation, read: ClaimedRead | None = None
) -> HttpResponse:
    """`rate_limited_call(scope, idempotent(operation))` in fewer round trips: on PostgreSQL the
    rate count (when the counters live in the database), the claim of the key and `read` are
    ONE statement, and `operation` gets the `Claim`: the row read, and a way to store its
    response with its own last write. A token not looked up yet (`DeferredBearerAuth`) is
    looked up by that statement too, which writes nothing without its user (then the 401).
    Same semantics as the composition: refused past the limit before anything else is
    decided (`Throttled`), every call counted once, one transaction. Elsewhere (SQLite) it is
    that composition, `operation` gets None (and reads for itself)."""
    if connection.vendor != "postgresql":
        token_resolve(request)
        return rate_limited_call(
            scope=scope,
            user=_user_of(request),
            call=lambda: idempotent(request, operation=lambda: operation(None), savepoint=False),
        )
    key = idempotency_key_of(request)
    fingerprint = request_fingerprint(request)
    token = getattr(request, "auth", None)
    if not isinstance(token, PendingToken) or not counted_in_database(scope):
        token_resolve(request)
        return _claimed_and_run(
            request, key, fingerprint, _user_of(request), scope, operation, read
        )
    limit = database_limit(scope)
    pending = PendingCount(scope, "", *limit) if limit else None  # keyed once the user is read
    try:
        with transaction.atomic():
            row = _counted_claim(
                user=token,
                key=key,
                fingerprint=fingerprint,
                request=request,
                pending=pending,
                read=read,
            )
            user, row = _user_of_claim(request, row)
            counted = [replace(pending, key=user_key(user))] if pending else []
            offset = 2 + pending_token_columns()
            return _after_claim(
                request, key, fingerprint, user, counted, row, read, operation, offset
            )
    except AuthenticationError:
        raise  # a bad token: nothing was counted, nothing written
    except BaseException:
        # Rolled back, and the count with it: counted again on its own (the user looked up
        # again if the statement failed before it told).
        if pending is not None:
            _count_again(request, pending)
        raise


def _count_again(request: HttpRequest, pending: PendingCount) -> None:
    """Count a call whose transaction rolled back (and its count with it) on its own."""
    try:
        token_resolve(request)
    except (AuthenticationError, DatabaseError):
        return  # a bad token is never counted; a database down, reported by the call's error
    user = getattr(request, "auth", None)
    if isinstance(user, User):
        recount_rolled_back(replace(pending, key=user_key(user)))


def _claimed_and_run(
    request: HttpRequest,
    key: str,
    fingerprint: str,
    user: User,
    scope: str,
    operation: ClaimOperation,
    read: ClaimedRead | None,
) -> HttpResponse:
    """`idempotent_rate_limited` for a user known already."""
    pending = database_count(scope=scope, user=user)  # Redis: counted (or refused) here
    guard = counted_again_if_rolled_back(pending) if pending else contextlib.nullcontext()
    with guard, transaction.atomic():
        row = _counted_claim(
            user=user, key=key, fingerprint=fingerprint, request=request, pending=pending, read=read
        )
        assert row is not None  # (a known user: the statement always answers)
        counted = [pending] if pending is not None else []
        return _after_claim(request, key, fingerprint, user, counted, row, read, operation)


def _after_claim(
    request: HttpRequest,
    key: str,
    fingerprint: str,
    user: User,
    counted: list[PendingCount],
    row: tuple[Any, ...],
    read: ClaimedRead | None,
    operation: ClaimOperation,
    read_offset: int = 2,
) -> HttpResponse:
    """The rest of `idempotent_rate_limited` once the claiming statement ran (`row`: count,
    record id, the user's columns if it read them, the read's): refused past the limit,
    replayed, or run and stored."""
    if counted:
        counted[0].check(int(row[0]))
    if row[1] is None:
        return _replay(user=user, key=key, fingerprint=fingerprint)
    read_row = row[read_offset:] if read is not None else None
    status, content = _run_and_store(Claim(int(row[1]), read_row), operation)
    return _json_response(status, content, is_replay=False)


def _user_of_claim(
    request: HttpRequest, row: tuple[Any, ...] | None
) -> tuple[User, tuple[Any, ...]]:
    """The user the claiming statement read for a pending token (`request.auth` from now
    on), and the row; no row: the token is bad, nothing was written (the 401)."""
    if row is None:
        raise AuthenticationError()
    user = user_of_token_row(row[2 : 2 + pending_token_columns()])
    request.auth = request.user = user  # type: ignore[attr-defined]
    return user, row


@dataclass(frozen=True)
class ClaimedRead:
    """A read for the operation, in the statement that claims the key (PostgreSQL): `sql` is
    a `SELECT` of one row with named parameters, which may lock rows (`FOR UPDATE`). It runs
    only once the key is claimed and the wait bound on the key lifted, so its locks wait as
    the operation's own do; its row goes to the operation (`Claim.read_row`)."""

    sql: str
    params: dict[str, Any]


class Claim:
    """The key just claimed, for the operation that runs under it: the row of the read it
    asked for (`read_row`), and where its response goes (the record). An operation whose
    last statement writes anyway can carry the response along (`rider(...)`), saving the
    round trip of storing it afterwards; otherwise the response it returns is stored as
    usual."""

    def __init__(self, record_id: int, read_row: tuple[Any, ...] | None = None) -> None:
        self.record_id = record_id
        self.read_row = read_row
        self._stored: tuple[int, bytes, Rider] | None = None

    def rider(self, status: int, body: Any) -> Rider:
        """The UPDATE storing (status, body) as a `Rider` of the operation's last statement.
        If the rider ran, that is the response (whatever the operation returns)."""
        content = render_json(body)
        rider = Rider(
            _store_rider_sql(),
            {
                "idempotency_record": self.record_id,
                "idempotency_status": status,
                "idempotency_body": content.decode(),
            },
        )
        self._stored = (status, content, rider)
        return rider

    def stored(self) -> tuple[int, bytes] | None:
        if self._stored is None or not self._stored[2].ran:
            return None
        return self._stored[0], self._stored[1]


def _run_and_store(claim: Claim, operation: ClaimOperation) -> tuple[int, bytes]:
    """Run `operation` for the key just claimed; store its response (unless a rider of its
    own statement did) and return it."""
    status, body = operation(claim)
    stored = claim.stored()
    if stored is not None:
        return stored
    content = render_json(body)
    completed = fetch(_complete_sql(), [status, content.decode(), claim.record_id])
    assert completed, "the record inserted in this transaction must still be there"
    return status, content


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


@functools.cache
def _store_rider_sql() -> str:
    """`_complete_sql` as a rider (named parameters; `{only_if}`: the host statement's CTE)."""
    meta = IdempotencyRecord._meta
    quote = connection.ops.quote_name
    status, body = meta.get_field("response_status"), meta.get_field("response_body")
    return (
        f"UPDATE {quote(meta.db_table)} SET {column(status)} = %(idempotency_status)s, "  # noqa: S608
        f"{column(body)} = %(idempotency_body)s WHERE {column(meta.pk)} = %(idempotency_record)s "
        "AND EXISTS (SELECT FROM {only_if}) RETURNING 1"
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
    """The API's encoding (`common.api_json`); `bytes` are a body rendered already (e.g.
    `subscription_detail_json`), kept as they are."""
    if isinstance(body, bytes):
        return body
    return api_json(body)


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


def _record_claim(*, user: User, key: str, fingerprint: str, request: HttpRequest) -> int | None:
    """Insert the record; its id, or None if the key already has a committed record. Blocks
    (bounded, on PostgreSQL) while another transaction holds the same key."""
    if connection.vendor != "postgresql":
        values = _record_values(user=user, key=key, fingerprint=fingerprint, request=request)
        row = fetch_one(_claim_sql(bounded=False, counted=False), list(values.values()))
        return None if row is None else int(row[0])
    row = _counted_claim(
        user=user, key=key, fingerprint=fingerprint, request=request, pending=None, read=None
    )
    assert row is not None
    return None if row[1] is None else int(row[1])


def _record_values(
    *, user: User | PendingToken, key: str, fingerprint: str, request: HttpRequest
) -> dict[str, Any]:
    """The new record's values, in `_RECORD_FIELDS` order (a pending token's user: the
    statement's own)."""
    user_values = {"record_user": user.pk} if isinstance(user, User) else {}
    return {
        **user_values,
        "record_key": key,
        "record_fingerprint": fingerprint,
        "record_method": request.method or "",
        "record_path": request.get_full_path(),
        "record_body": "",
        "record_created_at": adapt_datetime(timezone.now()),
    }


_RECORD_FIELDS = ("user", "key", "fingerprint", "method", "path", "response_body", "created_at")


def _counted_claim(
    *,
    user: User | PendingToken,
    key: str,
    fingerprint: str,
    request: HttpRequest,
    pending: PendingCount | None,
    read: ClaimedRead | None,
) -> tuple[Any, ...] | None:
    """PostgreSQL: count the call (`pending`; 0 without) and, unless that count is past the
    limit, claim the key, waiting at most IDEMPOTENCY_WAIT_SECONDS for a concurrent holder of
    it (409 past that), then `read` if the key was claimed; one statement. Returns (count,
    the record's id or None: the key has a committed record, or the call is over the limit
    and claimed nothing, then the read's columns, NULL when not read). A `PendingToken`
    for `user`: first its user is read, then counted by its key, and its columns come after
    the record's id; no row when there is none (nothing counted, nothing claimed)."""
    wait_milliseconds = int(getattr(settings, "IDEMPOTENCY_WAIT_SECONDS", 10) * 1000)
    parameters = _record_values(user=user, key=key, fingerprint=fingerprint, request=request)
    parameters["wait"] = f"{wait_milliseconds}ms"
    token_sql = None
    if isinstance(user, PendingToken):
        _, token_sql, token_parameters = user.select()
        parameters.update(token_parameters)
    if pending is not None:
        parameters.update(pending.parameters(), limit=pending.limit)
    if read is not None:
        parameters.update(read.params)
    sql = _claim_sql(
        bounded=True,
        counted=pending is not None,
        read_sql=read.sql if read else None,
        token_sql=token_sql,
    )
    try:
        row = fetch_one(sql, parameters, binary=True)
    except OperationalError as error:
        if _is_lock_timeout(error):
            raise Conflict(
                "A request with this Idempotency-Key is still being processed; retry later.",
                code="idempotency_key_in_use",
            ) from error
        raise
    assert row is not None or token_sql is not None
    return row


@functools.cache
def _claim_sql(
    *, bounded: bool, counted: bool, read_sql: str | None = None, token_sql: str | None = None
) -> str:
    """`INSERT … ON CONFLICT (user, key) DO NOTHING RETURNING id` (NULL: the key exists).
    `bounded` (PostgreSQL), in the same statement: this transaction's lock_timeout is set for
    the wait on a concurrent holder of the key, and set back to what it was once the INSERT is
    done, so the operation's own locks wait as they usually do. `counted` (with `bounded`):
    first the rate counter's upsert (common/throttle.py), under the usual lock_timeout, and
    no claim when its count is past `limit`. `read_sql` (with `bounded`): last, once the key
    is claimed and the timeout restored, that read (and its locks); the claiming user's id is
    `done.user_id` there. `token_sql` (with `bounded`): before all, the user of a pending
    token (`PendingToken.select()`), whose id and rate key the rest use (nothing happens
    without its row). Returns (count or 0, id, the token's user's columns, the read's)."""
    meta = IdempotencyRecord._meta
    quote = connection.ops.quote_name
    fields = [meta.get_field(name) for name in _RECORD_FIELDS]
    columns = ", ".join(column(field) for field in fields)
    table, conflict = quote(meta.db_table), f"{column(fields[0])}, {column(fields[1])}"
    returning = column(meta.pk)
    names = ["user", "key", "fingerprint", "method", "path", "body", "created_at"]
    # Identifiers come from the model's metadata; every value is a query parameter.
    if not bounded:
        return (
            f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(fields))}) "  # noqa: S608
            f"ON CONFLICT ({conflict}) DO NOTHING RETURNING {returning}"
        )
    casts = ", ".join(
        f"CAST(%(record_{name})s AS {field.db_type(connection)})"
        for name, field in zip(names[1:], fields[1:], strict=True)
    )
    # Order: `bound` reads the count first (so the counter's upsert runs before the timeout
    # is set, and waits as usual), the INSERT reads its row from `bound`; `done` is read
    # from the join with `claimed`, so it restores the timeout after the INSERT (and any
    # wait); the read (and its LockRows) runs only on `done`'s row, so after that.
    user_id = f"CAST(%(record_user)s AS {fields[0].db_type(connection)})"
    token, sources = "", []
    if token_sql is not None:
        token, user_id, sources = f"token AS MATERIALIZED ({token_sql}), ", "token.id", ["token"]
    counter = ""
    if counted:
        upsert = (
            rate_counter_upsert_sql(key_sql=f"left({user_key_sql('token')}, 200)", source="token")
            if token_sql is not None
            else RATE_COUNTER_UPSERT_SQL
        )
        counter, sources = f"counted AS ({upsert}), ", ["counted", *sources]
    count = "counted.count" if counted else "0"
    source = f"FROM {', '.join(sources)}" if sources else ""
    within_limit = "WHERE bound.count <= %(limit)s " if counted else ""
    read, read_join = "", ""
    if read_sql is not None:
        read = (
            ", read AS (SELECT target.* FROM done CROSS JOIN LATERAL "  # noqa: S608
            f"({read_sql}) target WHERE done.record_id IS NOT NULL)"
        )
        read_join = " LEFT JOIN read ON true"
    token_columns, token_join = (", token.*", " CROSS JOIN token") if token_sql else ("", "")
    return (
        f"WITH {token}{counter}bound AS MATERIALIZED (SELECT {count} AS count, "  # noqa: S608
        f"{user_id} AS user_id, current_setting('lock_timeout') AS previous, "
        f"set_config('lock_timeout', %(wait)s, true) AS applied {source}), "
        f"claimed AS (INSERT INTO {table} ({columns}) SELECT bound.user_id, {casts} FROM bound "
        f"{within_limit}ON CONFLICT ({conflict}) DO NOTHING RETURNING {returning}), "
        f"done AS MATERIALIZED (SELECT bound.count, claimed.{returning} AS record_id, "
        "bound.user_id, set_config('lock_timeout', bound.previous, true) AS restored "
        f"FROM bound LEFT JOIN claimed ON true){read} "
        f"SELECT done.count, done.record_id{token_columns}{', read.*' if read_sql else ''} "
        f"FROM done{token_join}{read_join}"
    )


# The claiming user's id in a `ClaimedRead`'s SQL (a column of the claiming statement).
CLAIMING_USER_ID = "done.user_id"


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

"""Bearer tokens (stored hashed, expiring, revocable), login throttling and role guards."""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.models import AnonymousUser
from django.db import connection, transaction
from django.db.models import Field
from django.http import HttpRequest
from django.utils import timezone
from ninja.errors import AuthenticationError
from ninja.security import HttpBearer

from common.errors import NotAllowed, NotAuthenticated
from common.models import ApiToken, User
from common.sql import adapt_datetime, column, fetch_one, model_from_row
from common.throttle import rate_counter_increment, rate_limit_check

TOKEN_PREFIX = "bb_"
LOGIN_SCOPE = "login-failure"


def _token_hash(clear_token: str) -> str:
    # Tokens carry 256 bits of randomness, so a fast hash is enough (no password stretching).
    return hashlib.sha256(clear_token.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime


def api_token_issue(*, user: User, ttl: timedelta | None = None) -> IssuedToken:
    clear = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = timezone.now()
    expires_at = now + (ttl or timedelta(seconds=settings.API_TOKEN_TTL_SECONDS))
    ApiToken.objects.create(
        user=user, token_hash=_token_hash(clear), prefix=clear[:10], expires_at=expires_at
    )
    return IssuedToken(token=clear, expires_at=expires_at)


def api_token_revoke(*, clear_token: str) -> bool:
    changed = ApiToken.objects.filter(
        token_hash=_token_hash(clear_token), revoked_at__isnull=True
    ).update(revoked_at=timezone.now())
    return changed == 1


def api_token_user(clear_token: str) -> User | None:
    """The active user a token belongs to, or None if unknown, expired or revoked. One
    prepared statement (every API request runs this)."""
    if not clear_token.startswith(TOKEN_PREFIX):
        return None
    fields, sql = _token_user_sql()
    row = fetch_one(sql, [_token_hash(clear_token), adapt_datetime(timezone.now())], binary=True)
    if row is None:
        return None
    user = model_from_row(User, fields, row)
    return user if user.is_active else None


@functools.cache
def _token_user_sql() -> tuple[list[Field[Any, Any]], str]:
    """The user's fields and the statement reading them by token (identifiers from the models'
    metadata; the token's hash and the time are parameters)."""
    fields = list(User._meta.concrete_fields)
    return fields, _token_user_select(fields, "%s", "%s")


def _token_user_select(fields: list[Field[Any, Any]], token_hash: str, now: str) -> str:
    quote = connection.ops.quote_name
    token = ApiToken._meta
    columns = ", ".join(f"u.{column(field)}" for field in fields)
    return (
        f"SELECT {columns} FROM {quote(token.db_table)} t "  # noqa: S608
        f"JOIN {quote(User._meta.db_table)} u ON u.{column(User._meta.pk)} = "
        f"t.{column(token.get_field('user'))} "
        f"WHERE t.{column(token.get_field('token_hash'))} = {token_hash} "
        f"AND t.{column(token.get_field('revoked_at'))} IS NULL "
        f"AND t.{column(token.get_field('expires_at'))} > {now}"
    )


@dataclass(frozen=True)
class PendingToken:
    """A bearer token not looked up yet (`DeferredBearerAuth`): the operation reads its user
    in a statement of its own (`select()`), sparing the request the round trip of reading
    it alone. Until then `request.auth` is this; `token_resolve` reads it the usual way."""

    clear_token: str

    def select(self) -> tuple[list[Field[Any, Any]], str, dict[str, Any]]:
        """(the user's fields, a `SELECT` of them for this token with named parameters
        (`token_*`), its parameters): the active user's row, or no row (unknown, expired or
        revoked token, inactive user) — exactly `api_token_user`'s answer."""
        fields, sql = _pending_token_sql()
        parameters = {
            "token_hash": _token_hash(self.clear_token),
            "token_now": adapt_datetime(timezone.now()),
        }
        return fields, sql, parameters


@functools.cache
def _pending_token_sql() -> tuple[list[Field[Any, Any]], str]:
    fields = list(User._meta.concrete_fields)
    select = _token_user_select(fields, "%(token_hash)s", "%(token_now)s")
    return fields, f"{select} AND u.{column(User._meta.get_field('is_active'))}"


def pending_token_columns() -> int:
    """How many columns `PendingToken.select()` reads."""
    return len(_pending_token_sql()[0])


def user_of_token_row(row: Sequence[Any]) -> User:
    """The user of a row read by `PendingToken.select()` (its columns, in their order)."""
    fields, _ = _pending_token_sql()
    return model_from_row(User, fields, row)


def token_resolve(request: HttpRequest) -> None:
    """Look a pending token (`DeferredBearerAuth`) up: its user becomes `request.auth` (and
    `request.user`); AuthenticationError (the 401) when the token is unknown, expired or
    revoked. Nothing to do for any other request."""
    auth = getattr(request, "auth", None)
    if isinstance(auth, PendingToken):
        user = api_token_user(auth.clear_token)
        if user is None:
            raise AuthenticationError()
        request.auth = request.user = user  # type: ignore[attr-defined]


def _login_keys(email: str, client_ip: str) -> list[str]:
    return [f"email:{email.strip().lower()}", f"ip:{client_ip}"]


def login_with_password(*, email: str, password: str, client_ip: str) -> IssuedToken:
    """Exchange credentials for a token. Repeated failures for the same email or from the
    same address are refused with `Throttled` before the password is even checked."""
    window = settings.LOGIN_FAILURES_WINDOW_SECONDS
    keys = _login_keys(email, client_ip)
    for key in keys:
        rate_limit_check(
            scope=LOGIN_SCOPE, key=key, limit=settings.LOGIN_FAILURES_MAX, window_seconds=window
        )
    user = authenticate(username=email.strip().lower(), password=password)
    if not isinstance(user, User):
        with transaction.atomic():
            for key in keys:
                rate_counter_increment(scope=LOGIN_SCOPE, key=key, window_seconds=window)
        raise NotAuthenticated("Wrong email or password.", code="invalid_credentials")
    with transaction.atomic():
        return api_token_issue(user=user)


def client_ip_of(request: HttpRequest) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is client-controlled unless a trusted proxy rewrites
    # it, and a production proxy is expected to set REMOTE_ADDR (gunicorn --forwarded-allow-ips).
    return str(request.META.get("REMOTE_ADDR", "unknown"))


class BearerAuth(HttpBearer):
    """django-ninja auth: `Authorization: Bearer bb_…`. Sets `request.user` too."""

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        user = api_token_user(token)
        if user is not None:
            request.user = user
        return user


def staff_required(user: Any) -> User:
    if not isinstance(user, User) or not user.is_staff:
        raise NotAllowed("Only staff may do this.", code="staff_only")
    return user


class DeferredBearerAuth(BearerAuth):
    """`BearerAuth` for an operation that reads the token's user in its own first statement
    (`PendingToken`): `request.auth` is the pending token (one in the wrong format is a 401
    here). An error answered before the operation read it reads it first (config/api.py
    `BrickbookAPI.on_exception`), so a bad token is still a 401 before any other error.
    Documented as `BearerAuth` (same header, same scheme)."""

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        return PendingToken(token) if token.startswith(TOKEN_PREFIX) else None


class OptionalBearerAuth(BearerAuth):
    """For public reads that show more to signed-in users: no header → anonymous; a header
    with a bad, expired or revoked token is still a 401 (never silently downgraded)."""

    def __call__(self, request: HttpRequest) -> Any:
        if not request.headers.get("Authorization"):
            request.user = AnonymousUser()
            return request.user
        return super().__call__(request)

"""Bearer tokens (stored hashed, expiring, revocable), login throttling and role guards."""

from __future__ import annotations

import functools
import hashlib
import secrets
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
    quote = connection.ops.quote_name
    fields = list(User._meta.concrete_fields)
    token = ApiToken._meta
    columns = ", ".join(f"u.{column(field)}" for field in fields)
    sql = (
        f"SELECT {columns} FROM {quote(token.db_table)} t "  # noqa: S608
        f"JOIN {quote(User._meta.db_table)} u ON u.{column(User._meta.pk)} = "
        f"t.{column(token.get_field('user'))} "
        f"WHERE t.{column(token.get_field('token_hash'))} = %s "
        f"AND t.{column(token.get_field('revoked_at'))} IS NULL "
        f"AND t.{column(token.get_field('expires_at'))} > %s"
    )
    return fields, sql


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


class OptionalBearerAuth(BearerAuth):
    """For public reads that show more to signed-in users: no header → anonymous; a header
    with a bad, expired or revoked token is still a 401 (never silently downgraded)."""

    def __call__(self, request: HttpRequest) -> Any:
        if not request.headers.get("Authorization"):
            request.user = AnonymousUser()
            return request.user
        return super().__call__(request)

"""Sign-in for the portal: Django's form, behind the same failed-login throttle as
`POST /api/v1/auth/token` (the counters live in the database and are shared: failures on the
API count here and the other way round)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.db import transaction

from common.auth import LOGIN_SCOPE, _login_keys, client_ip_of
from common.errors import Throttled
from common.throttle import rate_counter_increment, rate_limit_check


class ThrottledAuthenticationForm(AuthenticationForm):
    def clean(self) -> dict[str, Any]:
        keys = _login_keys(self.data.get("username", ""), self._client_ip())
        window = settings.LOGIN_FAILURES_WINDOW_SECONDS
        try:
            for key in keys:
                rate_limit_check(
                    scope=LOGIN_SCOPE,
                    key=key,
                    limit=settings.LOGIN_FAILURES_MAX,
                    window_seconds=window,
                )
        except Throttled as error:
            raise ValidationError(
                "Too many failed sign-ins: try again in a few minutes.", code="throttled"
            ) from error
        try:
            return super().clean()
        except ValidationError:
            with transaction.atomic():
                for key in keys:
                    rate_counter_increment(scope=LOGIN_SCOPE, key=key, window_seconds=window)
            raise

    def _client_ip(self) -> str:
        return client_ip_of(self.request) if self.request is not None else "unknown"

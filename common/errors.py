"""The domain error hierarchy.

Services raise these; `config/api.py` turns them into HTTP responses in one place, so no app
ever builds an HTTP error itself. Each class carries a stable machine-readable `code`.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A business rule refused the request. Nothing was changed."""

    code = "domain_error"

    def __init__(self, detail: str, *, code: str | None = None, **context: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.context = context


class ValidationFailed(DomainError):
    """The input is well-formed but breaks a business rule (dates out of order, min > max)."""

    code = "validation_failed"


class NotAuthenticated(DomainError):
    code = "not_authenticated"


class NotAllowed(DomainError):
    """The caller is known but may not do this (role or ownership)."""

    code = "not_allowed"


class NotFound(DomainError):
    """Also used when the object exists but belongs to someone else: never leak existence."""

    code = "not_found"


class Conflict(DomainError):
    """The object is not in a state that allows the request (or an idempotency clash)."""

    code = "conflict"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class LimitExceeded(DomainError):
    """A compliance or product limit would be exceeded."""

    code = "limit_exceeded"


class Throttled(DomainError):
    code = "throttled"

    def __init__(self, detail: str, *, retry_after_seconds: int) -> None:
        super().__init__(detail, retry_after_seconds=retry_after_seconds)
        self.retry_after_seconds = retry_after_seconds

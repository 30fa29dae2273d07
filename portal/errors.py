"""How the portal turns the services' domain errors into pages: a NotFound is a 404 (an object
the caller may not see does not exist for them), anything else a message on the page."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

from django.contrib import messages
from django.http import Http404, HttpRequest

from common.errors import DomainError, NotFound

P = ParamSpec("P")
R = TypeVar("R")


def or_404(call: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run a selector; its NotFound becomes Django's 404 page."""
    try:
        return call(*args, **kwargs)
    except NotFound as error:
        raise Http404(error.detail) from error


class Refused(Exception):
    """A service refused the request; its message is already queued for the page."""


@contextmanager
def refusals_as_messages(request: HttpRequest) -> Iterator[None]:
    """Inside: call a service. A refusal (any DomainError but NotFound) becomes an error
    message and `Refused`, so the view re-renders its form; NotFound stays a 404."""
    try:
        yield
    except NotFound as error:
        raise Http404(error.detail) from error
    except DomainError as error:
        messages.error(request, error.detail)
        raise Refused(error.detail) from error

"""How the portal turns the services' domain errors into pages: a NotFound is a 404 (an object
the caller may not see does not exist for them), anything else a message on the page, or an
error under the form field the refusal names."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

from django import forms
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


# A service's field name → the form field that shows its refusal.
SERVICE_FIELD_TO_FORM_FIELD = {"property_id": "name", "file": "photo"}


def refusal_on_field(error: DomainError, *candidates: forms.Form) -> bool:
    """Put a service's refusal under the field it names, in the first form that has that
    field; False when it names none of them (the caller shows it as a message)."""
    field = str(error.context.get("field", ""))
    field = SERVICE_FIELD_TO_FORM_FIELD.get(field, field)
    for form in candidates:
        if field and field in form.fields:
            form.add_error(field, in_words(error.detail, *candidates))
            return True
    return False


def in_words(detail: str, *candidates: forms.Form) -> str:
    """The services speak the API's language ('target_raise must not exceed max_raise.'); on a
    page the fields are called by their labels ('Target raise must not exceed maximum raise.')."""
    labels = {
        name: str(field.label or name.replace("_", " ")).lower()
        for form in candidates
        for name, field in form.fields.items()
    }
    words = re.sub(r"\b[a-z]+(?:_[a-z]+)+\b", lambda match: labels.get(match[0], match[0]), detail)
    return words[:1].upper() + words[1:]


def refusal_shown(request: HttpRequest, error: DomainError, *candidates: forms.Form) -> None:
    """A refusal under the field it names, or as a message; a NotFound is a 404."""
    if isinstance(error, NotFound):
        raise Http404(error.detail) from error
    if not refusal_on_field(error, *candidates):
        messages.error(request, error.detail)

"""Middleware the JSON API does not need, skipped for it.

The API (/api/) authenticates with bearer tokens (common/auth.py sets `request.user` when a
token is valid), sets no cookies and renders no pages: sessions, messages,
django-htmx and the session user are for the portal and the admin. These subclasses of theirs
pass API requests straight through, so API requests do not pay for them; everything else gets
them unchanged (and Django's checks still find the classes they expect). `request.user` of an
API request starts anonymous (a valid token sets it).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.middleware import (
    AuthenticationMiddleware as DjangoAuthenticationMiddleware,
)
from django.contrib.auth.models import AnonymousUser
from django.contrib.messages.middleware import MessageMiddleware as DjangoMessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.http import HttpRequest
from django_htmx.middleware import HtmxMiddleware as DjangoHtmxMiddleware

API_PREFIX = "/api/"


def is_api_request(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX)


class SessionMiddleware(DjangoSessionMiddleware):
    def __call__(self, request: HttpRequest) -> Any:
        if is_api_request(request):
            return self.get_response(request)
        return super().__call__(request)


class AuthenticationMiddleware(DjangoAuthenticationMiddleware):
    def __call__(self, request: HttpRequest) -> Any:
        if is_api_request(request):
            request.user = AnonymousUser()
            return self.get_response(request)
        return super().__call__(request)


class MessageMiddleware(DjangoMessageMiddleware):
    def __call__(self, request: HttpRequest) -> Any:
        if is_api_request(request):
            return self.get_response(request)
        return super().__call__(request)


class HtmxMiddleware(DjangoHtmxMiddleware):
    def __call__(self, request: HttpRequest) -> Any:
        if is_api_request(request):
            return self.get_response(request)
        return super().__call__(request)

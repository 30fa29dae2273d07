"""The one NinjaAPI: routers from every app, and the single place errors become HTTP."""

from __future__ import annotations

from typing import Any

import orjson
from django.core.exceptions import ObjectDoesNotExist
from django.db import DataError
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.renderers import BaseRenderer

from common import errors
from common.api_json import api_json
from common.auth import BearerAuth, DeferredBearerAuth, OptionalBearerAuth, token_resolve


class FastJSONRenderer(BaseRenderer):
    """orjson instead of the stdlib encoder: serializing long lists (dates above all) was a
    third of the time of `GET /offerings`. Money is already a string by then; a Decimal
    reaching here is serialized as its exact string, never as a float."""

    media_type = "application/json"

    def render(self, request: HttpRequest, data: Any, *, response_status: int) -> bytes:
        return api_json(data)


class BrickbookAPI(NinjaAPI):
    def get_openapi_schema(self, **kwargs: Any) -> Any:
        """Operations that take a token but do not need one (`OptionalBearerAuth`) say so:
        an empty security requirement is OpenAPI's "anonymous is fine too". Those that read
        the token in their own statement (`DeferredBearerAuth`) take it as `BearerAuth`."""
        schema = super().get_openapi_schema(**kwargs)
        deferred, bearer = DeferredBearerAuth.__name__, BearerAuth.__name__
        for operations in schema["paths"].values():
            for operation in operations.values():
                security = operation.get("security") or []
                if any(OptionalBearerAuth.__name__ in each for each in security):
                    security.append({})
                for each in security:
                    if deferred in each:
                        each[bearer] = each.pop(deferred)
        schemes = schema.get("components", {}).get("securitySchemes", {})
        if deferred in schemes:
            schemes.setdefault(bearer, schemes.pop(deferred))
        return schema

    def on_exception(self, request: HttpRequest, exc: Any) -> HttpResponse:
        """Whatever went wrong, a request whose token was not looked up yet
        (`DeferredBearerAuth`: the error came first) is answered 401 if that token is bad:
        authentication is decided before anything else, as for every other operation."""
        if not isinstance(exc, AuthenticationError):
            try:
                token_resolve(request)
            except AuthenticationError as error:
                exc = error
        return super().on_exception(request, exc)


api = BrickbookAPI(
    renderer=FastJSONRenderer(),
    title="Brickbook API",
    version="1.0.0",
    description=(
        "Real-estate crowdfunding and cap-table engine. Bearer-token auth "
        "(`POST /auth/token`); errors are `{detail, code}`; money is "
        '`{"amount": "1000.00", "currency": "USD"}`.'
    ),
    auth=BearerAuth(),
    urls_namespace="api",
)

STATUS_BY_ERROR: list[tuple[type[errors.DomainError], int]] = [
    (errors.Throttled, 429),
    (errors.NotAuthenticated, 401),
    (errors.NotAllowed, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.LimitExceeded, 422),
    (errors.ValidationFailed, 400),
    (errors.DomainError, 400),
]


def status_for(error: errors.DomainError) -> int:
    return next(status for kind, status in STATUS_BY_ERROR if isinstance(error, kind))


@api.exception_handler(errors.DomainError)
def domain_error(request: HttpRequest, exc: errors.DomainError) -> HttpResponse:
    body: dict[str, object] = {"detail": exc.detail, "code": exc.code}
    body.update({k: v for k, v in exc.context.items() if k != "retry_after_seconds"})
    response = api.create_response(request, body, status=status_for(exc))
    if isinstance(exc, errors.Throttled):
        response["Retry-After"] = str(exc.retry_after_seconds)
    return response


@api.exception_handler(NinjaValidationError)
def invalid_request(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    problems = [
        {
            "loc": [str(part) for part in error.get("loc", ())],
            "msg": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        for error in exc.errors
    ]
    summary = "; ".join(f"{'.'.join(p['loc'])}: {p['msg']}" for p in problems[:5])
    return api.create_response(
        request,
        {"detail": f"Invalid request: {summary}", "code": "invalid_request", "errors": problems},
        status=422,
    )


@api.exception_handler(AuthenticationError)
def not_authenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    response = api.create_response(
        request,
        {"detail": "Missing, invalid, expired or revoked token.", "code": "not_authenticated"},
        status=401,
    )
    response["WWW-Authenticate"] = "Bearer"
    return response


@api.exception_handler(Http404)
def not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return api.create_response(request, {"detail": "Not found.", "code": "not_found"}, status=404)


@api.exception_handler(ObjectDoesNotExist)
def object_missing(request: HttpRequest, exc: ObjectDoesNotExist) -> HttpResponse:
    """A `.get()` on an id nobody holds, where a service forgot to raise `NotFound` (found by
    the generated API tests: closing an unknown offering was a 500). Same answer as for any
    object the caller may not see."""
    return not_found(request, Http404())


@api.exception_handler(DataError)
@api.exception_handler(OverflowError)
def value_out_of_range(request: HttpRequest, exc: Exception) -> HttpResponse:
    """The database (PostgreSQL: DataError; SQLite: the driver's OverflowError) refused a value
    the request carried: a pagination offset beyond 64 bits was a 500 (schemathesis, GET
    /sponsors?offset=10599510212877574209536). The statement failed: nothing was written."""
    return api.create_response(
        request,
        {"detail": "A value in the request is out of range.", "code": "value_out_of_range"},
        status=422,
    )


@api.exception_handler(HttpError)
def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if exc.status_code == 400 and isinstance(exc.__cause__, ValueError):
        return malformed_body(request, exc.__cause__)
    return api.create_response(
        request, {"detail": str(exc), "code": "http_error"}, status=exc.status_code
    )


def malformed_body(request: HttpRequest, cause: ValueError) -> HttpResponse:
    """django-ninja turns a body its parser cannot read into a bare 400; it is malformed
    input like any other, so a 422 in the common shape, saying what is wrong with it."""
    reason = str(cause).splitlines()[0][:200] if str(cause) else type(cause).__name__
    return api.create_response(
        request,
        {"detail": f"The request body is not valid JSON: {reason}", "code": "malformed_body"},
        status=422,
    )


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 404 page for a URL no route matches (e.g. a path id that is not a number):
    JSON in the common shape under the API, Django's own page elsewhere."""
    if request.path.startswith("/api/"):
        return HttpResponse(
            orjson.dumps({"detail": "Not found.", "code": "not_found"}),
            status=404,
            content_type="application/json",
        )
    from django.views.defaults import page_not_found as html_page_not_found

    return html_page_not_found(request, exception)


class HealthOut(Schema):
    status: str
    database: str


@api.get("/health", auth=None, response=HealthOut, tags=["platform"])
def health(request: HttpRequest) -> HealthOut:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HealthOut(status="ok", database=connection.vendor)


def _mount_routers() -> None:
    from captable.api import ledger_router
    from captable.api import router as transfers_router
    from captable.captable_api import captable_router
    from captable.closing_api import closing_router
    from captable.distributions_api import distributions_router
    from captable.payments_api import payments_router
    from captable.subscriptions_api import subscriptions_router
    from common.api import router as auth_router
    from investors.api import registration_router
    from investors.api import router as investors_router
    from offerings.api import issuers_router, properties_router, sponsors_router
    from offerings.api import router as offerings_router
    from reports.api import reports_router

    api.add_router("/auth", auth_router)
    api.add_router("/auth", registration_router)
    api.add_router("/sponsors", sponsors_router)
    api.add_router("/offerings", offerings_router)
    api.add_router("/offerings", captable_router)
    api.add_router("/issuers", issuers_router)
    api.add_router("/properties", properties_router)
    api.add_router("/investors", investors_router)
    api.add_router("/transfers", transfers_router)
    api.add_router("/ledger", ledger_router)
    api.add_router("", subscriptions_router)  # absolute paths: /offerings/{id}/subscriptions
    api.add_router("", payments_router)  # absolute paths: /subscriptions/{id}/fund, /payments/…
    api.add_router("", closing_router)  # absolute paths: /offerings/{id}/close…, /stats
    api.add_router("", distributions_router)  # absolute: /offerings/{id}/distributions, …
    api.add_router("", reports_router)  # absolute paths: /statements…, /tasks/{id}


_mount_routers()

"""HTTP for the as-of cap table: `GET /offerings/{id}/captable?as_of=...`.

Who may read it: members of the offering's approved sponsor, and staff. Anyone else signed in
gets 404, exactly as for an offering that does not exist (existence does not leak); a request
without a token is a 401 (the router requires auth).

`as_of` (ISO-8601, optional):
- with an offset or `Z`: that instant;
- naive (`2026-03-31T17:00:00`): wall-clock time in the offering's time zone;
- a bare date (`2026-03-31`): the end of that day in the offering's time zone, like a record
  date;
- omitted, or in the future: now. The cap table of a future instant is not known yet, so the
  answer is the one for now, and the response's `as_of` is the instant actually used: asking
  again with that value returns the same table.

The table is not paginated: a cap table is read whole (totals and percentages only make sense
over every row). The numbers come from `captable.selectors.captable_as_of`; this module only
shapes them (units as decimal strings next to integer quanta, money as `{amount, currency}`).
`manage.py captable --format json` prints the same `CapTableOut`.

No `from __future__ import annotations` here: ninja reads the parameter annotations at import
time.
"""

import re
from datetime import UTC, date, datetime, time
from typing import Any, Literal
from zoneinfo import ZoneInfo

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from ninja import Router, Schema
from pydantic import Field

from captable.selectors import PERCENT_PLACES, captable_as_of
from common.errors import NotFound, ValidationFailed
from common.schemas import ErrorOut, MoneyOut, ValidationErrorOut
from investors.models import Investor
from offerings.models import Offering
from offerings.quantities import format_units
from offerings.selectors import signed_in_user, sponsor_ids_of

captable_router = Router(tags=["captable"])

CAPTABLE_ERRORS: dict[int, type[Schema]] = {
    400: ErrorOut,
    401: ErrorOut,
    404: ErrorOut,
    422: ValidationErrorOut,
}

CAPTABLE_FILE_RESPONSES: dict[str, Any] = {
    "responses": {
        "200": {
            "content": {
                # Listed again: this extra replaces the 200's content, JSON included (its
                # absence made every JSON answer "undocumented" to schemathesis).
                "application/json": {"schema": {"$ref": "#/components/schemas/CapTableOut"}},
                "text/csv": {"schema": {"type": "string"}},
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
                    "schema": {"type": "string", "format": "binary"}
                },
            }
        }
    }
}

# "+02:00" arrives as " 02:00" when a client forgets to URL-encode the query string.
_UNENCODED_OFFSET = re.compile(r"(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:?\d{2})$")


class CapTableRowOut(Schema):
    investor_id: int
    investor_legal_name: str
    units: str = Field(examples=["125.5"], description="Decimal string, exact.")
    quanta: int
    percent: str = Field(examples=["12.5000"], description="Of the units issued, 4 places.")
    cost_basis: MoneyOut


class CapTableOut(Schema):
    offering_id: int
    as_of: str = Field(
        json_schema_extra={"format": "date-time"},
        description="The instant the table is computed for (UTC, ISO-8601).",
    )
    time_zone: str = Field(description="The offering's time zone (naive as_of values use it).")
    currency: str
    quanta_per_unit: int
    authorized_units: str
    authorized_quanta: int
    treasury_units: str
    treasury_quanta: int
    issued_units: str
    issued_quanta: int
    cost_basis_total: MoneyOut
    rows: list[CapTableRowOut]


def offering_find(reference: str) -> Offering:
    """An offering by id or slug (for the management commands; no visibility rules)."""
    offerings = Offering.objects.select_related("issuer", "sponsor")
    found = (
        offerings.filter(pk=int(reference)).first()
        if reference.isdigit()
        else offerings.filter(slug=reference).first()
    )
    if found is None:
        raise NotFound(f"Offering {reference} not found.", code="offering_not_found")
    return found


def offering_for_captable(*, user: Any, offering_id: int) -> Offering:
    """The offering if `user` is staff or a member of its approved sponsor; else NotFound."""
    member = signed_in_user(user)
    offering = Offering.objects.select_related("issuer").filter(pk=offering_id).first()
    allowed = (
        offering is not None
        and member is not None
        and (member.is_staff or offering.sponsor_id in sponsor_ids_of(member))
    )
    if offering is None or not allowed:
        raise NotFound(f"Offering {offering_id} not found.", code="offering_not_found")
    return offering


def as_of_parse(text: str | None, *, time_zone: str) -> datetime:
    """The instant an `as_of` value names (see the module docstring), never later than now."""
    now = timezone.now()
    raw = (text or "").strip()
    if not raw:
        return now
    zone = ZoneInfo(time_zone)
    try:
        if len(raw) == len("2026-03-31"):
            moment = datetime.combine(date.fromisoformat(raw), time.max, tzinfo=zone)
        else:
            moment = datetime.fromisoformat(_UNENCODED_OFFSET.sub(r"\1+\2", raw))
            if timezone.is_naive(moment):
                moment = moment.replace(tzinfo=zone)
    except ValueError:
        raise ValidationFailed(
            f"as_of {raw!r} is not an ISO-8601 date or date-time.", code="as_of_invalid"
        ) from None
    # UTC: the selector's raw SQL compares the parameter as text on SQLite, where a non-UTC
    # offset would shift the instant.
    return min(moment, now).astimezone(UTC)


def captable_report(*, offering: Offering, as_of: datetime) -> CapTableOut:
    """`captable_as_of` shaped for people and machines: names, units, percentages, money."""
    table = captable_as_of(offering=offering, as_of=as_of)
    names = dict(
        Investor.objects.filter(pk__in=[row.investor_id for row in table.rows]).values_list(
            "pk", "legal_name"
        )
    )
    per_unit = offering.quanta_per_unit
    currency = offering.currency
    rows = [
        CapTableRowOut(
            investor_id=row.investor_id,
            investor_legal_name=names.get(row.investor_id, ""),
            units=format_units(row.quanta, per_unit),
            quanta=row.quanta,
            percent=f"{row.percent.quantize(PERCENT_PLACES)}",
            cost_basis=MoneyOut.of_minor_units(row.cost_minor, currency),
        )
        for row in table.rows
    ]
    return CapTableOut(
        offering_id=offering.pk,
        as_of=table.as_of.astimezone(UTC).isoformat(),
        time_zone=offering.time_zone,
        currency=currency,
        quanta_per_unit=per_unit,
        authorized_units=format_units(table.authorized_quanta, per_unit),
        authorized_quanta=table.authorized_quanta,
        treasury_units=format_units(table.treasury_quanta, per_unit),
        treasury_quanta=table.treasury_quanta,
        issued_units=format_units(table.issued_quanta, per_unit),
        issued_quanta=table.issued_quanta,
        cost_basis_total=MoneyOut.of_minor_units(
            sum(row.cost_minor for row in table.rows), currency
        ),
        rows=rows,
    )


@captable_router.get(
    "/{offering_id}/captable",
    response={200: CapTableOut, **CAPTABLE_ERRORS},
    openapi_extra=CAPTABLE_FILE_RESPONSES,
)
def offering_captable(
    request: HttpRequest,
    offering_id: int,
    as_of: str | None = None,
    format: Literal["json", "csv", "xlsx"] = "json",
) -> CapTableOut | HttpResponse:
    """Holders of the offering as of an instant: units, percentage of issued, cost basis.

    `as_of` (ISO-8601, optional): an instant with an offset; a naive date-time is wall-clock
    time in the offering's time zone; a bare date is the end of that day there. Omitted or in
    the future: now (the response's `as_of` is the instant used). `format=csv|xlsx`: the same
    table as a file (exact decimals, never float). Sponsor members and staff only; anyone else
    gets 404."""
    offering = offering_for_captable(user=request.user, offering_id=offering_id)
    moment = as_of_parse(as_of, time_zone=offering.time_zone)
    if format != "json":
        # Imported here: reports depends on captable, never the other way at import time.
        from reports.exports import captable_export_response

        return captable_export_response(offering=offering, as_of=moment, file_format=format)
    return captable_report(offering=offering, as_of=moment)

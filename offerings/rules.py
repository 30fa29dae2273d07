"""The business rules of an offering's terms, as pure functions over `OfferingTerms`.

Each broken rule is a `ValidationFailed` with its own `code` and the `field` it is about, so a
client can point at the input. The issuer's 12-month cap needs the other offerings of the
issuer's group; `issuer_cap_check` takes them as plain (opens_at, max_raise_minor) pairs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from common.errors import LimitExceeded, ValidationFailed
from common.money import format_minor_units
from offerings.exemptions import (
    EXEMPTION_CURRENCY,
    Exemption,
    IssuerCapRule,
    issuer_cap_rule,
)
from offerings.models import QUANTA_PER_UNIT_ALLOWED, FundingModel, Offering


@dataclass(frozen=True)
class OfferingTerms:
    """Everything the rules look at, resolved to integers (minor units, quanta)."""

    exemption: str
    funding_model: str
    currency: str
    price_per_unit_minor: int
    quanta_per_unit: int
    units_authorized_quanta: int
    min_investment_quanta: int
    max_investment_quanta: int
    target_raise_minor: int
    max_raise_minor: int
    time_zone: str
    opens_at: datetime
    closes_at: datetime

    @classmethod
    def of(cls, offering: Offering) -> OfferingTerms:
        return cls(
            exemption=offering.exemption,
            funding_model=offering.funding_model,
            currency=offering.currency,
            price_per_unit_minor=offering.price_per_unit_minor,
            quanta_per_unit=offering.quanta_per_unit,
            units_authorized_quanta=offering.units_authorized_quanta,
            min_investment_quanta=offering.min_investment_quanta,
            max_investment_quanta=offering.max_investment_quanta,
            target_raise_minor=offering.target_raise_minor,
            max_raise_minor=offering.max_raise_minor,
            time_zone=offering.time_zone,
            opens_at=offering.opens_at,
            closes_at=offering.closes_at,
        )


def zone_of(time_zone: str) -> ZoneInfo:
    try:
        return ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed(
            f"time_zone {time_zone!r} is not an IANA time zone name (e.g. America/New_York).",
            code="time_zone_invalid",
            field="time_zone",
        ) from None


def rule_for(terms: OfferingTerms) -> IssuerCapRule:
    """The exemption's rule in force on the opening day, in the offering's time zone."""
    opening_day = terms.opens_at.astimezone(zone_of(terms.time_zone)).date()
    return issuer_cap_rule(terms.exemption, on=opening_day)


def _fail(message: str, *, code: str, field: str) -> ValidationFailed:
    return ValidationFailed(message, code=code, field=field)


def _check_price_and_quanta(terms: OfferingTerms) -> None:
    if terms.price_per_unit_minor <= 0:
        raise _fail(
            "price_per_unit must be positive.", code="price_not_positive", field="price_per_unit"
        )
    if terms.quanta_per_unit not in QUANTA_PER_UNIT_ALLOWED:
        raise _fail(
            "quanta_per_unit must be a power of ten from 1 to 1000000.",
            code="quanta_per_unit_invalid",
            field="quanta_per_unit",
        )
    if terms.price_per_unit_minor % terms.quanta_per_unit:
        raise _fail(
            f"price_per_unit must be a whole number of cents per quantum: "
            f"{terms.price_per_unit_minor} minor units / {terms.quanta_per_unit} quanta "
            "is not whole; use fewer quanta_per_unit or a rounder price.",
            code="quantum_price_not_whole_cents",
            field="price_per_unit",
        )
    expected = EXEMPTION_CURRENCY.get(terms.exemption)
    if expected is None:
        raise _fail("exemption is unknown.", code="exemption_invalid", field="exemption")
    if terms.currency != expected:
        raise _fail(
            f"currency must be {expected} for {Exemption(terms.exemption).label} offerings, "
            f"not {terms.currency}.",
            code="currency_mismatch",
            field="currency",
        )


def _check_quantities(terms: OfferingTerms) -> None:
    if terms.units_authorized_quanta <= 0:
        raise _fail(
            "units_authorized must be positive.",
            code="units_authorized_not_positive",
            field="units_authorized",
        )
    if terms.min_investment_quanta <= 0:
        raise _fail(
            "min_investment_units must be positive.",
            code="min_investment_not_positive",
            field="min_investment_units",
        )
    if terms.min_investment_quanta > terms.max_investment_quanta:
        raise _fail(
            "min_investment_units must not exceed max_investment_units.",
            code="investment_min_above_max",
            field="min_investment_units",
        )
    if terms.max_investment_quanta > terms.units_authorized_quanta:
        raise _fail(
            "max_investment_units must not exceed units_authorized.",
            code="max_investment_above_supply",
            field="max_investment_units",
        )


def _check_raise(terms: OfferingTerms) -> None:
    if terms.target_raise_minor < 0:
        raise _fail(
            "target_raise must not be negative.", code="target_negative", field="target_raise"
        )
    if terms.max_raise_minor <= 0:
        raise _fail("max_raise must be positive.", code="max_raise_not_positive", field="max_raise")
    if terms.target_raise_minor > terms.max_raise_minor:
        raise _fail(
            "target_raise must not exceed max_raise.",
            code="target_above_max_raise",
            field="target_raise",
        )
    supply_minor = terms.units_authorized_quanta * terms.price_per_unit_minor
    if terms.max_raise_minor * terms.quanta_per_unit > supply_minor:
        raise _fail(
            "max_raise must not exceed units_authorized * price_per_unit "
            f"({format_minor_units(supply_minor // terms.quanta_per_unit, terms.currency)} "
            f"{terms.currency}).",
            code="max_raise_above_supply",
            field="max_raise",
        )
    rule = rule_for(terms)
    if rule.requires_all_or_nothing and terms.funding_model != FundingModel.ALL_OR_NOTHING:
        raise _fail(
            f"funding_model must be all_or_nothing for {Exemption(terms.exemption).label} "
            f"offerings (rule {rule.version}).",
            code="all_or_nothing_required",
            field="funding_model",
        )
    if terms.funding_model == FundingModel.ALL_OR_NOTHING and terms.target_raise_minor <= 0:
        raise _fail(
            "an all_or_nothing offering needs a target_raise greater than zero.",
            code="target_required",
            field="target_raise",
        )


def _check_dates(terms: OfferingTerms, *, now: datetime | None) -> None:
    if terms.opens_at.tzinfo is None or terms.closes_at.tzinfo is None:
        raise _fail(
            "opens_at and closes_at need a time zone.", code="naive_datetime", field="opens_at"
        )
    if terms.closes_at <= terms.opens_at:
        raise _fail(
            "closes_at must be after opens_at.", code="dates_out_of_order", field="closes_at"
        )
    if now is not None and terms.closes_at <= now:
        raise _fail("closes_at is in the past.", code="closes_at_in_past", field="closes_at")


def offering_terms_check(terms: OfferingTerms, *, now: datetime | None = None) -> None:
    """Every rule about the terms alone. With `now`, also that the offering can still run."""
    zone_of(terms.time_zone)
    _check_price_and_quanta(terms)
    _check_quantities(terms)
    _check_dates(terms, now=now)
    _check_raise(terms)


def _one_year_earlier(moment: datetime) -> datetime:
    try:
        return moment.replace(year=moment.year - 1)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year - 1, day=28)


def _one_year_later(moment: datetime) -> datetime:
    try:
        return moment.replace(year=moment.year + 1)
    except ValueError:
        return moment.replace(year=moment.year + 1, day=28)


def cap_window_bounds(opens_at: datetime) -> tuple[datetime, datetime]:
    """The openings that can share a 12-month window with an offering opening at `opens_at`."""
    return _one_year_earlier(opens_at), _one_year_later(opens_at)


def issuer_cap_check(terms: OfferingTerms, *, others: Iterable[tuple[datetime, int]]) -> None:
    """The issuer (with its affiliates) may raise at most the exemption's cap in any 12 months.

    `others`: (opens_at, max_raise_minor) of the group's other offerings under the same
    exemption that still count (not cancelled, not failed), opening within a year either side.
    Every 12-month window that contains this offering is checked: the one ending at its own
    opening and the ones ending at each later opening.
    """
    rule = rule_for(terms)
    cap_minor = rule.cap_per_12_months_minor
    if cap_minor is None:
        return
    raises = [*others, (terms.opens_at, terms.max_raise_minor)]
    window_ends = sorted({opens_at for opens_at, _ in raises if opens_at >= terms.opens_at})
    for window_end in window_ends:
        window_start = _one_year_earlier(window_end)
        total_minor = sum(
            amount for opens_at, amount in raises if window_start < opens_at <= window_end
        )
        if total_minor > cap_minor:
            label = Exemption(terms.exemption).label
            total = format_minor_units(total_minor, rule.currency)
            cap = format_minor_units(cap_minor, rule.currency)
            raise LimitExceeded(
                f"{label} issuer cap exceeded: the issuer and its affiliates would offer "
                f"{total} {rule.currency} in the 12 months up to {window_end:%Y-%m-%d}, "
                f"over the cap of {cap} {rule.currency} (rule {rule.version}).",
                code="issuer_cap_exceeded",
                field="max_raise",
                rule_version=rule.version,
            )

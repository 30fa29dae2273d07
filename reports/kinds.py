"""The statement kinds: a small registry so that new kinds (subscription confirmation,
distribution notice, annual tax summary) are one `register(...)` each.

A kind says who it is for (an investor, an offering's sponsor), how its data is built from a
scope (`reports/statements.py`: ints and Decimals, no formatting), and how that data becomes
its template's context (every number formatted here, in the reader's locale, so templates
only place text).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from captable.selectors import percent_of
from common.errors import NotFound, ValidationFailed
from common.money import decimal_to_minor_units
from investors.models import Investor
from offerings.models import Offering
from reports.event_statements import payouts_paid_in, tax_lines
from reports.formatting import Formatter
from reports.models import StatementKind
from reports.periods import Period
from reports.returns import IrrUnavailable, Returns, Valuation
from reports.statements import (
    CapTableReport,
    Fingerprint,
    InvestorPeriodicStatement,
    TaxLine,
    TransactionLine,
    captable_report,
    investor_periodic_statement,
    platform_time_zone,
)


class StatementData(Protocol):
    @property
    def fingerprint(self) -> Fingerprint: ...

    @property
    def locale(self) -> str: ...


@dataclass(frozen=True)
class StatementScope:
    kind: str
    period: Period
    investor_id: int | None = None
    offering_id: int | None = None
    # What a one-event document is about ("subscription:12"); empty for periodic kinds.
    subject: str = ""


@dataclass(frozen=True)
class KindSpec:
    kind: str
    title: str
    template: str
    needs_investor: bool
    needs_offering: bool
    build: Callable[[StatementScope], Any]
    context: Callable[[Any, Formatter], dict[str, Any]]
    # One-event kinds name their event (`StatementScope.subject`).
    needs_subject: bool = False


REGISTRY: dict[str, KindSpec] = {}


def register(spec: KindSpec) -> KindSpec:
    assert spec.kind in StatementKind.values, f"add {spec.kind!r} to StatementKind first"
    REGISTRY[spec.kind] = spec
    return spec


def kind_spec(kind: str) -> KindSpec:
    spec = REGISTRY.get(kind)
    if spec is None:
        raise ValidationFailed(f"Unknown statement kind {kind!r}.", code="statement_kind_invalid")
    return spec


def scope_check(scope: StatementScope) -> KindSpec:
    spec = kind_spec(scope.kind)
    if spec.needs_investor and scope.investor_id is None:
        raise ValidationFailed(f"A {spec.title} needs an investor.", code="investor_required")
    if spec.needs_offering and scope.offering_id is None:
        raise ValidationFailed(f"A {spec.title} needs an offering.", code="offering_required")
    if spec.needs_subject and not scope.subject:
        raise ValidationFailed(f"A {spec.title} needs its subject.", code="subject_required")
    return spec


def _investor(investor_id: int | None) -> Investor:
    assert investor_id is not None  # scope_check: this kind needs an investor
    investor = Investor.objects.select_related("user").filter(pk=investor_id).first()
    if investor is None:
        raise NotFound(f"Investor {investor_id} not found.", code="investor_not_found")
    return investor


def _offering(offering_id: int | None) -> Offering | None:
    if offering_id is None:
        return None
    offering = (
        Offering.objects.select_related("issuer", "property", "sponsor")
        .filter(pk=offering_id)
        .first()
    )
    if offering is None:
        raise NotFound(f"Offering {offering_id} not found.", code="offering_not_found")
    return offering


def _period_text(period: Period, fmt: Formatter) -> tuple[str, str]:
    """(heading, range): 'Q3 2026' style headings for quarters, the dates otherwise."""
    dates = (
        fmt.date(period.start)
        if period.is_single_day
        else f"{fmt.date(period.start)} \u2013 {fmt.date(period.end)}"
    )
    label = period.label
    if "-Q" in label:
        year, quarter = label.split("-Q")
        return f"Q{quarter} {year} · {dates}", dates
    return dates, dates


def _line(line: TransactionLine, currency: str, per_unit: int, zone: str, fmt: Formatter) -> Any:
    return {
        "date": fmt.day_in(line.effective_at, zone),
        "description": line.description,
        "entry_id": line.entry_id,
        "units": fmt.signed_units(line.units_quanta, per_unit),
        "cost": fmt.signed_money(line.cost_minor, currency),
        "cash": fmt.signed_money(line.cash_minor, currency),
    }


# --- periodic investor statement ------------------------------------------------------------


def _build_investor_periodic(scope: StatementScope) -> InvestorPeriodicStatement:
    statement = investor_periodic_statement(
        investor=_investor(scope.investor_id),
        period=scope.period,
        offering=_offering(scope.offering_id),
    )
    payouts = payouts_paid_in(investor_id=statement.investor.investor_id, period=scope.period)
    if scope.offering_id is not None:
        payouts = [p for p in payouts if p.distribution.offering_id == scope.offering_id]
    return replace(statement, distributions=tax_lines(payouts))


def _distributions_context(lines: tuple[TaxLine, ...], fmt: Formatter) -> list[dict[str, Any]]:
    return [
        {
            "offering": line.offering_title,
            "distribution_id": line.distribution_id,
            "paid_on": fmt.date(line.paid_on),
            "income": fmt.money(line.income_minor, line.currency),
            "return_of_capital": fmt.money(line.return_of_capital_minor, line.currency),
            "withholding": fmt.money(line.withholding_minor, line.currency),
            "net": fmt.money(line.net_minor, line.currency),
        }
        for line in lines
    ]


NOT_AVAILABLE = "n/a"
IRR_UNAVAILABLE_REASONS = {
    IrrUnavailable.NOTHING_INVESTED: "nothing invested yet",
    IrrUnavailable.UNDER_A_YEAR: "shown after 1 year",
    IrrUnavailable.NOT_COMPUTABLE: "no rate solves these cash flows",
}


def _returns_context(returns: Returns, fmt: Formatter) -> dict[str, Any]:
    currency = returns.currency
    multiple = returns.equity_multiple
    irr_reason = IRR_UNAVAILABLE_REASONS.get(returns.irr_unavailable, "")
    return {
        "contributed": fmt.money(returns.contributed_minor, currency),
        "income": fmt.money(returns.income_minor, currency),
        "return_of_capital": fmt.money(returns.return_of_capital_minor, currency),
        "distributed": fmt.money(returns.distributed_minor, currency),
        "capital_out": (
            fmt.money(returns.capital_out_minor, currency) if returns.capital_out_minor else ""
        ),
        "value": fmt.money(returns.value_minor, currency),
        "multiple": fmt.multiple(multiple) if multiple is not None else NOT_AVAILABLE,
        "multiple_note": "" if multiple is not None else "nothing invested yet",
        "irr": fmt.ratio_percent(returns.irr) if returns.irr is not None else NOT_AVAILABLE,
        "irr_note": irr_reason,
        "since": fmt.date(returns.first_flow_on) if returns.first_flow_on else "",
        "chart": _chart_context(returns, fmt),
    }


def _chart_context(returns: Returns, fmt: Formatter) -> dict[str, Any] | None:
    """The dashboard's chart (`portal/chart.py`: integer coordinates in a 640 by 180 box)."""
    chart = returns.chart
    if chart is None:
        return None
    return {
        "points": chart.points,
        "dots": chart.dots,
        "peak": fmt.money(decimal_to_minor_units(chart.peak, returns.currency), returns.currency),
        "first_day": fmt.date(chart.first_day),
        "last_day": fmt.date(chart.last_day),
        "value": fmt.money(returns.value_minor, returns.currency),
    }


def _valuation_text(valuation: Valuation, currency: str, fmt: Formatter) -> str:
    price = fmt.money(valuation.per_unit_minor, currency)
    if valuation.basis == "nav" and valuation.nav_date is not None:
        return f"{price} NAV of {fmt.date(valuation.nav_date)}"
    return f"{price} offering price (no NAV yet)"


def _investor_periodic_context(data: InvestorPeriodicStatement, fmt: Formatter) -> dict[str, Any]:
    heading, dates = _period_text(data.period, fmt)
    investor = data.investor
    sections = []
    for section in data.sections:
        offering = section.offering
        currency, per_unit, zone = offering.currency, offering.quanta_per_unit, offering.time_zone
        sections.append(
            {
                "offering_id": offering.offering_id,
                "title": offering.title,
                "issuer": offering.issuer_name,
                "property": offering.property_name,
                "currency": currency,
                "time_zone": zone,
                "price_per_unit": fmt.money(offering.price_per_unit_minor, currency),
                "opening_date": fmt.date(data.period.start),
                "closing_date": fmt.date(data.period.end),
                "units_opening": fmt.units(section.units_opening_quanta, per_unit),
                "units_closing": fmt.units(section.units_closing_quanta, per_unit),
                "cost_opening": fmt.money(section.cost_opening_minor, currency),
                "cost_closing": fmt.money(section.cost_closing_minor, currency),
                "escrow_opening": fmt.money(section.escrow_opening_minor, currency),
                "escrow_closing": fmt.money(section.escrow_closing_minor, currency),
                "contributions": fmt.money(section.contributions_minor, currency),
                "refunds": fmt.money(section.refunds_minor, currency),
                "released": fmt.money(section.released_to_issuer_minor, currency),
                "income": fmt.money(section.income_minor, currency),
                "return_of_capital": fmt.money(section.return_of_capital_minor, currency),
                "valuation": _valuation_text(section.valuation, currency, fmt),
                "returns": _returns_context(section.returns, fmt),
                "transactions": [
                    _line(line, currency, per_unit, zone, fmt) for line in section.transactions
                ],
            }
        )
    zones = sorted({s.offering.time_zone for s in data.sections})
    zones += [c.time_zone for c in data.cash_accounts if c.time_zone not in zones]
    end = fmt.date(data.period.end)
    return {
        "title": "Investor statement",
        "running_subject": investor.legal_name,
        "period_label": data.period.label,
        "period_text": heading,
        "period_range": dates,
        "as_of_text": (
            f"the end of {end} in {zones[0]}"
            if len(zones) == 1
            else f"the end of {end} in each offering's time zone; available cash in "
            f"{platform_time_zone()}"
        ),
        "investor": {
            "legal_name": investor.legal_name,
            "email": investor.email,
            "location": ", ".join(filter(None, [investor.region, investor.country])),
            "number": f"{investor.investor_id:08d}",
            "kind": investor.kind,
        },
        "sections": sections,
        "distributions": _distributions_context(data.distributions, fmt),
        "totals": [
            {
                "currency": total.currency,
                "contributions": fmt.money(total.contributions_minor, total.currency),
                "cost_closing": fmt.money(total.cost_closing_minor, total.currency),
                "escrow_closing": fmt.money(total.escrow_closing_minor, total.currency),
            }
            for total in data.totals
        ],
        "currency_returns": [
            {"currency": r.currency, **_returns_context(r, fmt)} for r in data.currency_returns
        ],
        "closing_date": fmt.date(data.period.end),
        "cash_accounts": [
            {
                "currency": cash.currency,
                "opening": fmt.money(cash.opening_minor, cash.currency),
                "closing": fmt.money(cash.closing_minor, cash.currency),
                "time_zone": cash.time_zone,
                "transactions": [
                    _line(line, cash.currency, 1, cash.time_zone, fmt) for line in cash.transactions
                ],
            }
            for cash in data.cash_accounts
        ],
    }


register(
    KindSpec(
        kind=StatementKind.INVESTOR_PERIODIC,
        title="Investor statement",
        template="reports/investor_periodic.html",
        needs_investor=True,
        needs_offering=False,
        build=_build_investor_periodic,
        context=_investor_periodic_context,
    )
)


# --- the sponsor's cap-table report ---------------------------------------------------------


def _build_captable_report(scope: StatementScope) -> CapTableReport:
    offering = _offering(scope.offering_id)
    assert offering is not None  # scope_check: this kind needs an offering
    return captable_report(offering=offering, period=scope.period)


def _captable_report_context(data: CapTableReport, fmt: Formatter) -> dict[str, Any]:
    offering = data.offering
    currency, per_unit, zone = offering.currency, offering.quanta_per_unit, offering.time_zone
    as_of_text = f"the end of {fmt.date(data.period.end)} in {zone}"
    return {
        "title": "Cap-table report",
        "running_subject": offering.title,
        "period_label": data.period.label,
        "period_text": f"As of {fmt.date(data.period.end)}",
        "as_of_text": as_of_text,
        "as_of_date": fmt.date(data.period.end),
        "time_zone": zone,
        "offering": {
            "offering_id": offering.offering_id,
            "title": offering.title,
            "issuer": offering.issuer_name,
            "property": offering.property_name,
            "price_per_unit": fmt.money(offering.price_per_unit_minor, currency),
        },
        "sponsor_name": data.sponsor_name,
        "authorized": fmt.units(data.authorized_quanta, per_unit),
        "issued": fmt.units(data.issued_quanta, per_unit),
        "treasury": fmt.units(data.treasury_quanta, per_unit),
        "issued_percent": fmt.percent(data.issued_percent_of_authorized),
        "holders": [
            {
                "investor_id": holder.investor_id,
                "legal_name": holder.legal_name,
                "units": fmt.units(holder.quanta, per_unit),
                "percent": fmt.percent(holder.percent),
                "cost": fmt.money(holder.cost_minor, currency),
            }
            for holder in data.holders
        ],
        "total_percent": fmt.percent(percent_of(data.issued_quanta, data.issued_quanta)),
        "cost_total": fmt.money(data.cost_total_minor, currency),
    }


register(
    KindSpec(
        kind=StatementKind.CAPTABLE_REPORT,
        title="Cap-table report",
        template="reports/captable_report.html",
        needs_investor=False,
        needs_offering=True,
        build=_build_captable_report,
        context=_captable_report_context,
    )
)


# The one-event kinds and the annual tax summary register themselves (they use `register`).
from reports import event_kinds  # noqa: E402,F401

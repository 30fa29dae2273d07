"""The kinds built in `reports/event_statements.py`: subscription confirmation, distribution
notice, annual tax summary. Each is registered with `reports.kinds.register`; the scope
helpers give the period and subject a document about one event is filed under."""

from __future__ import annotations

from typing import Any

from captable.models import Distribution
from common.errors import NotFound
from investors.models import Investor
from reports.event_statements import (
    AnnualTaxSummary,
    DistributionNotice,
    SubscriptionConfirmation,
    accepted_subscription,
    annual_tax_summary,
    day_in,
    day_period,
    distribution_notice,
    paid_payout,
    subject_id,
    subject_of_distribution,
    subject_of_subscription,
    subscription_confirmation,
)
from reports.formatting import Formatter
from reports.kinds import KindSpec, StatementScope, register
from reports.models import StatementKind
from reports.statements import InvestorDetails, OfferingDetails, TransactionLine

TAX_FORMS = {"w9": "W-9 on file", "w8ben": "W-8BEN on file", "none": "no tax form on file"}
TIER_NAMES = {
    "return_of_capital": "Return of capital",
    "preferred_return": "Preferred return",
    "catch_up": "Sponsor catch-up",
    "promote": "Promote split",
    "pro_rata": "Pro rata by units of record",
}


# --- scopes: which period and subject a one-event document is filed under -----------------


def subscription_confirmation_scope(subscription_id: int) -> StatementScope:
    """Filed on the day its units were issued (offering time zone)."""
    subscription, issued = accepted_subscription(subscription_id)
    day = day_in(issued.effective_at, subscription.offering.time_zone)
    return StatementScope(
        kind=StatementKind.SUBSCRIPTION_CONFIRMATION,
        period=day_period(day),
        investor_id=subscription.investor_id,
        offering_id=subscription.offering_id,
        subject=subject_of_subscription(subscription.pk),
    )


def distribution_notice_scope(distribution_id: int, investor_id: int) -> StatementScope:
    """Filed on the distribution's payment date."""
    payout = paid_payout(distribution_id=distribution_id, investor_id=investor_id)
    distribution: Distribution = payout.distribution
    return StatementScope(
        kind=StatementKind.DISTRIBUTION_NOTICE,
        period=day_period(distribution.payment_date),
        investor_id=investor_id,
        offering_id=distribution.offering_id,
        subject=subject_of_distribution(distribution.pk),
    )


# --- shared context parts -------------------------------------------------------------------


def _investor_context(investor: InvestorDetails) -> dict[str, Any]:
    return {
        "legal_name": investor.legal_name,
        "email": investor.email,
        "location": ", ".join(filter(None, [investor.region, investor.country])),
        "number": f"{investor.investor_id:08d}",
        "kind": investor.kind,
    }


def _offering_context(offering: OfferingDetails, fmt: Formatter) -> dict[str, Any]:
    return {
        "offering_id": offering.offering_id,
        "title": offering.title,
        "issuer": offering.issuer_name,
        "property": offering.property_name,
        "currency": offering.currency,
        "time_zone": offering.time_zone,
        "price_per_unit": fmt.money(offering.price_per_unit_minor, offering.currency),
    }


def _lines(
    lines: tuple[TransactionLine, ...], offering: OfferingDetails, fmt: Formatter
) -> list[dict[str, Any]]:
    currency, per_unit, zone = offering.currency, offering.quanta_per_unit, offering.time_zone
    return [
        {
            "date": fmt.day_in(line.effective_at, zone),
            "description": line.description,
            "entry_id": line.entry_id,
            "units": fmt.signed_units(line.units_quanta, per_unit),
            "cost": fmt.signed_money(line.cost_minor, currency),
            "cash": fmt.signed_money(line.cash_minor, currency),
        }
        for line in lines
    ]


# --- subscription confirmation --------------------------------------------------------------


def _build_subscription_confirmation(scope: StatementScope) -> SubscriptionConfirmation:
    return subscription_confirmation(subscription_id=subject_id(scope.subject, "subscription"))


def _subscription_confirmation_context(
    data: SubscriptionConfirmation, fmt: Formatter
) -> dict[str, Any]:
    offering = data.offering
    currency, zone = offering.currency, offering.time_zone
    accepted = fmt.moment(data.accepted_at, zone)
    return {
        "title": "Subscription confirmation",
        "running_subject": data.investor.legal_name,
        "period_label": data.period.label,
        "period_text": f"Subscription #{data.subscription_id} · {fmt.date(data.period.end)}",
        "as_of_text": f"the acceptance of subscription #{data.subscription_id}, {accepted}",
        "investor": _investor_context(data.investor),
        "offering": _offering_context(offering, fmt),
        "subscription_id": data.subscription_id,
        "exemption": data.exemption,
        "subscribed_at": fmt.moment(data.subscribed_at, zone),
        "accepted_at": accepted,
        "units": fmt.units(data.quanta, offering.quanta_per_unit),
        "units_issued": fmt.units(data.units_issued_quanta, offering.quanta_per_unit),
        "amount": fmt.money(data.amount_minor, currency),
        "fee": fmt.money(data.fee_minor, currency),
        "total_due": fmt.money(data.amount_minor + data.fee_minor, currency),
        "paid_in": fmt.money(data.paid_in_minor, currency),
        "refunded": fmt.money(data.refunded_minor, currency),
        "released": fmt.money(data.released_minor, currency),
        "cost": fmt.money(data.cost_minor, currency),
        "agreements": [
            {
                "typed_name": a.typed_name,
                "signed_at": fmt.moment(a.signed_at, zone),
                "document_version": a.document_version,
                "sha256": a.document_sha256,
            }
            for a in data.agreements
        ],
        "transactions": _lines(data.transactions, offering, fmt),
    }


register(
    KindSpec(
        kind=StatementKind.SUBSCRIPTION_CONFIRMATION,
        title="Subscription confirmation",
        template="reports/subscription_confirmation.html",
        needs_investor=True,
        needs_offering=True,
        build=_build_subscription_confirmation,
        context=_subscription_confirmation_context,
        needs_subject=True,
    )
)


# --- distribution notice --------------------------------------------------------------------


def _build_distribution_notice(scope: StatementScope) -> DistributionNotice:
    assert scope.investor_id is not None  # scope_check: this kind needs an investor
    return distribution_notice(
        distribution_id=subject_id(scope.subject, "distribution"), investor_id=scope.investor_id
    )


def _tiers_context(data: DistributionNotice, fmt: Formatter) -> list[dict[str, str]]:
    currency = data.offering.currency
    if not data.tiers:  # pro rata (or no breakdown recorded): one line, the whole payout
        return [
            {
                "tier": data.method,
                "investor": fmt.money(data.gross_minor, currency),
                "sponsor": fmt.money(data.promote_minor, currency),
            }
        ]
    return [
        {
            "tier": TIER_NAMES.get(tier.tier, tier.tier.replace("_", " ").capitalize()),
            "investor": fmt.money(tier.investor_minor, currency),
            "sponsor": fmt.money(tier.sponsor_minor, currency),
        }
        for tier in data.tiers
    ]


def _distribution_notice_context(data: DistributionNotice, fmt: Formatter) -> dict[str, Any]:
    offering = data.offering
    currency = offering.currency
    return {
        "title": "Distribution notice",
        "running_subject": data.investor.legal_name,
        "period_label": data.period.label,
        "period_text": f"Distribution #{data.distribution_id} · paid {fmt.date(data.payment_date)}",
        "as_of_text": f"the payment of distribution #{data.distribution_id}",
        "investor": _investor_context(data.investor),
        "offering": _offering_context(offering, fmt),
        "distribution_id": data.distribution_id,
        "distribution_kind": data.distribution_kind,
        "method": data.method,
        "record_date": fmt.date(data.record_date),
        "payment_date": fmt.date(data.payment_date),
        "paid_at": fmt.moment(data.paid_at, offering.time_zone),
        "distribution_amount": fmt.money(data.distribution_amount_minor, currency),
        "units_of_record": fmt.units(data.quanta_of_record, offering.quanta_per_unit),
        "gross": fmt.money(data.gross_minor, currency),
        "income": fmt.money(data.income_minor, currency),
        "return_of_capital": fmt.money(data.return_of_capital_minor, currency),
        "withholding": fmt.money(data.withholding_minor, currency),
        "withholding_rate": fmt.basis_points(data.withholding_rate_basis_points),
        "tax_form": TAX_FORMS.get(data.tax_form, data.tax_form),
        "net": fmt.money(data.net_minor, currency),
        "tiers": _tiers_context(data, fmt),
        "has_sponsor_share": data.promote_minor > 0 or any(t.sponsor_minor for t in data.tiers),
        "transactions": _lines(data.transactions, offering, fmt),
    }


register(
    KindSpec(
        kind=StatementKind.DISTRIBUTION_NOTICE,
        title="Distribution notice",
        template="reports/distribution_notice.html",
        needs_investor=True,
        needs_offering=True,
        build=_build_distribution_notice,
        context=_distribution_notice_context,
        needs_subject=True,
    )
)


# --- annual tax summary ---------------------------------------------------------------------


def _build_annual_tax_summary(scope: StatementScope) -> AnnualTaxSummary:
    assert scope.investor_id is not None  # scope_check: this kind needs an investor
    investor = Investor.objects.select_related("user").filter(pk=scope.investor_id).first()
    if investor is None:
        raise NotFound(f"Investor {scope.investor_id} not found.", code="investor_not_found")
    return annual_tax_summary(investor=investor, period=scope.period)


def _annual_tax_summary_context(data: AnnualTaxSummary, fmt: Formatter) -> dict[str, Any]:
    year = str(data.period.start.year)
    return {
        "title": "Annual tax summary",
        "running_subject": data.investor.legal_name,
        "period_label": data.period.label,
        "period_text": f"Tax year {year} · informational, not a tax form",
        "as_of_text": f"the end of {fmt.date(data.period.end)} in each offering's time zone",
        "year": year,
        "investor": _investor_context(data.investor),
        "tax_form": data.tax_form,
        "lines": [
            {
                "offering": line.offering_title,
                "distribution_id": line.distribution_id,
                "paid_on": fmt.date(line.paid_on),
                "income": fmt.money(line.income_minor, line.currency),
                "return_of_capital": fmt.money(line.return_of_capital_minor, line.currency),
                "withholding": fmt.money(line.withholding_minor, line.currency),
                "net": fmt.money(line.net_minor, line.currency),
            }
            for line in data.lines
        ],
        "totals": [
            {
                "currency": total.currency,
                "income": fmt.money(total.income_minor, total.currency),
                "return_of_capital": fmt.money(total.return_of_capital_minor, total.currency),
                "gross": fmt.money(total.gross_minor, total.currency),
                "withholding": fmt.money(total.withholding_minor, total.currency),
                "net": fmt.money(total.net_minor, total.currency),
            }
            for total in data.totals
        ],
    }


register(
    KindSpec(
        kind=StatementKind.ANNUAL_TAX_SUMMARY,
        title="Annual tax summary",
        template="reports/annual_tax_summary.html",
        needs_investor=True,
        needs_offering=False,
        build=_build_annual_tax_summary,
        context=_annual_tax_summary_context,
    )
)

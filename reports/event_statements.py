"""Statement data for one event and for a tax year: the subscription confirmation, the
distribution notice and the annual tax summary. Plain frozen dataclasses, ints in minor units
and quanta, never float; `reports/event_kinds.py` formats them.

Stable by construction, like the periodic statement: a confirmation is only issued for an
accepted subscription and a notice only for a paid payout, both final, and each is built from
exactly the ledger entries its own records name (the payments' entries, the close's entries
under their deterministic keys, the payout's entry), never from "everything up to now"; the
tax summary reads a calendar year that is over. So regenerating one gives the same figures
and fingerprint whatever else was posted since.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from captable.closing import close_entry_key
from captable.models import (
    AccountKind,
    Distribution,
    Entry,
    Payment,
    Payout,
    Subscription,
    SubscriptionStatus,
)
from common.errors import Conflict, NotFound, ValidationFailed
from investors.models import Investor
from offerings.models import Offering
from reports import selectors
from reports.formatting import locale_for_country
from reports.periods import Period
from reports.selectors import PostingRow
from reports.statements import (
    Fingerprint,
    InvestorDetails,
    OfferingDetails,
    PlatformDetails,
    TaxLine,
    TransactionLine,
    escrow_flows,
    investor_details,
    offering_details,
    platform_details,
    postings_fingerprint,
    require_period_over,
    transaction_lines,
)

CLOSE_STEPS = ("issue", "proceeds", "fees")


def subject_of_subscription(subscription_id: int) -> str:
    return f"subscription:{subscription_id}"


def subject_of_distribution(distribution_id: int) -> str:
    return f"distribution:{distribution_id}"


def subject_id(subject: str, prefix: str) -> int:
    name, _, number = subject.partition(":")
    if name != prefix or not number.isdigit():
        raise ValidationFailed(f"Not a {prefix}: {subject!r}.", code="statement_subject_invalid")
    return int(number)


def day_in(instant: datetime, time_zone: str) -> date:
    return instant.astimezone(ZoneInfo(time_zone)).date()


def day_period(day: date) -> Period:
    return Period(day.isoformat(), day, day)


@dataclass(frozen=True)
class InvestorLedger:
    """The postings of some entries on one investor's own accounts, as statement lines."""

    rows: tuple[PostingRow, ...]
    counterparts: dict[int, frozenset[str]]
    lines: tuple[TransactionLine, ...]

    @property
    def fingerprint(self) -> Fingerprint:
        return postings_fingerprint(
            sorted((r.posting_id, r.amount, r.cost_minor) for r in self.rows)
        )

    def total(self, account_kind: str) -> int:
        return sum(r.amount for r in self.rows if r.account_kind == account_kind)


def investor_ledger(*, investor_id: int, entry_ids: list[int]) -> InvestorLedger:
    own = [a.pk for a in selectors.investor_accounts(investor_id=investor_id)]
    rows = selectors.entry_postings_on_accounts(entry_ids=entry_ids, account_ids=own)
    counterparts = selectors.entry_counterpart_kinds(entry_ids=entry_ids, own_account_ids=own)
    return InvestorLedger(tuple(rows), counterparts, transaction_lines(rows, counterparts))


# --- subscription confirmation --------------------------------------------------------------


@dataclass(frozen=True)
class AgreementLine:
    typed_name: str
    signed_at: datetime
    document_version: str
    document_sha256: str


@dataclass(frozen=True)
class SubscriptionConfirmation:
    platform: PlatformDetails
    investor: InvestorDetails
    offering: OfferingDetails
    period: Period
    locale: str
    subscription_id: int
    exemption: str
    subscribed_at: datetime
    accepted_at: datetime
    quanta: int
    amount_minor: int
    fee_minor: int
    paid_in_minor: int
    refunded_minor: int
    released_minor: int
    units_issued_quanta: int
    cost_minor: int
    agreements: tuple[AgreementLine, ...]
    transactions: tuple[TransactionLine, ...]
    fingerprint: Fingerprint


def _subscription_entry_ids(subscription: Subscription) -> list[int]:
    """The entries this subscription's own records name: its payments' (funding, excess
    refund, bounce, refund) and its acceptance at the close (deterministic keys)."""
    ids: set[int] = set()
    for payment in Payment.objects.filter(subscription=subscription):
        for entry_id in (
            payment.funding_entry_id,
            payment.excess_refund_entry_id,
            payment.return_entry_id,
            payment.excess_return_entry_id,
            payment.refund_entry_id,
        ):
            if entry_id is not None:
                ids.add(entry_id)
    keys = [close_entry_key(subscription.offering_id, s, subscription.pk) for s in CLOSE_STEPS]
    ids.update(Entry.objects.filter(idempotency_key__in=keys).values_list("pk", flat=True))
    return sorted(ids)


def accepted_subscription(subscription_id: int) -> tuple[Subscription, Entry]:
    """The subscription and the entry that issued its units; 409 before it is accepted (a
    confirmation of a subscription that can still be refunded would not stay true)."""
    subscription = (
        Subscription.objects.select_related("offering__issuer", "offering__property", "investor")
        .filter(pk=subscription_id)
        .first()
    )
    if subscription is None:
        raise NotFound(f"Subscription {subscription_id} not found.", code="subscription_not_found")
    issued = Entry.objects.filter(
        idempotency_key=close_entry_key(subscription.offering_id, "issue", subscription.pk)
    ).first()
    if subscription.status != SubscriptionStatus.ACCEPTED or issued is None:
        raise Conflict(
            f"Subscription {subscription_id} is {subscription.status}: a confirmation is issued "
            "once the offering has closed and its units are issued.",
            code="subscription_not_accepted",
        )
    return subscription, issued


def subscription_confirmation(*, subscription_id: int) -> SubscriptionConfirmation:
    subscription, issued = accepted_subscription(subscription_id)
    offering = subscription.offering
    ledger = investor_ledger(
        investor_id=subscription.investor_id, entry_ids=_subscription_entry_ids(subscription)
    )
    paid_in, refunded, released = escrow_flows(list(ledger.rows), ledger.counterparts)
    holding = [r for r in ledger.rows if r.account_kind == AccountKind.HOLDING]
    confirmation = SubscriptionConfirmation(
        platform=platform_details(),
        investor=investor_details(subscription.investor),
        offering=offering_details(offering),
        period=day_period(day_in(issued.effective_at, offering.time_zone)),
        locale=locale_for_country(subscription.investor.country),
        subscription_id=subscription.pk,
        exemption=offering.get_exemption_display(),
        subscribed_at=subscription.created_at,
        accepted_at=issued.effective_at,
        quanta=subscription.quanta,
        amount_minor=subscription.amount_minor,
        fee_minor=subscription.fee_minor,
        paid_in_minor=paid_in,
        refunded_minor=refunded,
        released_minor=released,
        units_issued_quanta=sum(r.amount for r in holding),
        cost_minor=sum(r.cost_minor for r in holding),
        agreements=tuple(
            AgreementLine(a.typed_name, a.signed_at, a.document_version, a.document_sha256)
            for a in subscription.agreements.order_by("signed_at", "pk")
        ),
        transactions=ledger.lines,
        fingerprint=ledger.fingerprint,
    )
    _check_confirmation(confirmation)
    return confirmation


def _check_confirmation(confirmation: SubscriptionConfirmation) -> None:
    """What the subscription says and what the ledger did must agree; never render otherwise."""
    subscription = confirmation.subscription_id
    assert confirmation.units_issued_quanta == confirmation.quanta, (
        f"units issued differ from subscription {subscription}"
    )
    assert confirmation.cost_minor == confirmation.amount_minor, (
        f"cost differs from subscription {subscription}"
    )
    assert (
        confirmation.paid_in_minor - confirmation.refunded_minor == confirmation.released_minor
    ), f"escrow of subscription {subscription} is not empty after its acceptance"


# --- distribution notice --------------------------------------------------------------------


@dataclass(frozen=True)
class TierLine:
    tier: str
    investor_minor: int
    sponsor_minor: int


@dataclass(frozen=True)
class DistributionNotice:
    platform: PlatformDetails
    investor: InvestorDetails
    offering: OfferingDetails
    period: Period
    locale: str
    distribution_id: int
    distribution_kind: str
    method: str
    record_date: date
    payment_date: date
    paid_at: datetime
    distribution_amount_minor: int
    quanta_of_record: int
    gross_minor: int
    income_minor: int
    return_of_capital_minor: int
    withholding_minor: int
    withholding_rate_basis_points: int
    tax_form: str
    net_minor: int
    promote_minor: int
    tiers: tuple[TierLine, ...]
    transactions: tuple[TransactionLine, ...]
    fingerprint: Fingerprint


def paid_payout(*, distribution_id: int, investor_id: int) -> Payout:
    """The investor's payout of the distribution once paid (404 if they had none)."""
    payout = (
        Payout.objects.select_related("distribution__offering__issuer", "investor")
        .select_related("distribution__offering__property")
        .filter(distribution_id=distribution_id, investor_id=investor_id)
        .first()
    )
    if payout is None:
        raise NotFound(
            f"Investor {investor_id} has no payout in distribution {distribution_id}.",
            code="payout_not_found",
        )
    if payout.paid_at is None:
        raise Conflict(
            f"The payout of distribution {distribution_id} is not paid yet.",
            code="payout_not_paid",
        )
    return payout


def tier_lines(payout: Payout) -> tuple[TierLine, ...]:
    """The payout's per-tier breakdown where its distribution kept one (waterfall); pro-rata
    payouts (and databases from before tiers were recorded) have none, and the notice shows
    the income / return-of-capital split alone."""
    raw = getattr(payout, "tiers", None) or []
    lines = []
    for tier in raw if isinstance(raw, list) else []:
        if not isinstance(tier, dict):
            continue
        lines.append(
            TierLine(
                tier=str(tier.get("tier", "")),
                investor_minor=int(tier.get("investor_minor", 0)),
                sponsor_minor=int(tier.get("sponsor_minor", 0)),
            )
        )
    return tuple(lines)


def distribution_notice(*, distribution_id: int, investor_id: int) -> DistributionNotice:
    payout = paid_payout(distribution_id=distribution_id, investor_id=investor_id)
    distribution: Distribution = payout.distribution
    offering: Offering = distribution.offering
    ledger = investor_ledger(
        investor_id=investor_id, entry_ids=[payout.entry_id] if payout.entry_id else []
    )
    assert payout.paid_at is not None  # paid_payout
    notice = DistributionNotice(
        platform=platform_details(),
        investor=investor_details(payout.investor),
        offering=offering_details(offering),
        period=day_period(distribution.payment_date),
        locale=locale_for_country(payout.investor.country),
        distribution_id=distribution.pk,
        distribution_kind=distribution.get_kind_display(),
        method=distribution.get_method_display(),
        record_date=distribution.record_date,
        payment_date=distribution.payment_date,
        paid_at=payout.paid_at,
        distribution_amount_minor=distribution.amount_minor,
        quanta_of_record=payout.quanta,
        gross_minor=payout.gross_minor,
        income_minor=payout.income_minor,
        return_of_capital_minor=payout.return_of_capital_minor,
        withholding_minor=payout.withholding_minor,
        withholding_rate_basis_points=payout.withholding_rate_basis_points,
        tax_form=payout.tax_form,
        net_minor=payout.net_minor,
        promote_minor=int(getattr(payout, "promote_minor", 0) or 0),
        tiers=tier_lines(payout),
        transactions=ledger.lines,
        fingerprint=ledger.fingerprint,
    )
    assert ledger.total(AccountKind.CASH) == notice.net_minor, (
        f"the ledger paid investor {investor_id} other than the payout's net"
    )
    return notice


# --- annual tax summary ---------------------------------------------------------------------


@dataclass(frozen=True)
class TaxTotals:
    currency: str
    income_minor: int
    return_of_capital_minor: int
    withholding_minor: int
    net_minor: int

    @property
    def gross_minor(self) -> int:
        return self.income_minor + self.return_of_capital_minor


@dataclass(frozen=True)
class AnnualTaxSummary:
    platform: PlatformDetails
    investor: InvestorDetails
    period: Period
    locale: str
    tax_form: str
    lines: tuple[TaxLine, ...]
    fingerprint: Fingerprint

    @property
    def totals(self) -> tuple[TaxTotals, ...]:
        currencies = sorted({line.currency for line in self.lines})
        return tuple(
            TaxTotals(
                currency=currency,
                income_minor=sum(x.income_minor for x in self.lines if x.currency == currency),
                return_of_capital_minor=sum(
                    x.return_of_capital_minor for x in self.lines if x.currency == currency
                ),
                withholding_minor=sum(
                    x.withholding_minor for x in self.lines if x.currency == currency
                ),
                net_minor=sum(x.net_minor for x in self.lines if x.currency == currency),
            )
            for currency in currencies
        )


def require_calendar_year(period: Period) -> None:
    if not (
        period.start == date(period.start.year, 1, 1)
        and period.end == date(period.start.year, 12, 31)
    ):
        raise ValidationFailed(
            f"An annual tax summary covers a calendar year (e.g. 2025), not {period.label!r}.",
            code="period_not_a_year",
        )


def payouts_paid_in(*, investor_id: int, period: Period) -> list[Payout]:
    """The investor's payouts whose ledger entry falls inside the period, each read in its
    offering's time zone (as every other figure is)."""
    candidates = selectors.payouts_with_entries_between(
        investor_id=investor_id,
        after=period.start_instant(selectors.EARLIEST_ZONE),
        until=period.end_instant(selectors.LATEST_ZONE),
    )
    inside = []
    for payout in candidates:
        zone = payout.distribution.offering.time_zone
        assert payout.entry is not None  # selected with an entry
        moment = payout.entry.effective_at
        if period.start_instant(zone) < moment <= period.end_instant(zone):
            inside.append(payout)
    return inside


def tax_lines(payouts: list[Payout]) -> tuple[TaxLine, ...]:
    return tuple(
        TaxLine(
            offering_title=p.distribution.offering.title,
            distribution_id=p.distribution_id,
            paid_on=day_in(p.entry.effective_at, p.distribution.offering.time_zone),
            currency=p.distribution.currency,
            income_minor=p.income_minor,
            return_of_capital_minor=p.return_of_capital_minor,
            withholding_minor=p.withholding_minor,
            net_minor=p.net_minor,
        )
        for p in payouts
        if p.entry is not None
    )


def annual_tax_summary(*, investor: Investor, period: Period) -> AnnualTaxSummary:
    require_calendar_year(period)
    require_period_over(period)
    payouts = payouts_paid_in(investor_id=investor.pk, period=period)
    ledger = investor_ledger(
        investor_id=investor.pk, entry_ids=[p.entry_id for p in payouts if p.entry_id]
    )
    lines = tax_lines(payouts)
    summary = AnnualTaxSummary(
        platform=platform_details(),
        investor=investor_details(investor),
        period=period,
        locale=locale_for_country(investor.country),
        tax_form=investor.get_tax_form_display(),
        lines=lines,
        fingerprint=ledger.fingerprint,
    )
    assert ledger.total(AccountKind.CASH) == sum(t.net_minor for t in summary.totals), (
        f"the ledger paid investor {investor.pk} other than their payouts' net in {period.label}"
    )
    return summary

"""Reads for subscriptions: an investor's own subscriptions (with their waitlist position),
the totals the compliance checks count, the cancellation deadline, the agreement document, the
money a subscription has in escrow (from its payments) and its reconfirmations.

An investor sees only their own subscriptions: anyone else's is a 404, never a 403.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from captable.models import (
    SUBSCRIPTION_LIVE_STATUSES,
    Payment,
    PaymentStatus,
    ReconfirmationStatus,
    Subscription,
    SubscriptionReconfirmation,
    SubscriptionStatus,
)
from common.errors import NotFound
from common.money import format_minor_units
from common.sql import adapt_datetime, fetch_one
from investors.models import Investor
from investors.selectors import investor_of_user
from offerings.exemptions import Exemption
from offerings.models import DocumentKind, Offering, OfferingDocument
from offerings.quantities import format_units

# Reg CF (17 CFR 227.304): an investor may cancel for any reason until 48 hours before the
# offering's deadline; after that the commitment is binding.
REG_CF_CANCEL_CUTOFF = timedelta(hours=48)

AGREEMENT_FORMAT_VERSION = "agreement-1"


# --- the investor's own subscriptions ---------------------------------------------------------


def _with_waitlist_position(subscriptions: QuerySet[Subscription]) -> QuerySet[Subscription]:
    """`waitlist_ahead`: how many waitlisted subscriptions of the same offering came first
    (first come, first served by id). Meaningful only for waitlisted subscriptions."""
    ahead = (
        Subscription.objects.filter(
            offering_id=OuterRef("offering_id"),
            status=SubscriptionStatus.WAITLISTED,
            pk__lt=OuterRef("pk"),
        )
        .order_by()
        .values("offering_id")
        .annotate(count=Count("pk"))
        .values("count")
    )
    return subscriptions.annotate(
        waitlist_ahead=Coalesce(Subquery(ahead, output_field=IntegerField()), Value(0))
    )


def waitlist_position(subscription: Subscription) -> int | None:
    """1 for the head of the waitlist; None when the subscription is not waitlisted."""
    if subscription.status != SubscriptionStatus.WAITLISTED:
        return None
    ahead = getattr(subscription, "waitlist_ahead", None)
    if ahead is None:
        ahead = Subscription.objects.filter(
            offering_id=subscription.offering_id,
            status=SubscriptionStatus.WAITLISTED,
            pk__lt=subscription.pk,
        ).count()
    return int(ahead) + 1


def subscriptions_of_user(
    *, user: Any, status: str | None = None, offering_id: int | None = None
) -> QuerySet[Subscription]:
    """The caller's subscriptions, newest first (a user without an investor profile: 404)."""
    investor = investor_of_user(user=user)
    subscriptions = Subscription.objects.filter(investor=investor)
    if status:
        subscriptions = subscriptions.filter(status=status)
    if offering_id is not None:
        subscriptions = subscriptions.filter(offering_id=offering_id)
    return _with_waitlist_position(
        subscriptions.select_related("offering").order_by("-created_at", "-pk")
    )


def subscription_get(*, user: Any, subscription_id: int) -> Subscription:
    investor = investor_of_user(user=user)
    subscription = (
        _with_waitlist_position(Subscription.objects.select_related("offering", "investor"))
        .filter(pk=subscription_id, investor=investor)
        .first()
    )
    if subscription is None:
        raise NotFound(f"Subscription {subscription_id} not found.", code="subscription_not_found")
    return subscription


# --- what the compliance checks count -----------------------------------------------------------


@dataclass(frozen=True)
class Totals:
    quanta: int
    amount_minor: int


# Each count below is ONE hand-written query, used alone by its selector and as a part of the
# subscribe read (captable/subscriptions.py), so the rule has one definition. Positional
# parameters, in the order given; identifiers and statuses are constants of the models.
_SUBSCRIPTION = Subscription._meta.db_table
_OFFERING = Offering._meta.db_table
_LIVE_STATUSES = ", ".join(f"'{status}'" for status in SUBSCRIPTION_LIVE_STATUSES)


def investor_offering_totals_query(investor_id: object, offering_id: int) -> tuple[str, list[Any]]:
    """Columns `quanta`, `amount`: the investor's live subscriptions (waitlisted included)
    to one offering. (`investor_id`: an id, None, or a marker a caller replaces by an SQL
    expression: `common.sql.named_parameters`.)"""
    sql = (
        "SELECT COALESCE(SUM(ts.quanta), 0) AS quanta, "  # noqa: S608
        f"COALESCE(SUM(ts.amount_minor), 0) AS amount FROM {_SUBSCRIPTION} ts "
        f"WHERE ts.investor_id = %s AND ts.offering_id = %s AND ts.status IN ({_LIVE_STATUSES})"
    )
    return sql, [investor_id, offering_id]


def reg_cf_invested_query(investor_id: object, now: datetime) -> tuple[str, list[Any]]:
    """One column: the investor's Reg CF commitments on this platform over the 12 months to
    `now`, in any Reg CF offering (waitlisted ones included: they may still be filled).
    (`investor_id` as in `investor_offering_totals_query`.)"""
    sql = (
        f"SELECT COALESCE(SUM(cs.amount_minor), 0) FROM {_SUBSCRIPTION} cs "  # noqa: S608
        f"JOIN {_OFFERING} co ON co.id = cs.offering_id "
        f"WHERE cs.investor_id = %s AND co.exemption = '{Exemption.REG_CF.value}' "
        f"AND cs.status IN ({_LIVE_STATUSES}) AND cs.created_at > %s"
    )
    return sql, [investor_id, adapt_datetime(one_year_before(now))]


def waitlist_query(offering_id: int) -> tuple[str, list[Any]]:
    """Rows while anyone waits for units of the offering (for EXISTS)."""
    sql = (
        f"SELECT 1 FROM {_SUBSCRIPTION} ws WHERE ws.offering_id = %s "  # noqa: S608
        f"AND ws.status = '{SubscriptionStatus.WAITLISTED.value}'"
    )
    return sql, [offering_id]


def investor_offering_totals(*, investor: Investor, offering: Offering) -> Totals:
    """The investor's live subscriptions (waitlisted included) to one offering."""
    row = fetch_one(*investor_offering_totals_query(investor.pk, offering.pk))
    assert row is not None
    return Totals(int(row[0]), int(row[1]))


def one_year_before(moment: datetime) -> datetime:
    try:
        return moment.replace(year=moment.year - 1)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year - 1, day=28)


def reg_cf_invested_12_months_minor(*, investor: Investor, now: datetime) -> int:
    """The investor's Reg CF commitments on this platform over the 12 months to `now`, in any
    Reg CF offering (waitlisted ones included: they may still be filled)."""
    row = fetch_one(*reg_cf_invested_query(investor.pk, now))
    return int(row[0]) if row else 0


def non_accredited_purchaser_count(*, offering: Offering, excluding: Investor) -> int:
    """Reg D 506(b): distinct non-accredited purchasers of the offering, other than `excluding`."""
    return (
        Subscription.objects.filter(
            offering=offering,
            status__in=SUBSCRIPTION_LIVE_STATUSES,
            is_non_accredited_purchaser=True,
        )
        .exclude(investor=excluding)
        .values("investor_id")
        .distinct()
        .count()
    )


def waitlist_exists(*, offering_id: int) -> bool:
    sql, params = waitlist_query(offering_id)
    row = fetch_one(f"SELECT EXISTS ({sql})", params)
    return row is not None and bool(row[0])


# --- windows ------------------------------------------------------------------------------------


def cancel_deadline(*, offering: Offering) -> datetime:
    """Until when an unfunded subscription may be cancelled without a reason: 48 hours before
    the deadline for Reg CF, the deadline itself for the other exemptions. (ECSP's 4-day
    reflection period is per subscription: `Subscription.revocable_until`.)"""
    if offering.exemption == Exemption.REG_CF:
        return offering.closes_at - REG_CF_CANCEL_CUTOFF
    return offering.closes_at


# --- the agreement ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgreementDocument:
    text: str
    sha256: str
    version: str
    template_document_id: int | None


def _latest_documents(offering: Offering) -> list[OfferingDocument]:
    latest: dict[str, OfferingDocument] = {}
    for document in offering.documents.order_by("kind", "version"):
        latest[document.kind] = document
    return [latest[kind] for kind in sorted(latest)]


def _money(amount_minor: int, currency: str) -> str:
    return f"{currency} {format_minor_units(amount_minor, currency)}"


def subscription_agreement_document(subscription: Subscription) -> AgreementDocument:
    """The click-to-sign agreement for `subscription`, generated from the offering's current
    terms and the latest version of each of its documents (the sponsor's template among them).
    Deterministic: the same inputs give the same text and hash, so the hash the investor saw
    can be checked again when they sign."""
    offering = subscription.offering
    investor = subscription.investor
    issuer = offering.issuer
    currency = subscription.currency
    documents = _latest_documents(offering)
    template = next(
        (d for d in documents if d.kind == DocumentKind.SUBSCRIPTION_AGREEMENT_TEMPLATE), None
    )
    version = f"{AGREEMENT_FORMAT_VERSION}/template-v{template.version if template else 0}"
    deadline = cancel_deadline(offering=offering)
    lines = [
        "SUBSCRIPTION AGREEMENT",
        f"Agreement version: {version}",
        f"Subscription: #{subscription.pk}",
        f"Offering: {offering.title} (#{offering.pk}), {Exemption(offering.exemption).label}, "
        f"{offering.security_type}, {offering.funding_model}",
        f"Issuer: {issuer.legal_name} ({issuer.entity_type}, {issuer.jurisdiction_country}"
        f"{'-' + issuer.jurisdiction_region if issuer.jurisdiction_region else ''})",
        f"Investor: {investor.legal_name} (investor #{investor.pk})",
        f"Units: {format_units(subscription.quanta, offering.quanta_per_unit)} at "
        f"{_money(offering.price_per_unit_minor, currency)} per unit",
        f"Subscription amount: {_money(subscription.amount_minor, currency)}",
        f"Processing fee: {_money(subscription.fee_minor, currency)}",
        f"Total due: {_money(subscription.amount_minor + subscription.fee_minor, currency)}",
        f"Target raise: {_money(offering.target_raise_minor, currency)}; maximum raise: "
        f"{_money(offering.max_raise_minor, currency)}",
        f"Offering deadline: {offering.closes_at.isoformat()}",
        f"Cancellation without reason until: {deadline.isoformat()}",
    ]
    if subscription.revocable_until is not None:
        lines.append(
            f"Reflection period (revocation without reason) until: "
            f"{subscription.revocable_until.isoformat()}"
        )
    lines.append("Offering documents (latest versions, SHA-256):")
    lines.extend(f"  {d.kind} v{d.version}: {d.sha256}" for d in documents)
    if not documents:
        lines.append("  none")
    if template is None:
        lines.append("Terms: the platform's standard subscription terms.")
    else:
        lines.append(f"Terms: the issuer's subscription agreement template v{template.version}.")
    lines.append(
        "By typing their full legal name the investor subscribes for the units above on these "
        "terms and signs this agreement electronically."
    )
    text = "\n".join(lines) + "\n"
    return AgreementDocument(
        text=text,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        version=version,
        template_document_id=template.pk if template else None,
    )


# --- money: what a subscription has in escrow and what is still due -----------------------------


def subscription_total_due_minor(subscription: Subscription) -> int:
    """What the investor pays: the subscription amount plus the processing fee."""
    return subscription.amount_minor + subscription.fee_minor


def subscription_escrowed_minor(*, subscription_id: int) -> int:
    """The money this subscription's payments hold in escrow: received less what was sent
    back, over its confirmed payments (a returned or refunded payment holds nothing). The
    escrow account is per investor and offering; this is the subscription's share of it."""
    totals = Payment.objects.filter(
        subscription_id=subscription_id, status=PaymentStatus.CONFIRMED
    ).aggregate(received=Sum("amount_received_minor"), refunded=Sum("amount_refunded_minor"))
    return int(totals["received"] or 0) - int(totals["refunded"] or 0)


def subscription_amount_due_minor(subscription: Subscription) -> int:
    """What is still to be paid before the subscription is funded (never negative)."""
    escrowed = subscription_escrowed_minor(subscription_id=subscription.pk)
    return max(subscription_total_due_minor(subscription) - escrowed, 0)


def payments_of_subscription(*, user: Any, subscription_id: int) -> QuerySet[Payment]:
    """The payments of one of the caller's subscriptions, newest first (anyone else's: 404)."""
    subscription = subscription_get(user=user, subscription_id=subscription_id)
    return Payment.objects.filter(subscription=subscription).order_by("-created_at", "-pk")


# --- reconfirmation after a material change -----------------------------------------------------


def reconfirmation_pending(*, subscription_id: int) -> SubscriptionReconfirmation | None:
    return SubscriptionReconfirmation.objects.filter(
        subscription_id=subscription_id, status=ReconfirmationStatus.PENDING
    ).first()


def reconfirmations_of_subscription(
    *, user: Any, subscription_id: int
) -> QuerySet[SubscriptionReconfirmation]:
    """Every reconfirmation asked of one of the caller's subscriptions, newest first."""
    subscription = subscription_get(user=user, subscription_id=subscription_id)
    return SubscriptionReconfirmation.objects.filter(subscription=subscription).order_by(
        "-requested_at", "-pk"
    )

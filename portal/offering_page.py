"""What the offering page and the invest flow show beyond the offering itself: the exemption in
plain words, and the signed-in investor's own limit for this offering — read from the same
selectors and rule packs the subscription service applies (nothing recomputed here)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from captable.models import Subscription
from captable.subscription_selectors import (
    investor_offering_totals,
    reg_cf_invested_12_months_minor,
    subscription_agreement_document,
)
from captable.subscriptions import subscription_fee_minor
from common.models import User
from investors.compliance import ecsp_warning_threshold
from investors.models import Investor
from investors.selectors import investor_facts, investor_limits_summary
from offerings.exemptions import Exemption
from offerings.models import Offering
from offerings.quantities import cost_of_quanta_minor

EXEMPTION_IN_PLAIN_WORDS: dict[str, str] = {
    Exemption.REG_CF: (
        "Regulation Crowdfunding lets anyone invest, within a yearly limit set by their income "
        "and net worth (no limit for accredited investors). The raise is all-or-nothing at its "
        "target, and you may cancel for any reason until 48 hours before the deadline. Units "
        "cannot be resold for one year."
    ),
    Exemption.REG_D_506B: (
        "A private placement under Reg D 506(b): shown only to investors who had an account "
        "with us before it launched. Accredited investors may invest (self-certified), plus up "
        "to 35 non-accredited but financially sophisticated investors."
    ),
    Exemption.REG_D_506C: (
        "A private placement under Reg D 506(c): every investor must be an accredited investor "
        "whose status our compliance desk has verified from evidence (income, net worth or a "
        "licence) in the last 90 days."
    ),
    Exemption.REG_A_TIER2: (
        "Regulation A+ Tier 2 is open to everyone. If you are not an accredited investor you may "
        "put at most 10% of the greater of your annual income or net worth into this offering."
    ),
    Exemption.EU_ECSP: (
        "Offered under the EU crowdfunding regulation (ECSP). Non-sophisticated investors take "
        "a short knowledge test first, confirm a risk warning when one investment exceeds the "
        "greater of €1,000 or 5% of their net worth, and may revoke within 4 days."
    ),
}


@dataclass(frozen=True)
class OwnLimit:
    label: str
    allowed: bool
    left_minor: int | None  # None: no limit
    currency: str
    reason: str
    rule_version: str
    # ECSP has no cap: its figure is the amount above which the risk warning must be confirmed.
    is_warning_threshold: bool = False


def investor_of(user: Any) -> Investor | None:
    if not isinstance(user, User) or not user.is_authenticated:
        return None
    return Investor.objects.filter(user=user).first()


def own_limit(*, investor: Investor, offering: Offering, now: datetime) -> OwnLimit:
    """The line of `investor_limits_summary` for this offering's exemption; Reg A+'s limit is
    per offering, so what the investor already committed to it is taken off."""
    summary = investor_limits_summary(
        investor=investor,
        on=now,
        reg_cf_invested_12_months_minor=reg_cf_invested_12_months_minor(investor=investor, now=now),
    )
    line = next(line for line in summary.lines if line.exemption == offering.exemption)
    decision = line.decision
    left = decision.amount_allowed_minor
    if left is not None and offering.exemption == Exemption.REG_A_TIER2:
        held = investor_offering_totals(investor=investor, offering=offering).amount_minor
        left = max(0, left - held)
    return OwnLimit(
        label=line.label,
        allowed=decision.allowed,
        left_minor=left,
        currency=decision.currency,
        reason=decision.reason,
        rule_version=decision.rule_version,
        is_warning_threshold=offering.exemption == Exemption.EU_ECSP,
    )


@dataclass(frozen=True)
class Review:
    """The review step: amounts from the offering's terms and the subscription service's own
    fee function, and whether the ECSP warning applies to this amount."""

    quanta: int
    amount_minor: int
    fee_minor: int
    total_minor: int
    needs_ecsp_warning: bool


def review_of(*, investor: Investor, offering: Offering, quanta: int, now: datetime) -> Review:
    amount = cost_of_quanta_minor(
        quanta,
        price_per_unit_minor=offering.price_per_unit_minor,
        quanta_per_unit=offering.quanta_per_unit,
    )
    fee = subscription_fee_minor(offering, amount)
    return Review(
        quanta=quanta,
        amount_minor=amount,
        fee_minor=fee,
        total_minor=amount + fee,
        needs_ecsp_warning=_needs_ecsp_warning(investor, offering, amount, now),
    )


def _needs_ecsp_warning(investor: Investor, offering: Offering, amount: int, now: datetime) -> bool:
    if offering.exemption != Exemption.EU_ECSP:
        return False
    threshold = ecsp_warning_threshold(investor_facts(investor), now)
    return threshold.amount_allowed_minor is not None and amount > threshold.amount_allowed_minor


# What the agreement's number line reads before the subscription exists.
NUMBER_GIVEN_ON_SUBMIT = "Subscription: (numbered when you sign and subscribe)"


@dataclass(frozen=True)
class AgreementPreview:
    """The subscription agreement as the investor reads it before subscribing: the text the
    captable service will generate for these units, with the subscription's number not yet
    known (and, under ECSP, the reflection deadline that starts when it is signed)."""

    text: str
    sha256: str


def agreement_preview(*, investor: Investor, offering: Offering, quanta: int) -> AgreementPreview:
    amount = cost_of_quanta_minor(
        quanta,
        price_per_unit_minor=offering.price_per_unit_minor,
        quanta_per_unit=offering.quanta_per_unit,
    )
    unsaved = Subscription(
        offering=offering,
        investor=investor,
        quanta=quanta,
        amount_minor=amount,
        fee_minor=subscription_fee_minor(offering, amount),
        currency=offering.currency,
    )
    generated = subscription_agreement_document(unsaved).text
    lines = [
        NUMBER_GIVEN_ON_SUBMIT if line.startswith("Subscription: #") else line
        for line in generated.splitlines()
    ]
    text = "\n".join(lines) + "\n"
    return AgreementPreview(text=text, sha256=hashlib.sha256(text.encode()).hexdigest())

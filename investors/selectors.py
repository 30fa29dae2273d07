"""Reads: an investor by user or id, the facts the rule packs need, the limits summary."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from common.errors import NotFound
from common.models import User
from common.money import format_minor_units
from investors.compliance import (
    ComplianceDecision,
    InvestorFacts,
    accredited_investor_test,
    ecsp_warning_threshold,
    reg_a_tier2_investor_limit,
    reg_cf_investor_limit,
    reg_d_506b_check,
    reg_d_506c_check,
)
from investors.models import AccreditationStatus, Investor, InvestorDecision
from offerings.exemptions import Exemption

NO_PROFILE_MESSAGE = (
    "This account has no investor profile. Register as an investor with POST /auth/register."
)


def investor_of_user(*, user: Any) -> Investor:
    if not isinstance(user, User):
        raise NotFound(NO_PROFILE_MESSAGE, code="investor_profile_missing")
    investor = Investor.objects.select_related("user").filter(user=user).first()
    if investor is None:
        raise NotFound(NO_PROFILE_MESSAGE, code="investor_profile_missing")
    return investor


def investor_get(*, investor_id: int) -> Investor:
    investor = Investor.objects.select_related("user").filter(pk=investor_id).first()
    if investor is None:
        raise NotFound(f"Investor {investor_id} not found.", code="investor_not_found")
    return investor


def investor_decisions(*, investor: Investor) -> list[InvestorDecision]:
    return list(investor.decisions.select_related("decided_by").order_by("decided_at", "pk"))


def investor_facts(investor: Investor) -> InvestorFacts:
    return InvestorFacts(
        kind=investor.kind,
        financials_currency=investor.financials_currency,
        income_year_minus_2_minor=investor.income_year_minus_2_minor,
        income_year_minus_1_minor=investor.income_year_minus_1_minor,
        income_current_year_expected_minor=investor.income_current_year_expected_minor,
        is_joint_income=investor.is_joint_income,
        net_worth_minor=investor.net_worth_minor,
        entity_assets_minor=investor.entity_assets_minor,
        has_securities_license=investor.has_securities_license,
        is_sophisticated=investor.is_sophisticated,
    )


def investor_has_valid_knowledge_test(investor: Investor, *, on: datetime) -> bool:
    valid_until = investor.knowledge_test_valid_until
    return valid_until is not None and on < valid_until


def investor_is_sophisticated_for_506b(investor: Investor, *, on: datetime) -> bool:
    """Sophistication for 506(b): the staff-granted flag, or a passed, still-valid test."""
    return investor.is_sophisticated or investor_has_valid_knowledge_test(investor, on=on)


def investor_verified_accreditation_expires_at(investor: Investor) -> datetime | None:
    if investor.accreditation_status != AccreditationStatus.VERIFIED:
        return None
    return investor.accreditation_expires_at


@dataclass(frozen=True)
class LimitLine:
    exemption: str
    label: str
    decision: ComplianceDecision


@dataclass(frozen=True)
class InvestorLimitsSummary:
    on: datetime
    lines: tuple[LimitLine, ...]

    def as_text(self) -> str:
        rows = [f"Investor limits on {self.on.date().isoformat()}:"]
        for line in self.lines:
            decision = line.decision
            if not decision.allowed:
                amount = "n/a" if decision.code == "financials_currency_mismatch" else "no"
            elif decision.amount_allowed_minor is None:
                amount = "yes, no limit"
            else:
                figure = format_minor_units(decision.amount_allowed_minor, decision.currency)
                amount = f"{decision.currency} {figure}"
            rows.append(
                f"  {line.label:<29} {amount:<14} [{decision.rule_version}] {decision.reason}"
            )
        return "\n".join(rows)


def investor_limits_summary(
    *, investor: Investor, on: datetime, reg_cf_invested_12_months_minor: int = 0
) -> InvestorLimitsSummary:
    """Per exemption, what this investor may invest on `on` and under which rule version.

    Reg CF's remaining amount needs the investor's Reg CF investments of the last 12 months,
    which `captable/` knows; callers pass them (0 by default: the full 12-month limit).
    """
    facts = investor_facts(investor)
    is_accredited_status = investor.accreditation_status in (
        AccreditationStatus.SELF_CERTIFIED,
        AccreditationStatus.VERIFIED,
    )
    reg_506b = reg_d_506b_check(
        is_accredited_status, investor_is_sophisticated_for_506b(investor, on=on), 0, on
    )
    if reg_506b.allowed and not is_accredited_status:
        reg_506b = dataclasses.replace(
            reg_506b,
            reason="506(b): eligible as a sophisticated non-accredited purchaser while the "
            "offering has fewer than 35 of them.",
        )
    lines = (
        LimitLine(
            "accredited_investor", "Accredited investor test", accredited_investor_test(facts, on)
        ),
        LimitLine(
            Exemption.REG_CF,
            "Reg CF (12 months)",
            reg_cf_investor_limit(facts, reg_cf_invested_12_months_minor, on),
        ),
        LimitLine(
            Exemption.REG_A_TIER2,
            "Reg A+ Tier 2 (per offering)",
            reg_a_tier2_investor_limit(facts, on),
        ),
        LimitLine(Exemption.EU_ECSP, "ECSP warning threshold", ecsp_warning_threshold(facts, on)),
        LimitLine(Exemption.REG_D_506B, "Reg D 506(b)", reg_506b),
        LimitLine(
            Exemption.REG_D_506C,
            "Reg D 506(c)",
            reg_d_506c_check(investor_verified_accreditation_expires_at(investor), on),
        ),
    )
    return InvestorLimitsSummary(on=on, lines=lines)

"""Securities exemptions and the issuer-level rules of each (effective-dated, versioned).

Investor-level limits live in `investors/compliance.py`, which imports this module; the
issuer's 12-month cap lives here because `offerings/` validates offerings and may not import
`investors/`. Every rule carries a version string that decisions record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from django.db import models

from common.errors import ValidationFailed


class Exemption(models.TextChoices):
    REG_CF = "reg_cf", "Reg CF"
    REG_D_506B = "reg_d_506b", "Reg D 506(b)"
    REG_D_506C = "reg_d_506c", "Reg D 506(c)"
    REG_A_TIER2 = "reg_a_tier2", "Reg A+ Tier 2"
    EU_ECSP = "eu_ecsp", "EU ECSP (2020/1503)"


# An offering's currency must be its rule pack's currency until currency conversion exists.
EXEMPTION_CURRENCY: dict[str, str] = {
    Exemption.REG_CF: "USD",
    Exemption.REG_D_506B: "USD",
    Exemption.REG_D_506C: "USD",
    Exemption.REG_A_TIER2: "USD",
    Exemption.EU_ECSP: "EUR",
}


@dataclass(frozen=True)
class IssuerCapRule:
    exemption: str
    version: str
    effective_from: date
    currency: str
    # None: the exemption has no cap on the amount raised (Reg D).
    cap_per_12_months_minor: int | None
    # Reg CF must be all-or-nothing at its (mandatory) target.
    requires_all_or_nothing: bool = False


ISSUER_CAP_RULES: tuple[IssuerCapRule, ...] = (
    IssuerCapRule(
        Exemption.REG_CF,
        "reg-cf-2021-03-15",
        date(2021, 3, 15),
        "USD",
        5_000_000_00,
        requires_all_or_nothing=True,
    ),
    IssuerCapRule(Exemption.REG_D_506B, "reg-d-506b-2020", date(2020, 1, 1), "USD", None),
    IssuerCapRule(Exemption.REG_D_506C, "reg-d-506c-2020", date(2020, 1, 1), "USD", None),
    IssuerCapRule(
        Exemption.REG_A_TIER2, "reg-a-tier2-2021-03-15", date(2021, 3, 15), "USD", 75_000_000_00
    ),
    IssuerCapRule(Exemption.EU_ECSP, "ecsp-2021-11-10", date(2021, 11, 10), "EUR", 5_000_000_00),
)


def issuer_cap_rule(exemption: str, *, on: date) -> IssuerCapRule:
    """The rule in force for `exemption` on day `on` (the latest one effective by then)."""
    in_force = [
        rule
        for rule in ISSUER_CAP_RULES
        if rule.exemption == exemption and rule.effective_from <= on
    ]
    if not in_force:
        raise ValidationFailed(
            f"No {exemption} rule is in force on {on.isoformat()}.", code="no_rule_in_force"
        )
    return max(in_force, key=lambda rule: rule.effective_from)


def exemption_currency(exemption: str) -> str:
    return EXEMPTION_CURRENCY[exemption]

"""Investor-level compliance rule packs: effective-dated, versioned, pure functions.

Nothing here touches the database, the clock or settings: every function takes the investor's
facts and the day of the decision (`on`) and returns a frozen `ComplianceDecision` that names the
rule version it used. Later issues (subscriptions, transfers, DRIP) call these with facts they
build from the models.

Numbers are integers in minor units (cents) of the pack's currency, rates in basis points; the
only rounding is `common.money.round_minor_units`, applied once to an exact `Fraction`.

Choices documented here:
- Effective dating: each rule has a tuple of pack versions; `pack_in_force` picks the latest
  effective on `on`. The earliest packs hold the values in force since the 2021 amendments
  (with the 2022 inflation-adjusted Reg CF figures); a date before a rule's first pack raises
  `ValidationFailed` (code ``no_rule_in_force``) instead of silently applying today's numbers.
- "Annual income" (Reg CF, Reg A): the income expected this year when given, else last year's.
- Reg CF: the $124,000 maximum caps both branches (it can only bind the 5 % branch when one
  figure is at least $2.48M while the other is below $124,000), so the limit always lies
  between $2,500 and $124,000 and never falls when net worth or income rises.
- Financials in another currency than the pack's are never converted: the decision says
  "not applicable" (allowed False, amount 0, code ``financials_currency_mismatch``).
- Entities and trusts: accredited by total assets above $5M (the "all owners accredited" route
  is left to staff verification with method "other"); an IRA by its owner's individual tests.
  For non-natural persons the income and net-worth figures are revenue and net assets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from fractions import Fraction
from typing import Protocol, TypeVar

from common.errors import ValidationFailed
from common.money import BASIS_POINTS_PER_UNIT, format_minor_units, round_minor_units

NATURAL_PERSON_KINDS = frozenset({"individual", "joint", "ira"})
ENTITY_KINDS = frozenset({"entity", "trust"})


@dataclass(frozen=True)
class InvestorFacts:
    """What the rules need to know about an investor (figures in `financials_currency`)."""

    kind: str = "individual"
    financials_currency: str = "USD"
    income_year_minus_2_minor: int | None = None
    income_year_minus_1_minor: int | None = None
    income_current_year_expected_minor: int | None = None
    is_joint_income: bool = False
    net_worth_minor: int | None = None  # excluding the primary residence
    entity_assets_minor: int | None = None  # entities and trusts: total assets
    has_securities_license: bool = False  # Series 7, 65 or 82 in good standing
    is_sophisticated: bool = False

    def __post_init__(self) -> None:
        for name in (
            "income_year_minus_2_minor",
            "income_year_minus_1_minor",
            "income_current_year_expected_minor",
            "net_worth_minor",
            "entity_assets_minor",
        ):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise TypeError(f"{name} must be an int of minor units")
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative")
        if self.kind not in NATURAL_PERSON_KINDS | ENTITY_KINDS:
            raise ValueError(f"unknown investor kind {self.kind!r}")

    @property
    def annual_income_minor(self) -> int | None:
        if self.income_current_year_expected_minor is not None:
            return self.income_current_year_expected_minor
        return self.income_year_minus_1_minor


@dataclass(frozen=True)
class ComplianceDecision:
    """One rule's answer. `amount_allowed_minor` None means "no limit"; 0 means nothing."""

    allowed: bool
    amount_allowed_minor: int | None
    currency: str
    reason: str
    rule_version: str
    code: str = "ok"


class _Pack(Protocol):
    @property
    def version(self) -> str: ...

    @property
    def effective_from(self) -> date: ...


PackT = TypeVar("PackT", bound=_Pack)


def _day(on: date) -> date:
    return on.date() if isinstance(on, datetime) else on


def pack_in_force(packs: Sequence[PackT], on: date, *, rule: str) -> PackT:
    """The latest pack effective on day `on`; a day before the first pack is an error."""
    day = _day(on)
    in_force = [pack for pack in packs if pack.effective_from <= day]
    if not in_force:
        first = min(pack.effective_from for pack in packs)
        raise ValidationFailed(
            f"No {rule} rule is in force on {day.isoformat()}: the first rule pack applies "
            f"from {first.isoformat()}.",
            code="no_rule_in_force",
        )
    return max(in_force, key=lambda pack: pack.effective_from)


def _is_valid_until(expires_at: datetime | None, on: date) -> bool:
    """Valid at instant `on`; a plain date must be covered for the whole day."""
    if expires_at is None:
        return False
    if isinstance(on, datetime):
        return on < expires_at
    return on < expires_at.date()


def _money(amount_minor: int, currency: str) -> str:
    return f"{currency} {format_minor_units(amount_minor, currency)}"


def _share(amount_minor: int, basis_points: int) -> int:
    return round_minor_units(Fraction(amount_minor * basis_points, BASIS_POINTS_PER_UNIT))


def _currency_mismatch(
    facts: InvestorFacts, currency: str, rule: str, version: str
) -> ComplianceDecision:
    return ComplianceDecision(
        allowed=False,
        amount_allowed_minor=0,
        currency=currency,
        reason=(
            f"Not applicable: financials are in {facts.financials_currency} but {rule} limits "
            f"are in {currency}, and no currency conversion is done. Restate your financials "
            f"in {currency}."
        ),
        rule_version=version,
        code="financials_currency_mismatch",
    )


# --- accredited investor (US) ---------------------------------------------------------------


@dataclass(frozen=True)
class AccreditedInvestorPack:
    version: str
    effective_from: date
    currency: str
    income_individual_minor: int  # strictly more than this, each year
    income_joint_minor: int
    net_worth_minor: int  # strictly more than this, excluding the primary residence
    entity_assets_minor: int  # strictly more than this


ACCREDITED_INVESTOR_PACKS: tuple[AccreditedInvestorPack, ...] = (
    # Rule 501(a) as amended in 2020 (professional certifications: Series 7, 65, 82).
    AccreditedInvestorPack(
        version="accredited-investor-2020-12-08",
        effective_from=date(2020, 12, 8),
        currency="USD",
        income_individual_minor=200_000_00,
        income_joint_minor=300_000_00,
        net_worth_minor=1_000_000_00,
        entity_assets_minor=5_000_000_00,
    ),
)


def accredited_investor_test(facts: InvestorFacts, on: date) -> ComplianceDecision:
    """Does the investor meet the accredited-investor definition on `on`?"""
    pack = pack_in_force(ACCREDITED_INVESTOR_PACKS, on, rule="accredited investor")

    def decision(allowed: bool, reason: str, code: str) -> ComplianceDecision:
        return ComplianceDecision(
            allowed, None if allowed else 0, pack.currency, reason, pack.version, code
        )

    if facts.kind in ENTITY_KINDS:
        assets = facts.entity_assets_minor
        threshold = _money(pack.entity_assets_minor, pack.currency)
        if facts.financials_currency != pack.currency:
            return decision(
                False,
                f"Not accredited: total assets are in {facts.financials_currency}; the "
                f"{threshold} test is in {pack.currency} and no conversion is done.",
                "financials_currency_mismatch",
            )
        if assets is not None and assets > pack.entity_assets_minor:
            return decision(True, f"Accredited: total assets above {threshold}.", "ok")
        return decision(
            False, f"Not accredited: total assets not above {threshold}.", "not_accredited"
        )
    if facts.has_securities_license:
        return decision(True, "Accredited: holds a Series 7, 65 or 82 licence.", "ok")
    if facts.financials_currency != pack.currency:
        return decision(
            False,
            f"Not accredited: financials are in {facts.financials_currency}; the income and "
            f"net-worth tests are in {pack.currency} and no conversion is done.",
            "financials_currency_mismatch",
        )
    income_threshold = (
        pack.income_joint_minor if facts.is_joint_income else pack.income_individual_minor
    )
    incomes = (
        facts.income_year_minus_2_minor,
        facts.income_year_minus_1_minor,
        facts.income_current_year_expected_minor,
    )
    if all(income is not None and income > income_threshold for income in incomes):
        which = "joint income" if facts.is_joint_income else "income"
        return decision(
            True,
            f"Accredited: {which} above {_money(income_threshold, pack.currency)} in each of "
            "the last two years and expected this year.",
            "ok",
        )
    if facts.net_worth_minor is not None and facts.net_worth_minor > pack.net_worth_minor:
        return decision(
            True,
            f"Accredited: net worth above {_money(pack.net_worth_minor, pack.currency)} "
            "excluding the primary residence.",
            "ok",
        )
    return decision(
        False,
        f"Not accredited: income not above {_money(income_threshold, pack.currency)} in each "
        f"of the last two years and this year, net worth not above "
        f"{_money(pack.net_worth_minor, pack.currency)}, and no Series 7/65/82 licence.",
        "not_accredited",
    )


# --- Reg CF ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegCfInvestorPack:
    version: str
    effective_from: date
    currency: str
    threshold_minor: int  # both income and net worth at least this → the 10 % branch
    floor_minor: int
    low_rate_basis_points: int
    high_rate_basis_points: int
    maximum_minor: int


REG_CF_INVESTOR_PACKS: tuple[RegCfInvestorPack, ...] = (
    # Rule 100(a)(2) after the 2021 amendments (greater of income and net worth, no limit for
    # accredited investors), with the inflation-adjusted $2,500 / $124,000 figures.
    RegCfInvestorPack(
        version="reg-cf-investor-2021-03-15",
        effective_from=date(2021, 3, 15),
        currency="USD",
        threshold_minor=124_000_00,
        floor_minor=2_500_00,
        low_rate_basis_points=500,
        high_rate_basis_points=1_000,
        maximum_minor=124_000_00,
    ),
)


def _reg_cf_annual_limit(facts: InvestorFacts, pack: RegCfInvestorPack) -> tuple[int, str]:
    income = facts.annual_income_minor or 0
    net_worth = facts.net_worth_minor or 0
    greater = max(income, net_worth)
    if income >= pack.threshold_minor and net_worth >= pack.threshold_minor:
        limit = min(_share(greater, pack.high_rate_basis_points), pack.maximum_minor)
        how = (
            f"income and net worth both at least {_money(pack.threshold_minor, pack.currency)}"
            f": 10% of {_money(greater, pack.currency)}, capped at "
            f"{_money(pack.maximum_minor, pack.currency)}"
        )
    else:
        five_percent = _share(greater, pack.low_rate_basis_points)
        limit = min(max(pack.floor_minor, five_percent), pack.maximum_minor)
        how = (
            f"income or net worth below {_money(pack.threshold_minor, pack.currency)}: the "
            f"greater of {_money(pack.floor_minor, pack.currency)} and 5% of "
            f"{_money(greater, pack.currency)}"
        )
    if facts.annual_income_minor is None or facts.net_worth_minor is None:
        how += " (missing figures count as zero)"
    return limit, how


def reg_cf_investor_limit(
    facts: InvestorFacts, already_invested_12_months_minor: int, on: date
) -> ComplianceDecision:
    """How much more the investor may put into Reg CF offerings over the 12 months to `on`."""
    pack = pack_in_force(REG_CF_INVESTOR_PACKS, on, rule="Reg CF investor limit")
    if already_invested_12_months_minor < 0:
        raise ValueError("already invested must not be negative")
    if accredited_investor_test(facts, on).allowed:
        return ComplianceDecision(
            True, None, pack.currency, "No Reg CF limit: accredited investor.", pack.version
        )
    if facts.financials_currency != pack.currency:
        return _currency_mismatch(facts, pack.currency, "Reg CF", pack.version)
    limit, how = _reg_cf_annual_limit(facts, pack)
    remaining = max(0, limit - already_invested_12_months_minor)
    reason = (
        f"Reg CF 12-month limit {_money(limit, pack.currency)} ({how}); already invested "
        f"{_money(already_invested_12_months_minor, pack.currency)}, remaining "
        f"{_money(remaining, pack.currency)}."
    )
    code = "ok" if remaining > 0 else "reg_cf_limit_reached"
    return ComplianceDecision(remaining > 0, remaining, pack.currency, reason, pack.version, code)


# --- Reg A+ Tier 2 --------------------------------------------------------------------------


@dataclass(frozen=True)
class RegATier2InvestorPack:
    version: str
    effective_from: date
    currency: str
    rate_basis_points: int


REG_A_TIER2_INVESTOR_PACKS: tuple[RegATier2InvestorPack, ...] = (
    RegATier2InvestorPack(
        version="reg-a-tier2-investor-2021-03-15",
        effective_from=date(2021, 3, 15),
        currency="USD",
        rate_basis_points=1_000,
    ),
)


def reg_a_tier2_investor_limit(facts: InvestorFacts, on: date) -> ComplianceDecision:
    """Most a non-accredited investor may put into one Reg A+ Tier 2 offering."""
    pack = pack_in_force(REG_A_TIER2_INVESTOR_PACKS, on, rule="Reg A+ Tier 2 investor limit")
    if accredited_investor_test(facts, on).allowed:
        return ComplianceDecision(
            True,
            None,
            pack.currency,
            "No Reg A+ Tier 2 limit: accredited investor.",
            pack.version,
        )
    if facts.financials_currency != pack.currency:
        return _currency_mismatch(facts, pack.currency, "Reg A+ Tier 2", pack.version)
    greater = max(facts.annual_income_minor or 0, facts.net_worth_minor or 0)
    limit = _share(greater, pack.rate_basis_points)
    reason = (
        f"Reg A+ Tier 2 limit per offering {_money(limit, pack.currency)}: 10% of the greater "
        f"of annual income and net worth ({_money(greater, pack.currency)})."
    )
    code = "ok" if limit > 0 else "reg_a_no_financials"
    return ComplianceDecision(limit > 0, limit, pack.currency, reason, pack.version, code)


# --- Reg D ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegDPack:
    version: str
    effective_from: date
    currency: str
    non_accredited_purchasers_max_506b: int
    verification_validity_days_506c: int


REG_D_PACKS: tuple[RegDPack, ...] = (
    RegDPack(
        version="reg-d-2020-01-01",
        effective_from=date(2020, 1, 1),
        currency="USD",
        non_accredited_purchasers_max_506b=35,
        verification_validity_days_506c=90,
    ),
)


def reg_d_pack(on: date) -> RegDPack:
    return pack_in_force(REG_D_PACKS, on, rule="Reg D")


def reg_d_506b_check(
    is_accredited: bool, is_sophisticated: bool, non_accredited_count_in_offering: int, on: date
) -> ComplianceDecision:
    """May this purchaser join a 506(b) offering that already has that many non-accredited
    purchasers (not counting this one)?"""
    pack = reg_d_pack(on)
    if is_accredited:
        return ComplianceDecision(
            True, None, pack.currency, "506(b): accredited investor.", pack.version
        )
    if not is_sophisticated:
        return ComplianceDecision(
            False,
            0,
            pack.currency,
            "506(b): a non-accredited purchaser must be sophisticated.",
            pack.version,
            "not_sophisticated",
        )
    maximum = pack.non_accredited_purchasers_max_506b
    if non_accredited_count_in_offering >= maximum:
        return ComplianceDecision(
            False,
            0,
            pack.currency,
            f"506(b): the offering already has {non_accredited_count_in_offering} "
            f"non-accredited purchasers; at most {maximum} are allowed.",
            pack.version,
            "non_accredited_quota_full",
        )
    return ComplianceDecision(
        True,
        None,
        pack.currency,
        f"506(b): sophisticated non-accredited purchaser number "
        f"{non_accredited_count_in_offering + 1} of at most {maximum}.",
        pack.version,
    )


def reg_d_506c_check(
    verified_accreditation_expires_at: datetime | None, on: date
) -> ComplianceDecision:
    """506(c): the purchaser's accreditation must be verified and not expired."""
    pack = reg_d_pack(on)
    if verified_accreditation_expires_at is None:
        return ComplianceDecision(
            False,
            0,
            pack.currency,
            "506(c): accreditation has not been verified (self-certification is not enough).",
            pack.version,
            "accreditation_not_verified",
        )
    if not _is_valid_until(verified_accreditation_expires_at, on):
        return ComplianceDecision(
            False,
            0,
            pack.currency,
            f"506(c): the accreditation verification expired on "
            f"{verified_accreditation_expires_at.date().isoformat()}; it must be renewed.",
            pack.version,
            "accreditation_expired",
        )
    return ComplianceDecision(
        True,
        None,
        pack.currency,
        f"506(c): accreditation verified until "
        f"{verified_accreditation_expires_at.date().isoformat()}.",
        pack.version,
    )


# --- EU ECSP --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EcspPack:
    version: str
    effective_from: date
    currency: str
    warning_floor_minor: int
    warning_net_worth_basis_points: int
    knowledge_test_validity_years: int
    reflection_period_days: int


ECSP_PACKS: tuple[EcspPack, ...] = (
    # Regulation (EU) 2020/1503, applicable from 10 November 2021 (Art. 21 and 22).
    EcspPack(
        version="ecsp-2021-11-10",
        effective_from=date(2021, 11, 10),
        currency="EUR",
        warning_floor_minor=1_000_00,
        warning_net_worth_basis_points=500,
        knowledge_test_validity_years=2,
        reflection_period_days=4,
    ),
)

# The pre-contractual reflection period (Art. 22): a non-sophisticated investor may revoke an
# offer or expression of interest within 4 calendar days without giving a reason.
ECSP_REFLECTION_PERIOD_DAYS = ECSP_PACKS[-1].reflection_period_days


def ecsp_pack(on: date) -> EcspPack:
    return pack_in_force(ECSP_PACKS, on, rule="ECSP")


def ecsp_warning_threshold(facts: InvestorFacts, on: date) -> ComplianceDecision:
    """Above this single investment a non-sophisticated investor must acknowledge a warning:
    the greater of €1,000 and 5% of net worth."""
    pack = ecsp_pack(on)
    if facts.is_sophisticated:
        return ComplianceDecision(
            True,
            None,
            pack.currency,
            "ECSP: sophisticated investor, no warning threshold.",
            pack.version,
        )
    if facts.financials_currency != pack.currency:
        return _currency_mismatch(facts, pack.currency, "ECSP", pack.version)
    net_worth = facts.net_worth_minor or 0
    threshold = max(
        pack.warning_floor_minor, _share(net_worth, pack.warning_net_worth_basis_points)
    )
    reason = (
        f"ECSP: investing more than {_money(threshold, pack.currency)} at once (the greater of "
        f"{_money(pack.warning_floor_minor, pack.currency)} and 5% of net worth "
        f"{_money(net_worth, pack.currency)}) needs an explicit risk-warning acknowledgement."
    )
    return ComplianceDecision(True, threshold, pack.currency, reason, pack.version)


def ecsp_check(
    facts: InvestorFacts,
    amount_minor: int,
    knowledge_test_valid_until: datetime | None,
    acknowledged_warning: bool,
    on: date,
) -> ComplianceDecision:
    """May the investor make this one ECSP investment of `amount_minor` (EUR cents)?"""
    pack = ecsp_pack(on)
    if amount_minor <= 0:
        raise ValueError("amount must be positive")
    if facts.is_sophisticated:
        return ecsp_warning_threshold(facts, on)
    if not _is_valid_until(knowledge_test_valid_until, on):
        return ComplianceDecision(
            False,
            0,
            pack.currency,
            "ECSP: a passed entry knowledge test, renewed every "
            f"{pack.knowledge_test_validity_years} years, is required first.",
            pack.version,
            "knowledge_test_required",
        )
    threshold = ecsp_warning_threshold(facts, on)
    if threshold.amount_allowed_minor is None or not threshold.allowed:
        return threshold
    if amount_minor > threshold.amount_allowed_minor and not acknowledged_warning:
        return ComplianceDecision(
            False,
            threshold.amount_allowed_minor,
            pack.currency,
            f"ECSP: {_money(amount_minor, pack.currency)} exceeds "
            f"{_money(threshold.amount_allowed_minor, pack.currency)}; the risk warning must "
            "be acknowledged first.",
            pack.version,
            "warning_not_acknowledged",
        )
    return ComplianceDecision(
        True,
        None,
        pack.currency,
        f"ECSP: allowed; the investor may revoke within {pack.reflection_period_days} days "
        "without giving a reason.",
        pack.version,
    )

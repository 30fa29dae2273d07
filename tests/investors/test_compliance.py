"""Rule packs: worked examples from the regulations, boundaries, properties, effective dating."""

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.errors import ValidationFailed
from investors.compliance import (
    ECSP_REFLECTION_PERIOD_DAYS,
    REG_CF_INVESTOR_PACKS,
    ComplianceDecision,
    InvestorFacts,
    RegCfInvestorPack,
    accredited_investor_test,
    ecsp_check,
    ecsp_warning_threshold,
    pack_in_force,
    reg_a_tier2_investor_limit,
    reg_cf_investor_limit,
    reg_d_506b_check,
    reg_d_506c_check,
)

pytestmark = pytest.mark.embedded

ON = date(2025, 6, 1)
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def dollars(amount: int) -> int:
    return amount * 100


def person(
    *,
    income: int | None = None,
    income_minus_1: int | None = None,
    income_minus_2: int | None = None,
    net_worth: int | None = None,
    joint: bool = False,
    currency: str = "USD",
    **extra,
) -> InvestorFacts:
    """Facts in whole currency units (dollars or euros) for readability."""

    def minor(value: int | None) -> int | None:
        return None if value is None else dollars(value)

    return InvestorFacts(
        income_current_year_expected_minor=minor(income),
        income_year_minus_1_minor=minor(income_minus_1),
        income_year_minus_2_minor=minor(income_minus_2),
        net_worth_minor=minor(net_worth),
        is_joint_income=joint,
        financials_currency=currency,
        **extra,
    )


# --- Reg CF ---------------------------------------------------------------------------------

REG_CF_CASES = [
    pytest.param(person(income=50_000, net_worth=80_000), dollars(4_000), id="50k-80k-gives-4000"),
    pytest.param(
        person(income=150_000, net_worth=130_000), dollars(15_000), id="150k-130k-gives-15000"
    ),
    pytest.param(person(income=30_000, net_worth=20_000), dollars(2_500), id="30k-20k-gives-2500"),
    pytest.param(
        person(income=1_500_000, income_minus_1=100_000, net_worth=500_000),
        dollars(124_000),
        id="1.5M-expected-100k-last-year-capped-124000",
    ),
    pytest.param(
        person(income=124_000, net_worth=124_000), dollars(12_400), id="both-exactly-124k-10pct"
    ),
    pytest.param(
        person(income=123_999, net_worth=124_000), dollars(6_200), id="income-just-below-5pct"
    ),
    pytest.param(
        # 5% of $123,999.99 = $6,199.9995 → rounded half-even to $6,200.00
        InvestorFacts(income_current_year_expected_minor=12_399_999, net_worth_minor=0),
        620_000,
        id="5pct-exact-then-rounded",
    ),
    pytest.param(
        # last year's income is used when this year's expectation is not given
        person(income_minus_1=200_000, net_worth=150_000),
        dollars(20_000),
        id="falls-back-to-last-year",
    ),
    pytest.param(person(), dollars(2_500), id="no-figures-floor"),
    pytest.param(
        person(income=5_000_000, net_worth=100_000), dollars(124_000), id="5pct-branch-capped"
    ),
]


@pytest.mark.parametrize(("facts", "expected_minor"), REG_CF_CASES)
def test_reg_cf_limit_worked_examples(facts, expected_minor):
    decision = reg_cf_investor_limit(facts, 0, ON)
    assert decision.allowed
    assert decision.amount_allowed_minor == expected_minor
    assert decision.currency == "USD"
    assert decision.rule_version == "reg-cf-investor-2021-03-15"


def test_reg_cf_accredited_investor_has_no_limit():
    facts = person(net_worth=2_000_000)
    decision = reg_cf_investor_limit(facts, dollars(500_000), ON)
    assert decision == ComplianceDecision(
        True, None, "USD", "No Reg CF limit: accredited investor.", "reg-cf-investor-2021-03-15"
    )


@pytest.mark.parametrize(
    ("already_invested", "remaining", "allowed"),
    [
        pytest.param(dollars(1_000), dollars(3_000), True, id="partly-used"),
        pytest.param(dollars(4_000), 0, False, id="exactly-used"),
        pytest.param(dollars(9_000), 0, False, id="over-used-never-negative"),
    ],
)
def test_reg_cf_remaining_subtracts_the_last_12_months(already_invested, remaining, allowed):
    decision = reg_cf_investor_limit(person(income=50_000, net_worth=80_000), already_invested, ON)
    assert decision.amount_allowed_minor == remaining
    assert decision.allowed is allowed
    if not allowed:
        assert decision.code == "reg_cf_limit_reached"


def test_reg_cf_with_eur_financials_is_not_applicable_not_converted():
    decision = reg_cf_investor_limit(person(income=50_000, net_worth=80_000, currency="EUR"), 0, ON)
    assert not decision.allowed
    assert decision.amount_allowed_minor == 0
    assert decision.code == "financials_currency_mismatch"
    assert "Not applicable" in decision.reason
    assert "EUR" in decision.reason


amounts = st.one_of(st.none(), st.integers(min_value=0, max_value=10**12))


@given(income=amounts, income_minus_1=amounts, net_worth=amounts, extra=st.integers(0, 10**11))
def test_reg_cf_limit_is_bounded_and_monotone_in_net_worth(
    income, income_minus_1, net_worth, extra
):
    facts = InvestorFacts(
        income_current_year_expected_minor=income,
        income_year_minus_1_minor=income_minus_1,
        net_worth_minor=net_worth,
    )
    decision = reg_cf_investor_limit(facts, 0, ON)
    if accredited_investor_test(facts, ON).allowed:
        assert decision.amount_allowed_minor is None
        return
    limit = decision.amount_allowed_minor
    assert limit is not None
    assert dollars(2_500) <= limit <= dollars(124_000)
    richer = InvestorFacts(
        income_current_year_expected_minor=income,
        income_year_minus_1_minor=income_minus_1,
        net_worth_minor=(net_worth or 0) + extra,
    )
    richer_decision = reg_cf_investor_limit(richer, 0, ON)
    # more net worth either keeps the limit, raises it, or makes the investor accredited
    assert richer_decision.amount_allowed_minor is None or richer_decision.amount_allowed_minor >= (
        limit
    )


# --- accredited investor --------------------------------------------------------------------

ACCREDITED_CASES = [
    pytest.param(
        person(income_minus_2=200_000, income_minus_1=200_000, income=200_000),
        False,
        id="income-exactly-200k-not-accredited",
    ),
    pytest.param(
        person(income_minus_2=200_001, income_minus_1=200_001, income=200_001),
        True,
        id="income-200001-accredited",
    ),
    pytest.param(
        person(income_minus_2=250_000, income_minus_1=250_000, income=250_000, joint=True),
        False,
        id="joint-250k-not-accredited",
    ),
    pytest.param(
        person(income_minus_2=300_000, income_minus_1=300_000, income=300_000, joint=True),
        False,
        id="joint-exactly-300k-not-accredited",
    ),
    pytest.param(
        person(income_minus_2=300_001, income_minus_1=300_001, income=300_001, joint=True),
        True,
        id="joint-300001-accredited",
    ),
    pytest.param(
        person(income_minus_2=500_000, income_minus_1=500_000),
        False,
        id="no-expectation-for-this-year",
    ),
    pytest.param(
        person(income_minus_2=150_000, income_minus_1=500_000, income=500_000),
        False,
        id="one-year-below",
    ),
    pytest.param(person(net_worth=1_000_000), False, id="net-worth-exactly-1M-not"),
    pytest.param(person(net_worth=1_000_001), True, id="net-worth-above-1M"),
    pytest.param(person(has_securities_license=True), True, id="series-7-65-82-licence"),
    pytest.param(
        person(kind="entity", entity_assets_minor=dollars(5_000_000)), False, id="entity-5M-not"
    ),
    pytest.param(
        person(kind="trust", entity_assets_minor=dollars(5_000_001)), True, id="trust-above-5M"
    ),
    pytest.param(
        person(kind="entity", net_worth=9_000_000), False, id="entity-needs-its-own-assets"
    ),
    pytest.param(person(kind="ira", net_worth=1_500_000), True, id="ira-by-owner-net-worth"),
    pytest.param(person(net_worth=2_000_000, currency="EUR"), False, id="eur-not-converted"),
]


@pytest.mark.parametrize(("facts", "accredited"), ACCREDITED_CASES)
def test_accredited_investor_thresholds(facts, accredited):
    decision = accredited_investor_test(facts, ON)
    assert decision.allowed is accredited
    assert decision.rule_version == "accredited-investor-2020-12-08"
    assert decision.reason.startswith("Accredited" if accredited else "Not accredited")


# --- Reg A+ Tier 2 --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        pytest.param(person(income=80_000, net_worth=120_000), dollars(12_000), id="80k-120k"),
        pytest.param(person(income=300_000, net_worth=10_000), dollars(30_000), id="income-wins"),
        pytest.param(person(net_worth=1_000_001), None, id="accredited-no-limit"),
    ],
)
def test_reg_a_tier2_limit(facts, expected):
    decision = reg_a_tier2_investor_limit(facts, ON)
    assert decision.amount_allowed_minor == expected
    assert decision.rule_version == "reg-a-tier2-investor-2021-03-15"


def test_reg_a_with_eur_financials_is_not_applicable():
    decision = reg_a_tier2_investor_limit(person(net_worth=100_000, currency="EUR"), ON)
    assert (decision.allowed, decision.code) == (False, "financials_currency_mismatch")


# --- Reg D ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accredited", "sophisticated", "count", "allowed", "code"),
    [
        pytest.param(True, False, 35, True, "ok", id="accredited-not-counted"),
        pytest.param(False, True, 34, True, "ok", id="35th-non-accredited-allowed"),
        pytest.param(False, True, 35, False, "non_accredited_quota_full", id="36th-refused"),
        pytest.param(False, False, 0, False, "not_sophisticated", id="unsophisticated-refused"),
    ],
)
def test_506b(accredited, sophisticated, count, allowed, code):
    decision = reg_d_506b_check(accredited, sophisticated, count, ON)
    assert (decision.allowed, decision.code) == (allowed, code)
    assert decision.rule_version == "reg-d-2020-01-01"


@pytest.mark.parametrize(
    ("expires_at", "on", "allowed", "code"),
    [
        pytest.param(None, NOW, False, "accreditation_not_verified", id="never-verified"),
        pytest.param(NOW - timedelta(seconds=1), NOW, False, "accreditation_expired", id="expired"),
        pytest.param(NOW, NOW, False, "accreditation_expired", id="expires-this-instant"),
        pytest.param(NOW + timedelta(days=30), NOW, True, "ok", id="valid"),
        pytest.param(
            NOW + timedelta(hours=1), ON, False, "accreditation_expired", id="not-all-day"
        ),
    ],
)
def test_506c(expires_at, on, allowed, code):
    decision = reg_d_506c_check(expires_at, on)
    assert (decision.allowed, decision.code) == (allowed, code)


# --- ECSP -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("net_worth", "threshold_euros"),
    [
        pytest.param(10_000, 1_000, id="10k-net-worth-floor-1000"),
        pytest.param(100_000, 5_000, id="100k-net-worth-5000"),
        pytest.param(20_000, 1_000, id="20k-exactly-the-floor"),
        pytest.param(None, 1_000, id="unknown-net-worth-floor"),
    ],
)
def test_ecsp_warning_threshold(net_worth, threshold_euros):
    decision = ecsp_warning_threshold(person(net_worth=net_worth, currency="EUR"), ON)
    assert decision.amount_allowed_minor == dollars(threshold_euros)
    assert decision.currency == "EUR"
    assert decision.rule_version == "ecsp-2021-11-10"


def test_ecsp_needs_a_valid_knowledge_test():
    facts = person(net_worth=10_000, currency="EUR")
    no_test = ecsp_check(facts, dollars(500), None, False, NOW)
    expired = ecsp_check(facts, dollars(500), NOW - timedelta(days=1), False, NOW)
    valid = ecsp_check(facts, dollars(500), NOW + timedelta(days=1), False, NOW)
    assert (no_test.allowed, no_test.code) == (False, "knowledge_test_required")
    assert (expired.allowed, expired.code) == (False, "knowledge_test_required")
    assert valid.allowed


def test_ecsp_above_threshold_needs_acknowledgement():
    facts = person(net_worth=10_000, currency="EUR")
    valid_until = NOW + timedelta(days=100)
    at_threshold = ecsp_check(facts, dollars(1_000), valid_until, False, NOW)
    above = ecsp_check(facts, dollars(1_000) + 1, valid_until, False, NOW)
    acknowledged = ecsp_check(facts, dollars(1_000) + 1, valid_until, True, NOW)
    assert at_threshold.allowed
    assert (above.allowed, above.code, above.amount_allowed_minor) == (
        False,
        "warning_not_acknowledged",
        dollars(1_000),
    )
    assert acknowledged.allowed
    assert f"{ECSP_REFLECTION_PERIOD_DAYS} days" in acknowledged.reason


def test_ecsp_sophisticated_investor_needs_no_test_or_warning():
    facts = person(net_worth=10_000, currency="EUR", is_sophisticated=True)
    decision = ecsp_check(facts, dollars(50_000), None, False, NOW)
    assert decision.allowed
    assert ECSP_REFLECTION_PERIOD_DAYS == 4


# --- effective dating -----------------------------------------------------------------------


def test_a_date_before_the_2021_amendments_is_a_clear_error():
    with pytest.raises(ValidationFailed) as raised:
        reg_cf_investor_limit(person(income=50_000, net_worth=80_000), 0, date(2021, 3, 14))
    assert raised.value.code == "no_rule_in_force"
    assert "2021-03-15" in raised.value.detail


def test_the_first_day_of_a_pack_uses_it():
    decision = reg_cf_investor_limit(person(income=50_000, net_worth=80_000), 0, date(2021, 3, 15))
    assert decision.rule_version == "reg-cf-investor-2021-03-15"


def test_the_latest_pack_in_force_wins():
    base = REG_CF_INVESTOR_PACKS[0]
    later = RegCfInvestorPack(
        **{**base.__dict__, "version": "later", "effective_from": date(2030, 1, 1)}
    )
    packs = (later, base)
    assert pack_in_force(packs, date(2029, 12, 31), rule="x") is base
    assert pack_in_force(packs, date(2030, 1, 1), rule="x") is later
    assert pack_in_force(packs, datetime(2030, 1, 1, 0, 0, tzinfo=UTC), rule="x") is later

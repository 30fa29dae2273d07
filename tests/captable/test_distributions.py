"""Distributions through the service layer, on the real ledger and database: declare (sponsor),
approve (a second person, staff), fund (external → operating → payable), pay (holders of record
at the record date, pro rata to the cent, withholding on income only), paying twice pays once,
and the ledger verifies after. The helpers at the top are shared by test_distributions*.py."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from captable import ledger
from captable.distributions import (
    distribution_approve,
    distribution_cancel,
    distribution_declare,
    distribution_fund,
    distribution_pay,
    distribution_pay_run,
    payout_amounts,
    payout_pay,
)
from captable.models import (
    Account,
    AccountKind,
    Distribution,
    DistributionStatus,
    DistributionStatusChange,
    Entry,
    Payout,
)
from captable.verification import ledger_verify
from common.errors import Conflict, InvalidTransition, NotAllowed, NotFound, ValidationFailed
from common.models import OutboxMessage
from common.money import basis_points_of
from investors.models import Investor
from offerings.models import Offering, OfferingStatus
from tests.captable.factories import investors, issue, key, offering_with_units
from tests.captable.test_payments import at
from tests.conftest import new_user
from tests.offerings.factories import member_of

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


# --- helpers (also used by the other test_distributions*.py modules) ---------------------------


def staff() -> Any:
    return new_user(is_staff=True)


def closed_offering(holdings: list[int]) -> tuple[Offering, list[Investor]]:
    """A closed-funded offering whose holders hold `holdings` quanta (issued now)."""
    offering = offering_with_units(quanta=sum(holdings) + 1_000)
    holders = investors(len(holdings))
    for holder, quanta in zip(holders, holdings, strict=True):
        issue(offering, holder, quanta, cost_minor=quanta * 100_00)
    Offering.objects.filter(pk=offering.pk).update(status=OfferingStatus.CLOSED_FUNDED)
    return Offering.objects.get(pk=offering.pk), holders


def today_in(offering: Offering) -> date:
    return timezone.now().astimezone(ZoneInfo(offering.time_zone)).date()


def declare(offering: Offering, amount_minor: int = 100_00, **overrides: Any) -> Distribution:
    today = today_in(offering)
    terms: dict[str, Any] = {
        "actor": member_of(offering.sponsor),
        "offering_id": offering.pk,
        "amount_minor": amount_minor,
        "currency": offering.currency,
        "kind": "income",
        "record_date": today,
        "payment_date": today + timedelta(days=1),
    }
    return distribution_declare(**(terms | overrides))


def approve_and_fund(distribution: Distribution) -> Distribution:
    distribution_approve(actor=staff(), distribution_id=distribution.pk)
    return distribution_fund(
        actor=member_of(distribution.offering.sponsor), distribution_id=distribution.pk
    )


def after_payment_date(distribution: Distribution) -> Any:
    return at(distribution.record_at + timedelta(days=2))


def pay(distribution: Distribution) -> Distribution:
    """Start the pay run and run it here (the task does exactly this)."""
    with after_payment_date(distribution):
        distribution_pay(actor=staff(), distribution_id=distribution.pk)
        distribution_pay_run(distribution_id=distribution.pk)
    return Distribution.objects.get(pk=distribution.pk)


def balance(spec: ledger.AccountSpec) -> int:
    found = Account.objects.filter(key=spec.key).values_list("balance", flat=True).first()
    return int(found or 0)


def cash_of(investor: Investor) -> int:
    return balance(ledger.cash_spec(investor, "USD"))


def withheld(offering: Offering) -> int:
    return balance(ledger.issuer_spec(offering.issuer, AccountKind.WITHHOLDING_PAYABLE, "USD"))


def payouts_of(distribution: Distribution) -> dict[int, Payout]:
    return {p.investor_id: p for p in Payout.objects.filter(distribution=distribution)}


# --- the happy path ---------------------------------------------------------------------------


def test_pro_rata_income_distribution_pays_each_holder_to_the_cent() -> None:
    # given: three holders of 1, 1 and 1 units of 3 (a tie: the leftover cent to the first)
    offering, (a, b, c) = closed_offering([1, 1, 1])
    for holder in (a, b, c):
        Investor.objects.filter(pk=holder.pk).update(tax_form="w9")
    distribution = declare(offering, 1_000_00 + 1)  # $1,000.01
    assert distribution.status == DistributionStatus.DRAFT
    # when
    funded = approve_and_fund(distribution)
    assert funded.status == DistributionStatus.FUNDED
    payable = ledger.distribution_payable_spec(distribution.pk, "USD")
    assert balance(payable) == 1_000_01
    done = pay(distribution)
    # then
    assert done.status == DistributionStatus.PAID
    assert done.paid_at is not None
    assert [cash_of(a), cash_of(b), cash_of(c)] == [333_34, 333_34, 333_33]
    assert balance(payable) == 0
    payouts = payouts_of(distribution)
    assert all(p.entry_id is not None and p.paid_at is not None for p in payouts.values())
    keys = Entry.objects.filter(pk__in=[p.entry_id for p in payouts.values()])
    assert set(keys.values_list("idempotency_key", flat=True)) == {
        f"distribution:{distribution.pk}:payout:{holder.pk}" for holder in (a, b, c)
    }
    assert [
        change.to_status for change in DistributionStatusChange.objects.filter(distribution=done)
    ] == ["draft", "approved", "funded", "funded", "paid"]
    assert ledger_verify().ok


def test_funding_moves_cash_from_outside_through_operating_into_payable_once() -> None:
    offering, _ = closed_offering([10])
    distribution = declare(offering, 500_00)
    approve_and_fund(distribution)
    # funding again changes nothing
    distribution_fund(actor=member_of(offering.sponsor), distribution_id=distribution.pk)
    operating = ledger.issuer_spec(offering.issuer, AccountKind.OPERATING, "USD")
    assert balance(operating) == 0
    assert balance(ledger.distribution_payable_spec(distribution.pk, "USD")) == 500_00
    assert (
        Entry.objects.filter(
            idempotency_key__startswith=f"distribution:{distribution.pk}:fund"
        ).count()
        == 2
    )


# --- record date ------------------------------------------------------------------------------


def test_transfer_after_the_record_date_does_not_change_who_is_paid() -> None:
    # given: a holds 3, b holds 1 at the record date
    offering, (a, b) = closed_offering([3, 1])
    Investor.objects.filter(pk__in=[a.pk, b.pk]).update(tax_form="w9")
    distribution = declare(offering, 400_00)
    approve_and_fund(distribution)
    # when: the day after the record date a sells everything to b, then the run pays
    with after_payment_date(distribution):
        ledger.units_transfer(
            offering=offering, seller=a, buyer=b, quanta=3, idempotency_key=key("xfer")
        )
    done = pay(distribution)
    # then: paid as held at the record date
    assert done.status == DistributionStatus.PAID
    assert (cash_of(a), cash_of(b)) == (300_00, 100_00)
    assert {i: p.quanta for i, p in payouts_of(distribution).items()} == {a.pk: 3, b.pk: 1}


def test_units_issued_after_the_record_date_are_not_paid() -> None:
    offering, (a,) = closed_offering([2])
    late = investors(1)[0]
    distribution = declare(offering, 100_00)
    approve_and_fund(distribution)
    with after_payment_date(distribution):
        issue(offering, late, 2)
    pay(distribution)
    assert set(payouts_of(distribution)) == {a.pk}
    assert cash_of(late) == 0


def test_paying_before_the_record_date_has_passed_is_refused() -> None:
    offering, _ = closed_offering([1])
    distribution = approve_and_fund(declare(offering, 100_00))
    with pytest.raises(Conflict) as refused:
        distribution_pay(actor=staff(), distribution_id=distribution.pk)
    assert refused.value.code == "record_date_not_passed"
    assert not Payout.objects.filter(distribution=distribution).exists()


def test_paying_before_the_payment_date_is_refused() -> None:
    offering, _ = closed_offering([1])
    today = today_in(offering)
    distribution = approve_and_fund(
        declare(offering, 100_00, payment_date=today + timedelta(days=10))
    )
    with (
        at(distribution.record_at + timedelta(days=1)),
        pytest.raises(Conflict, match="payment date"),
    ):
        distribution_pay(actor=staff(), distribution_id=distribution.pk)


def test_record_at_is_the_end_of_the_record_date_in_the_offering_time_zone() -> None:
    offering, _ = closed_offering([1])
    distribution = declare(offering, 100_00)
    local = distribution.record_at.astimezone(ZoneInfo(offering.time_zone))
    assert local.date() == distribution.record_date
    assert (local.hour, local.minute, local.second) == (23, 59, 59)


# --- four eyes and declaration rules ------------------------------------------------------------


def test_the_declarer_cannot_approve_their_own_distribution() -> None:
    offering, _ = closed_offering([1])
    declarer = staff()
    distribution = declare(offering, 100_00, actor=declarer)
    with pytest.raises(NotAllowed) as refused:
        distribution_approve(actor=declarer, distribution_id=distribution.pk)
    assert refused.value.code == "four_eyes"
    # and the database refuses it too
    with pytest.raises(IntegrityError), transaction.atomic():
        Distribution.objects.filter(pk=distribution.pk).update(
            approved_by=declarer, approved_at=timezone.now(), status="approved"
        )


def test_only_staff_approve_and_only_staff_pay() -> None:
    offering, _ = closed_offering([1])
    distribution = declare(offering, 100_00)
    with pytest.raises(NotAllowed):
        distribution_approve(actor=member_of(offering.sponsor), distribution_id=distribution.pk)
    with pytest.raises(NotAllowed):
        distribution_approve(actor=new_user(), distribution_id=distribution.pk)
    approve_and_fund(distribution)
    with after_payment_date(distribution), pytest.raises(NotAllowed):
        distribution_pay(actor=member_of(offering.sponsor), distribution_id=distribution.pk)


def test_funding_needs_approval_first() -> None:
    offering, _ = closed_offering([1])
    distribution = declare(offering, 100_00)
    with pytest.raises(InvalidTransition):
        distribution_fund(actor=member_of(offering.sponsor), distribution_id=distribution.pk)


def test_a_stranger_cannot_declare_or_fund() -> None:
    offering, _ = closed_offering([1])
    with pytest.raises(NotFound):
        declare(offering, 100_00, actor=new_user())
    distribution = declare(offering, 100_00)
    distribution_approve(actor=staff(), distribution_id=distribution.pk)
    with pytest.raises(NotFound):
        distribution_fund(actor=new_user(), distribution_id=distribution.pk)


@pytest.mark.parametrize(
    ("overrides", "error", "code"),
    [
        ({"amount_minor": 0}, ValidationFailed, "amount_not_positive"),
        ({"currency": "EUR"}, ValidationFailed, "currency_mismatch"),
        ({"kind": "mixed"}, ValidationFailed, "income_part_invalid"),
        ({"kind": "mixed", "income_minor": 100_00}, ValidationFailed, "income_part_invalid"),
        ({"kind": "return_of_capital", "income_minor": 1}, ValidationFailed, "income_part_invalid"),
        ({"method": "by_headcount"}, ValidationFailed, "method_not_supported"),
        ({"payment_date": date(2000, 1, 1)}, ValidationFailed, "record_date_after_payment_date"),
    ],
)
def test_declaration_is_refused_with_a_clear_error(
    overrides: dict[str, Any], error: type[Exception], code: str
) -> None:
    offering, _ = closed_offering([1])
    with pytest.raises(error) as refused:
        declare(offering, **({"amount_minor": 100_00} | overrides))
    assert refused.value.code == code  # type: ignore[attr-defined]
    assert not Distribution.objects.exists()


def test_payment_date_in_the_past_is_refused() -> None:
    offering, _ = closed_offering([1])
    yesterday = today_in(offering) - timedelta(days=1)
    with pytest.raises(ValidationFailed) as refused:
        declare(offering, 100_00, record_date=yesterday, payment_date=yesterday)
    assert refused.value.code == "payment_date_past"


def test_record_date_before_anyone_held_units_is_refused() -> None:
    offering, _ = closed_offering([1])
    long_ago = today_in(offering) - timedelta(days=30)
    with pytest.raises(ValidationFailed) as refused:
        declare(offering, 100_00, record_date=long_ago)
    assert refused.value.code == "no_holders_of_record"


def test_only_a_closed_funded_offering_takes_a_distribution() -> None:
    offering = offering_with_units()
    with pytest.raises(Conflict) as refused:
        declare(offering, 100_00)
    assert refused.value.code == "offering_not_closed_funded"


def test_cancel_before_funding_only() -> None:
    offering, _ = closed_offering([1])
    distribution = declare(offering, 100_00)
    cancelled = distribution_cancel(
        actor=member_of(offering.sponsor), distribution_id=distribution.pk, reason="Typo."
    )
    assert cancelled.status == DistributionStatus.CANCELLED
    other = approve_and_fund(declare(offering, 100_00))
    with pytest.raises(InvalidTransition):
        distribution_cancel(actor=staff(), distribution_id=other.pk, reason="Too late.")


# --- withholding ------------------------------------------------------------------------------


def test_withholding_follows_each_holders_tax_form_on_income_only() -> None:
    # given: four equal holders: W-9, no form, W-8BEN without and with a 15% treaty rate;
    # $800.00 of which $400.00 income, $400.00 return of capital → $200.00 each, $100.00 income
    offering, (w9, missing, w8, treaty) = closed_offering([1, 1, 1, 1])
    Investor.objects.filter(pk=w9.pk).update(tax_form="w9")
    Investor.objects.filter(pk=w8.pk).update(tax_form="w8ben")
    Investor.objects.filter(pk=treaty.pk).update(
        tax_form="w8ben", treaty_withholding_rate_basis_points=1_500
    )
    distribution = approve_and_fund(declare(offering, 800_00, kind="mixed", income_minor=400_00))
    # when
    pay(distribution)
    # then: withheld from the $100.00 income part only
    payouts = payouts_of(distribution)
    assert {i: p.withholding_minor for i, p in payouts.items()} == {
        w9.pk: 0,
        missing.pk: 24_00,
        w8.pk: 30_00,
        treaty.pk: 15_00,
    }
    assert [cash_of(w9), cash_of(missing), cash_of(w8), cash_of(treaty)] == [
        200_00,
        176_00,
        170_00,
        185_00,
    ]
    assert withheld(offering) == 69_00
    assert all(p.income_minor == 100_00 for p in payouts.values())
    assert all(p.return_of_capital_minor == 100_00 for p in payouts.values())
    assert ledger_verify().ok


def test_return_of_capital_is_never_withheld() -> None:
    offering, (holder,) = closed_offering([5])  # no tax form on file
    distribution = approve_and_fund(declare(offering, 250_00, kind="return_of_capital"))
    pay(distribution)
    payout = payouts_of(distribution)[holder.pk]
    assert (payout.withholding_minor, payout.net_minor, cash_of(holder)) == (0, 250_00, 250_00)
    assert payout.tax_form == "none"
    assert withheld(offering) == 0


# --- paying twice pays once -------------------------------------------------------------------


def test_pay_run_twice_pays_each_holder_once() -> None:
    offering, holders = closed_offering([7, 11, 13])
    distribution = approve_and_fund(declare(offering, 1_234_57))
    pay(distribution)
    cash_before = [cash_of(h) for h in holders]
    entries_before = Entry.objects.count()
    # when: the run is started and run again
    with after_payment_date(distribution):
        distribution_pay(actor=staff(), distribution_id=distribution.pk)
        assert distribution_pay_run(distribution_id=distribution.pk) == 0
    # then
    assert [cash_of(h) for h in holders] == cash_before
    assert Entry.objects.count() == entries_before
    total = Payout.objects.filter(distribution=distribution).aggregate(total=Sum("gross_minor"))
    assert total["total"] == 1_234_57
    assert ledger_verify().ok


def test_a_run_that_stopped_half_way_pays_only_the_rest() -> None:
    offering, holders = closed_offering([1, 2, 3, 4])
    distribution = approve_and_fund(declare(offering, 100_00))
    with after_payment_date(distribution):
        distribution_pay(actor=staff(), distribution_id=distribution.pk)
    # given: the first two payouts paid, then the worker died
    first_two = Payout.objects.filter(distribution=distribution).order_by("investor_id")[:2]
    for payout in list(first_two):
        payout_pay(payout_id=payout.pk)
    assert Distribution.objects.get(pk=distribution.pk).status == DistributionStatus.FUNDED
    # when
    with after_payment_date(distribution):
        assert distribution_pay_run(distribution_id=distribution.pk) == 2
    # then: everyone paid once, backup withholding (no form on file) from each
    expected = payout_amounts(
        amount_minor=100_00,
        income_minor=100_00,
        holdings=[(h.pk, q) for h, q in zip(holders, [1, 2, 3, 4], strict=True)],
    )
    assert [cash_of(h) for h in holders] == [
        e.gross_minor - basis_points_of(e.gross_minor, 2_400) for e in expected
    ]
    assert [cash_of(h) for h in holders] == [7_60, 15_20, 22_80, 30_40]
    assert (
        Entry.objects.filter(
            idempotency_key__startswith=f"distribution:{distribution.pk}:payout:"
        ).count()
        == 4
    )
    assert Distribution.objects.get(pk=distribution.pk).status == DistributionStatus.PAID
    assert ledger_verify().ok


def test_a_paid_payout_always_names_its_ledger_entry() -> None:
    offering, (holder,) = closed_offering([1])
    distribution = approve_and_fund(declare(offering, 10_00))
    pay(distribution)
    payout = payouts_of(distribution)[holder.pk]
    with pytest.raises(IntegrityError), transaction.atomic():
        Payout.objects.filter(pk=payout.pk).update(entry=None)


def test_one_payout_per_holder_is_a_database_rule() -> None:
    offering, (holder,) = closed_offering([1])
    distribution = approve_and_fund(declare(offering, 10_00))
    pay(distribution)
    payout = payouts_of(distribution)[holder.pk]
    with pytest.raises(IntegrityError), transaction.atomic():
        Payout.objects.create(
            distribution=distribution,
            investor=holder,
            quanta=1,
            gross_minor=payout.gross_minor,
            income_minor=payout.income_minor,
            return_of_capital_minor=0,
            tax_form="none",
            withholding_rate_basis_points=0,
            withholding_minor=0,
            net_minor=payout.gross_minor,
        )


def test_the_pay_run_goes_through_the_outbox(
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    offering, holders = closed_offering([1, 3])
    distribution = approve_and_fund(declare(offering, 40_00))
    with after_payment_date(distribution), django_capture_on_commit_callbacks(execute=True):
        distribution_pay(actor=staff(), distribution_id=distribution.pk)
    assert OutboxMessage.objects.filter(task_name="captable.pay_distribution").count() == 1
    assert Distribution.objects.get(pk=distribution.pk).status == DistributionStatus.PAID
    assert sum(cash_of(h) for h in holders) + withheld(offering) == 40_00


def test_status_history_is_append_only() -> None:
    offering, _ = closed_offering([1])
    distribution = declare(offering, 10_00)
    change = DistributionStatusChange.objects.get(distribution=distribution)
    with pytest.raises(Exception), transaction.atomic():  # noqa: B017
        DistributionStatusChange.objects.filter(pk=change.pk).update(reason="rewritten")


# --- the same allocation, paid through the database ----------------------------------------------


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    holdings=st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=5),
    amount_minor=st.integers(min_value=1, max_value=10**10),
)
def test_paid_payouts_equal_the_allocation_on_this_database(
    holdings: list[int], amount_minor: int
) -> None:
    """Each example has its own offering and holders, so examples never share state. Whatever
    the database (this test runs on SQLite and PostgreSQL), what lands in each holder's cash is
    exactly the pure allocation, and the payable account ends empty."""
    offering, holders = closed_offering(holdings)
    Investor.objects.filter(pk__in=[h.pk for h in holders]).update(tax_form="w9")
    distribution = approve_and_fund(declare(offering, amount_minor))
    pay(distribution)
    expected = payout_amounts(
        amount_minor=amount_minor,
        income_minor=amount_minor,
        holdings=[(h.pk, q) for h, q in zip(holders, holdings, strict=True)],
    )
    assert [cash_of(h) for h in holders] == [e.gross_minor for e in expected]
    assert sum(cash_of(h) for h in holders) == amount_minor
    assert balance(ledger.distribution_payable_spec(distribution.pk, "USD")) == 0

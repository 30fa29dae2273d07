"""Closing an offering through the service layer, on the real ledger and database: success
(units issued, escrow → proceeds and fees, worked to the cent), all-or-nothing failure (every
investor refunded exactly what they paid, no unit issued), closing twice and closing killed
half-way (a real database error in the real code path) give the same ledger as one clean
close, four eyes, the scheduled task, ECSP reflection periods and the offering statistics.

Subscriptions are funded through the real payment path (the simulated bank's signed webhook).
The helpers at the top are shared by the other test_closing*.py modules."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Sum
from django.utils import timezone

from captable import closing, ledger, subscriptions
from captable.closing_selectors import offering_stats
from captable.models import (
    Account,
    AccountKind,
    CloseRequest,
    CloseRequestStatusChange,
    Entry,
    EntryKind,
    Lot,
    OfferingClosing,
    Payment,
    Posting,
    Subscription,
    SubscriptionStatusChange,
)
from captable.tasks import close_due_offerings
from captable.verification import ledger_verify
from common.errors import Conflict, InvalidTransition, NotAllowed, ValidationFailed
from investors.models import Investor
from offerings.exemptions import Exemption
from offerings.models import FundingModel, Offering, OfferingStatusChange
from tests.captable.test_payments import at, balance, funded, notify, signed, start_payment
from tests.captable.test_subscriptions import (
    eu_investor,
    kyc_investor,
    open_offering,
    statuses,
    subscribe,
)
from tests.conftest import new_user

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


# --- helpers (also used by the other test_closing*.py modules) ----------------------------------


def staff() -> Any:
    return new_user(is_staff=True)


def after_deadline(offering: Offering, **delta: float) -> Any:
    """The clock just past the offering's deadline (plus `delta`)."""
    offering.refresh_from_db()
    return at(offering.closes_at + timedelta(minutes=1, **delta))


def fresh(offering: Offering) -> Offering:
    return Offering.objects.get(pk=offering.pk)


def set_fees(offering: Offering, *, platform_bps: int = 0, investor_bps: int = 0) -> Offering:
    """Fees are fixed in draft (the admin); set them on the row for the example."""
    Offering.objects.filter(pk=offering.pk).update(
        platform_fee_basis_points=platform_bps, investor_fee_basis_points=investor_bps
    )
    return fresh(offering)


def escrow_total(offering: Offering) -> int:
    total = Account.objects.filter(offering=offering, kind=AccountKind.ESCROW).aggregate(
        total=Sum("balance")
    )["total"]
    return int(total or 0)


def proceeds_key(offering: Offering) -> str:
    return ledger.issuer_spec(offering.issuer, AccountKind.PROCEEDS, offering.currency).key


def holding_of(offering: Offering, investor: Investor) -> int:
    return balance(ledger.holding_spec(offering, investor).key)


def paid_in_minor(investor: Investor, offering: Offering) -> int:
    """Cash the investor sent into this offering's escrow (external → escrow)."""
    escrow = ledger.escrow_spec(offering, investor).key
    total = Posting.objects.filter(
        account__key=escrow, amount__gt=0, entry__kind=EntryKind.CASH_IN
    ).aggregate(total=Sum("amount"))["total"]
    return int(total or 0)


def paid_back_minor(investor: Investor, offering: Offering) -> int:
    """Cash sent back out of this offering's escrow to the outside world (escrow → external)."""
    escrow = ledger.escrow_spec(offering, investor).key
    total = Posting.objects.filter(
        account__key=escrow, amount__lt=0, entry__kind=EntryKind.CASH_OUT
    ).aggregate(total=Sum("amount"))["total"]
    return -int(total or 0)


def ledger_state(offering: Offering) -> dict[str, Any]:
    """Everything the close wrote, without ids or times: entries by idempotency key with their
    postings (account keys, amounts, cost, lot), lots, non-zero balances, subscription
    statuses and the offering's counters and status."""

    def lot_of(lot: Lot | None) -> tuple[str, str] | None:
        return None if lot is None else (lot.acquired_by.idempotency_key, lot.holding.key)

    entries = {}
    for entry in Entry.objects.prefetch_related(
        "postings__account", "postings__lot__acquired_by", "postings__lot__holding"
    ):
        postings = sorted(
            (p.account.key, p.asset, p.amount, p.cost_minor, lot_of(p.lot))
            for p in entry.postings.all()
        )
        entries[entry.idempotency_key] = (
            entry.kind,
            entry.memo,
            entry.created_by_id,
            json.dumps(entry.metadata, sort_keys=True),
            postings,
        )
    lots = sorted(
        (
            lot.holding.key,
            lot.quanta_acquired,
            lot.cost_minor_acquired,
            lot.acquired_by.idempotency_key,
        )
        for lot in Lot.objects.select_related("holding", "acquired_by")
    )
    current = fresh(offering)
    return {
        "entries": entries,
        "lots": lots,
        "balances": dict(Account.objects.exclude(balance=0).values_list("key", "balance")),
        "subscriptions": dict(Subscription.objects.values_list("pk", "status")),
        "payments": sorted(Payment.objects.values_list("pk", "status", "amount_refunded_minor")),
        "offering": (
            current.status,
            current.units_reserved_quanta,
            current.units_issued_quanta,
        ),
    }


def assert_same_ledger(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    """`ledger_state` equal, part by part (entries key by key, for a readable failure)."""
    assert actual.keys() == expected.keys()
    entries, expected_entries = actual["entries"], expected["entries"]
    assert sorted(entries) == sorted(expected_entries)
    for key, entry in entries.items():
        assert entry == expected_entries[key], key
    for part in actual:
        assert actual[part] == expected[part], part


@contextlib.contextmanager
def crash_on_entry(idempotency_key: str) -> Iterator[None]:
    """Make the database refuse to insert the entry with this key: the close dies there, in
    the middle of a subscription's step, with a real error on the real code path."""
    assert "'" not in idempotency_key
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION test_closing_crash() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'simulated crash at %', NEW.idempotency_key; END $$"
            )
            cursor.execute(
                "CREATE TRIGGER test_closing_crash BEFORE INSERT ON captable_entry FOR EACH ROW "
                f"WHEN (NEW.idempotency_key = '{idempotency_key}') "
                "EXECUTE FUNCTION test_closing_crash()"
            )
        else:
            cursor.execute(
                "CREATE TRIGGER test_closing_crash BEFORE INSERT ON captable_entry "
                f"WHEN NEW.idempotency_key = '{idempotency_key}' "
                "BEGIN SELECT RAISE(ABORT, 'simulated crash'); END"
            )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("DROP TRIGGER test_closing_crash ON captable_entry")
                cursor.execute("DROP FUNCTION test_closing_crash()")
            else:
                cursor.execute("DROP TRIGGER test_closing_crash")


@contextlib.contextmanager
def rolled_back() -> Iterator[None]:
    """Run the block, then undo everything it wrote (a savepoint of the test's transaction)."""
    savepoint = transaction.savepoint()
    try:
        yield
    finally:
        transaction.savepoint_rollback(savepoint)


# --- the worked example: success ---------------------------------------------------------------


def success_scenario() -> tuple[Offering, dict[str, Any]]:
    """Reg CF, all-or-nothing, $10.01 a unit, 10 units, target $50.05 (5 units); platform fee
    7%, investor processing fee 1.5%. A, B and C fund 3, 5 and 1 units; D signs for 1 and
    never pays; E asks for 2 when only none are left and waits."""
    offering = open_offering(
        price_per_unit_minor=10_01,
        units_authorized=10,
        max_investment_units=10,
        target_raise_minor=50_05,
        max_raise_minor=100_10,
    )
    offering = set_fees(offering, platform_bps=700, investor_bps=150)
    a, b, c, d, e = (kyc_investor() for _ in range(5))
    subs = {
        "a": funded(a, offering, 3)[0],
        "b": funded(b, offering, 5)[0],
        "c": funded(c, offering, 1)[0],
        "d": signed(d, offering, 1),
        "e": subscribe(e, offering, 2),
    }
    assert subs["e"].status == "waitlisted"
    return offering, subs


def test_success_issues_units_and_splits_escrow_into_proceeds_and_fees_to_the_cent():
    # given
    offering, subs = success_scenario()
    received = sum(paid_in_minor(s.investor, offering) for s in subs.values())
    # A 3003 + 45 fee, B 5005 + 75, C 1001 + 15 (1.5% half to even: 45.045 → 45 …)
    assert received == 3048 + 5080 + 1016 == 9144
    # when
    with after_deadline(offering):
        record = closing.offering_close(offering=offering, actor=None)
    # then the offering is closed funded, and the subscriptions ended as they should
    assert record is not None
    assert record.completed_at is not None
    assert record.outcome == "funded"
    assert record.trigger == "deadline"
    assert record.amount_funded_minor == 3003 + 5005 + 1001
    offering = fresh(offering)
    assert offering.status == "closed_funded"
    assert statuses(*subs.values()) == [
        "accepted",
        "accepted",
        "accepted",
        "cancelled",
        "cancelled",
    ]
    # units issued = units of the accepted subscriptions, each in a lot at its cost
    assert offering.units_issued_quanta == 9
    assert offering.units_reserved_quanta == 0
    for name, units, cost in (("a", 3, 3003), ("b", 5, 5005), ("c", 1, 1001)):
        investor = subs[name].investor
        assert holding_of(offering, investor) == units
        lot = Lot.objects.get(holding__key=ledger.holding_spec(offering, investor).key)
        assert (lot.quanta_acquired, lot.cost_minor_acquired) == (units, cost)
    assert holding_of(offering, subs["d"].investor) == 0
    # the issuer's authorization was posted once, for the offering's authorized units
    assert balance(ledger.treasury_spec(offering).key) == 10 - 9
    assert balance(ledger.authorized_spec(offering).key) == -10
    # proceeds = amounts less 7% (210.21 → 210, 350.35 → 350, 70.07 → 70), fees = the rest
    assert balance(proceeds_key(offering)) == 2793 + 4655 + 931 == 8379
    assert balance(ledger.platform_fees_spec("USD").key) == 210 + 350 + 70 + 45 + 75 + 15 == 765
    assert received == 8379 + 765
    assert escrow_total(offering) == 0
    report = ledger_verify()
    assert report.ok, report.summary()


def test_all_or_nothing_failure_refunds_everyone_exactly_and_issues_nothing():
    # given $100.00 units, target $1,000.00 (10 units): A and B fund 3 + 4; C signs for 2 and
    # pays only part of it; D waits for 2 of the last 1
    offering = open_offering(
        units_authorized=10,
        max_investment_units=10,
        target_raise_minor=1_000_00,
        max_raise_minor=1_000_00,
    )
    offering = set_fees(offering, platform_bps=500, investor_bps=100)
    a, b, c, d = (kyc_investor() for _ in range(4))
    sub_a, sub_b = funded(a, offering, 3)[0], funded(b, offering, 4)[0]
    sub_c = signed(c, offering, 2)
    notify(start_payment(sub_c), amount_minor=50_00)  # part of the 202.00 due
    sub_d = subscribe(d, offering, 2)
    assert statuses(sub_c, sub_d) == ["signed", "waitlisted"]
    paid = {inv.pk: paid_in_minor(inv, offering) for inv in (a, b, c, d)}
    assert paid == {a.pk: 303_00, b.pk: 404_00, c.pk: 50_00, d.pk: 0}
    external_before = balance(ledger.external_spec("USD").key)
    # when
    with after_deadline(offering):
        record = closing.offering_close(offering=offering, actor=None)
    # then
    assert record is not None
    assert record.outcome == "failed"
    assert record.amount_funded_minor == 700_00
    offering = fresh(offering)
    assert offering.status == "closed_failed"
    assert statuses(sub_a, sub_b, sub_c, sub_d) == [
        "refunded",
        "refunded",
        "cancelled",
        "cancelled",
    ]
    # every investor got back exactly what they paid; escrow is empty
    for investor in (a, b, c, d):
        assert paid_back_minor(investor, offering) == paid[investor.pk]
        assert balance(ledger.escrow_spec(offering, investor).key) == 0
    assert escrow_total(offering) == 0
    assert balance(ledger.external_spec("USD").key) == external_before + 757_00
    # no unit issued, no issuer or platform money
    assert offering.units_issued_quanta == 0
    assert offering.units_reserved_quanta == 0
    assert not Entry.objects.filter(kind__in=(EntryKind.ISSUE, EntryKind.AUTHORIZE)).exists()
    assert not Account.objects.filter(kind=AccountKind.HOLDING, balance__gt=0).exists()
    assert balance(proceeds_key(offering)) == 0
    assert balance(ledger.platform_fees_spec("USD").key) == 0
    report = ledger_verify()
    assert report.ok, report.summary()


def test_keep_what_you_raise_accepts_below_the_target():
    # given a Reg A Tier 2 offering that keeps what it raises, 2 units funded of a $1,000 goal
    offering = open_offering(
        exemption=Exemption.REG_A_TIER2,
        funding_model=FundingModel.KEEP_WHAT_YOU_RAISE,
        target_raise_minor=1_000_00,
    )
    sub = funded(kyc_investor(), offering, 2)[0]
    # when
    with after_deadline(offering):
        record = closing.offering_close(offering=offering, actor=None)
    # then
    assert record is not None
    assert record.outcome == "funded"
    assert fresh(offering).status == "closed_funded"
    assert statuses(sub) == ["accepted"]
    assert holding_of(offering, sub.investor) == 2


def test_keep_what_you_raise_with_nothing_raised_fails():
    offering = open_offering(
        exemption=Exemption.REG_A_TIER2,
        funding_model=FundingModel.KEEP_WHAT_YOU_RAISE,
        target_raise_minor=0,
    )
    reserved = subscribe(kyc_investor(), offering, 2)
    with after_deadline(offering):
        record = closing.offering_close(offering=offering, actor=None)
    assert record is not None
    assert record.outcome == "failed"
    assert fresh(offering).status == "closed_failed"
    assert statuses(reserved) == ["cancelled"]


def test_an_offering_already_authorized_on_the_ledger_is_not_authorized_again():
    offering = open_offering(
        units_authorized=10,
        max_investment_units=10,
        target_raise_minor=100_00,
        max_raise_minor=1_000_00,
    )
    ledger.units_authorize(offering=offering, quanta=10, idempotency_key="issuer-board-2025")
    funded(kyc_investor(), offering, 4)
    with after_deadline(offering):
        closing.offering_close(offering=offering, actor=None)
    assert balance(ledger.authorized_spec(offering).key) == -10
    assert balance(ledger.treasury_spec(offering).key) == 6
    assert Entry.objects.filter(kind=EntryKind.AUTHORIZE).count() == 1


# --- safe to run again ------------------------------------------------------------------------


def test_closing_twice_changes_nothing_the_second_time():
    offering, _ = success_scenario()
    with after_deadline(offering):
        first = closing.offering_close(offering=offering, actor=None)
        state = ledger_state(offering)
        history = SubscriptionStatusChange.objects.count(), OfferingStatusChange.objects.count()
        second = closing.offering_close(offering=offering, actor=None)
        assert close_due_offerings() == []
    assert first is not None
    assert second is not None
    assert second.pk == first.pk
    assert second.completed_at == first.completed_at
    assert_same_ledger(ledger_state(offering), state)
    assert (SubscriptionStatusChange.objects.count(), OfferingStatusChange.objects.count()) == (
        history
    )


@pytest.mark.parametrize("crash_step", ["issue", "proceeds", "fees"])
def test_closing_killed_half_way_then_run_again_gives_the_ledger_of_one_clean_close(crash_step):
    # given the success scenario, and the ledger a clean close leaves (then undone)
    offering, subs = success_scenario()
    with after_deadline(offering):
        with rolled_back():
            closing.offering_close(offering=offering, actor=None)
            clean = ledger_state(offering)
        assert fresh(offering).status == "live"
        # when the close dies in the middle of B's step (A's step is committed by then)
        key = closing.close_entry_key(offering.pk, crash_step, subs["b"].pk)
        with crash_on_entry(key), pytest.raises(DatabaseError):
            closing.offering_close(offering=offering, actor=None)
        # then A is accepted, and nothing of B's step survived
        assert fresh(offering).status == "closing"
        assert statuses(subs["a"], subs["b"], subs["c"]) == ["accepted", "funded", "funded"]
        keys = set(Entry.objects.values_list("idempotency_key", flat=True))
        assert closing.close_entry_key(offering.pk, "issue", subs["a"].pk) in keys
        assert not {k for k in keys if k.endswith(f":{subs['b'].pk}") and k.startswith("close:")}
        assert fresh(offering).units_issued_quanta == 3
        # and when it runs again (the scheduled task resumes unfinished closes)
        assert close_due_offerings() == [offering.pk]
    # then the ledger is the one of the clean close
    assert_same_ledger(ledger_state(offering), clean)
    report = ledger_verify()
    assert report.ok, report.summary()


def test_a_failed_close_killed_during_a_refund_then_run_again_refunds_each_once():
    offering = open_offering(
        units_authorized=10,
        max_investment_units=10,
        target_raise_minor=1_000_00,
        max_raise_minor=1_000_00,
    )
    subs = [funded(kyc_investor(), offering, units) for units in (2, 3, 1)]
    with after_deadline(offering):
        with rolled_back():
            closing.offering_close(offering=offering, actor=None)
            clean = ledger_state(offering)
        second_payment = subs[1][1]
        with crash_on_entry(f"payment:{second_payment.pk}:refund"), pytest.raises(DatabaseError):
            closing.offering_close(offering=offering, actor=None)
        assert statuses(*(s for s, _ in subs)) == ["refunded", "funded", "funded"]
        assert fresh(offering).status == "closing"
        closing.offering_close(offering=offering, actor=None)
    assert_same_ledger(ledger_state(offering), clean)
    assert fresh(offering).status == "closed_failed"
    for subscription, payment in subs:
        assert Entry.objects.filter(idempotency_key=f"payment:{payment.pk}:refund").count() == 1
        assert paid_back_minor(subscription.investor, offering) == payment.amount_received_minor


# --- when a close may start --------------------------------------------------------------------


def test_before_its_deadline_an_offering_closes_only_through_an_approved_request():
    offering, _ = success_scenario()
    with pytest.raises(NotAllowed) as refused:
        closing.offering_close(offering=offering, actor=staff())
    assert refused.value.code == "close_not_approved"
    with pytest.raises(NotAllowed) as refused:
        closing.offering_close(offering=offering, actor=kyc_investor().user)
    assert refused.value.code == "staff_only"
    assert fresh(offering).status == "live"
    assert not OfferingClosing.objects.exists()


def test_the_scheduled_task_closes_due_offerings_only():
    due, _ = success_scenario()
    later = open_offering(opens_at=timezone.now() - timedelta(hours=1))
    Offering.objects.filter(pk=later.pk).update(closes_at=due.closes_at + timedelta(days=5))
    assert close_due_offerings() == []
    with after_deadline(due):
        assert close_due_offerings() == [due.pk]
    assert (fresh(due).status, fresh(later).status) == ("closed_funded", "live")


# --- four eyes ------------------------------------------------------------------------------------


def test_the_member_of_staff_who_prepared_a_close_cannot_approve_it(
    django_capture_on_commit_callbacks,
):
    offering, _ = success_scenario()
    preparer, approver = staff(), staff()
    close_request = closing.close_request_prepare(
        actor=preparer, offering_id=offering.pk, reason="Deadline reached, target met."
    )
    with after_deadline(offering):
        # when the preparer approves their own request
        with pytest.raises(NotAllowed) as refused:
            closing.close_request_approve(actor=preparer, close_request_id=close_request.pk)
        # then nothing changed
        assert refused.value.code == "four_eyes"
        close_request.refresh_from_db()
        assert close_request.status == "pending_approval"
        assert close_request.decided_by is None
        assert fresh(offering).status == "live"
        # and the database refuses it too
        with pytest.raises(IntegrityError), transaction.atomic():
            CloseRequest.objects.filter(pk=close_request.pk).update(
                status="approved", decided_by=preparer, decided_at=timezone.now()
            )
        # when another member of staff approves: the close runs after the commit (outbox)
        with django_capture_on_commit_callbacks(execute=True):
            closing.close_request_approve(actor=approver, close_request_id=close_request.pk)
    close_request.refresh_from_db()
    assert close_request.status == "completed"
    assert close_request.decided_by == approver
    assert fresh(offering).status == "closed_funded"
    record = OfferingClosing.objects.get(offering=offering)
    assert (record.trigger, record.close_request_id, record.started_by) == (
        "request",
        close_request.pk,
        approver,
    )
    assert list(
        CloseRequestStatusChange.objects.filter(close_request=close_request).values_list(
            "from_status", "to_status"
        )
    ) == [("", "pending_approval"), ("pending_approval", "approved"), ("approved", "completed")]


def test_close_request_refusals_change_nothing():
    offering, _ = success_scenario()
    preparer, other = staff(), staff()
    with pytest.raises(NotAllowed):
        closing.close_request_prepare(
            actor=kyc_investor().user, offering_id=offering.pk, reason="x"
        )
    with pytest.raises(ValidationFailed):
        closing.close_request_prepare(actor=preparer, offering_id=offering.pk, reason="  ")
    close_request = closing.close_request_prepare(
        actor=preparer, offering_id=offering.pk, reason="Target met."
    )
    with pytest.raises(Conflict) as refused:
        closing.close_request_prepare(actor=other, offering_id=offering.pk, reason="Again.")
    assert refused.value.code == "close_already_requested"
    # a Reg CF offering closes at its deadline (earlier only through an early close)
    with pytest.raises(Conflict) as refused:
        closing.close_request_approve(actor=other, close_request_id=close_request.pk)
    assert refused.value.code == "reg_cf_close_before_deadline"
    close_request.refresh_from_db()
    assert close_request.status == "pending_approval"
    assert fresh(offering).status == "live"
    assert not OfferingClosing.objects.exists()
    # rejected (with a reason, by another member of staff), then a new request may be made
    with pytest.raises(ValidationFailed):
        closing.close_request_reject(actor=other, close_request_id=close_request.pk, reason="")
    rejected = closing.close_request_reject(
        actor=other, close_request_id=close_request.pk, reason="Wait for the deadline."
    )
    assert rejected.status == "rejected"
    with pytest.raises(InvalidTransition):
        closing.close_request_approve(actor=other, close_request_id=close_request.pk)
    closing.close_request_prepare(actor=other, offering_id=offering.pk, reason="Deadline soon.")


def test_other_exemptions_close_before_the_deadline_once_the_target_is_met(
    django_capture_on_commit_callbacks,
):
    offering = open_offering(exemption=Exemption.REG_A_TIER2, target_raise_minor=500_00)
    funded(kyc_investor(), offering, 3)
    preparer, approver = staff(), staff()
    close_request = closing.close_request_prepare(
        actor=preparer, offering_id=offering.pk, reason="Sponsor asks to close."
    )
    with pytest.raises(Conflict) as refused:
        closing.close_request_approve(actor=approver, close_request_id=close_request.pk)
    assert refused.value.code == "target_not_met"
    funded(kyc_investor(), offering, 2)
    with django_capture_on_commit_callbacks(execute=True):
        closing.close_request_approve(actor=approver, close_request_id=close_request.pk)
    assert fresh(offering).status == "closed_funded"
    assert fresh(offering).units_issued_quanta == 5


def test_a_pending_request_is_cancelled_when_the_deadline_closes_the_offering():
    offering, _ = success_scenario()
    close_request = closing.close_request_prepare(
        actor=staff(), offering_id=offering.pk, reason="At the deadline."
    )
    with after_deadline(offering):
        close_due_offerings()
    close_request.refresh_from_db()
    assert close_request.status == "cancelled"
    assert fresh(offering).status == "closed_funded"


# --- ECSP reflection periods -------------------------------------------------------------------


def ecsp_scenario(target_units: int) -> tuple[Offering, Subscription, Subscription]:
    """EUR 100 units: a sophisticated investor funds 2 units early; a non-sophisticated one
    funds 1 unit a day before the deadline (revocable for 4 days, past the deadline)."""
    offering = open_offering(
        exemption=Exemption.EU_ECSP, currency="EUR", target_raise_minor=target_units * 100_00
    )
    firm = funded(eu_investor(is_sophisticated=True), offering, 2)[0]
    with at(offering.closes_at - timedelta(days=1)):
        tested = eu_investor(knowledge_test_valid_until=timezone.now() + timedelta(days=700))
        revocable = funded(tested, offering, 1)[0]
    assert revocable.revocable_until is not None
    assert revocable.revocable_until > offering.closes_at
    return offering, firm, revocable


def test_a_subscription_inside_its_reflection_period_is_accepted_only_once_it_ends():
    # given the target (2 units) met by firm money alone
    offering, firm, revocable = ecsp_scenario(target_units=2)
    with after_deadline(offering):
        record = closing.offering_close(offering=offering, actor=None)
    # then the outcome is decided, the firm subscription accepted, the other one waits
    assert record is not None
    assert record.outcome == "funded"
    assert record.completed_at is None
    assert fresh(offering).status == "closing"
    assert statuses(firm, revocable) == ["accepted", "funded"]
    # when its reflection period is over, the scheduled task finishes the close
    assert revocable.revocable_until is not None
    with at(revocable.revocable_until + timedelta(minutes=1)):
        assert close_due_offerings() == [offering.pk]
    assert statuses(firm, revocable) == ["accepted", "accepted"]
    assert fresh(offering).status == "closed_funded"
    assert fresh(offering).units_issued_quanta == 3


def test_the_outcome_waits_while_it_depends_on_money_that_may_be_withdrawn():
    # given a target of 3 units: 2 firm + 1 still revocable
    offering, firm, revocable = ecsp_scenario(target_units=3)
    with after_deadline(offering):
        record = closing.offering_close(offering=offering, actor=None)
        # then nothing is decided, accepted or refunded yet
        assert record is not None
        assert record.outcome == ""
        assert record.completed_at is None
        assert statuses(firm, revocable) == ["funded", "funded"]
    # when the investor revokes inside the period, the target can no longer be met
    with after_deadline(offering, hours=24):
        subscriptions.subscription_cancel(
            actor=revocable.investor.user, subscription_id=revocable.pk
        )
        close_due_offerings()
    assert statuses(firm, revocable) == ["refunded", "cancelled"]
    assert fresh(offering).status == "closed_failed"
    assert escrow_total(offering) == 0


# --- statistics ---------------------------------------------------------------------------------


def test_offering_stats_show_reserved_sold_available_raised_investors_and_percent():
    offering = open_offering(
        units_authorized=20,
        max_investment_units=20,
        target_raise_minor=1_000_00,
        max_raise_minor=2_000_00,
    )
    a, b, c, d = (kyc_investor() for _ in range(4))
    funded(a, offering, 2)
    funded(a, offering, 1)
    funded(b, offering, 4)
    signed(c, offering, 5)
    subscribe(d, offering, 1)
    stats = offering_stats(offering=fresh(offering))
    assert stats.units_reserved_quanta == 13  # 2 + 1 + 4 funded, 5 signed, 1 reserved
    assert stats.units_sold_quanta == 7
    assert stats.units_issued_quanta == 0
    assert stats.units_available_quanta == 20 - 13
    assert stats.amount_raised_minor == 700_00
    assert stats.investor_count == 2
    assert stats.percent_of_target == Decimal("70.0000")
    with after_deadline(offering):
        closing.offering_close(offering=offering, actor=None)
    after = offering_stats(offering=fresh(offering))
    assert (after.units_issued_quanta, after.units_reserved_quanta) == (0, 0)
    assert after.amount_raised_minor == 0  # all-or-nothing missed: everyone refunded


# --- money arriving around the close --------------------------------------------------------------


def test_a_payment_confirmed_after_the_close_goes_straight_back():
    # given a funded offering, and an investor whose transfer is still on its way at the close
    offering = open_offering(target_raise_minor=200_00)
    funded(kyc_investor(), offering, 3)
    late = signed(kyc_investor(), offering, 1)
    payment = start_payment(late)
    with after_deadline(offering):
        closing.offering_close(offering=offering, actor=None)
        assert statuses(late) == ["cancelled"]
        # when the money arrives after all
        notify(payment)
    # then it went back out where it came from, and the close's figures did not move
    assert balance(ledger.escrow_spec(offering, late.investor).key) == 0
    assert paid_back_minor(late.investor, offering) == paid_in_minor(late.investor, offering) > 0
    assert escrow_total(offering) == 0
    assert fresh(offering).units_issued_quanta == 3
    report = ledger_verify()
    assert report.ok, report.summary()


def test_a_payment_confirmed_after_the_deadline_but_before_the_close_is_accepted():
    offering = open_offering(target_raise_minor=200_00)
    funded(kyc_investor(), offering, 2)
    late = signed(kyc_investor(), offering, 1)
    payment = start_payment(late)
    with after_deadline(offering):
        notify(payment)  # the commitment was made in time; the money follows it
        closing.offering_close(offering=offering, actor=None)
    assert statuses(late) == ["accepted"]
    assert fresh(offering).units_issued_quanta == 3


def test_only_a_live_offering_closes():
    offering = open_offering()
    Offering.objects.filter(pk=offering.pk).update(status="cancelled")
    with after_deadline(offering), pytest.raises(InvalidTransition):
        closing.offering_close(offering=offering, actor=None)
    assert not OfferingClosing.objects.exists()

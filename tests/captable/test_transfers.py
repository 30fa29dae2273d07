"""Transfers and four-eyes requests through the services: Reg CF resale lock, exceptions,
available units, idempotency, forced transfers and reversals, and the database constraints."""

import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from captable import ledger
from captable.models import (
    Entry,
    ReversalRequest,
    TransferRequest,
    TransferRequestStatusChange,
    TransferStatus,
)
from captable.selectors import lots_as_of
from captable.transfers import (
    forced_transfer_approve,
    forced_transfer_prepare,
    one_calendar_year_after,
    reversal_approve,
    reversal_prepare,
    transfer_request_approve,
    transfer_request_cancel,
    transfer_request_create,
    transfer_request_reject,
)
from common.errors import Conflict, InvalidTransition, LimitExceeded, NotAllowed, ValidationFailed
from investors.models import Investor
from offerings.models import Offering
from tests.captable.factories import investors, issue, key, offering_with_units, transfer
from tests.conftest import new_user
from tests.investors.factories import make_investor

# Every test also runs on SQLite (`embedded`) except the concurrency one at the end.
pytestmark = [pytest.mark.django_db]

NEW_YORK = ZoneInfo("America/New_York")


def days_ago(days: int) -> datetime:
    return timezone.now() - timedelta(days=days)


def issue_at(moment: datetime, offering: Offering, investor: Investor, quanta: int) -> Entry:
    """Lots take their issue date from the entry's effective time: post it back then."""
    with time_machine.travel(moment, tick=False):
        return issue(offering, investor, quanta)


def held(offering: Offering, investor: Investor) -> int:
    return ledger.holding_account(offering, investor).balance


def request(seller: Investor, buyer: Investor, offering: Offering, quanta: int, **extra):
    transfer, _ = transfer_request_create(
        actor=seller.user,
        offering_id=offering.pk,
        quanta=quanta,
        buyer_email=buyer.user.email,
        idempotency_key=extra.pop("idempotency_key", key("transfer")),
        **extra,
    )
    return transfer


def with_exception(exception: str = "family_member") -> dict[str, str]:
    return {
        "exception": exception,
        "evidence_reference": "doc-2024-117",
        "evidence_description": "Birth certificate: the buyer is the seller's daughter.",
    }


def statuses(transfer: TransferRequest) -> list[tuple[str, str]]:
    return list(transfer.status_changes.values_list("from_status", "to_status"))


# --- the Reg CF resale lock -------------------------------------------------------------------


@pytest.mark.embedded
def test_units_issued_six_months_ago_are_locked_and_the_free_date_is_given():
    offering = offering_with_units()
    alice, bob = investors(2)
    issued = issue_at(days_ago(182), offering, alice, 100)
    with pytest.raises(LimitExceeded) as error:
        request(alice, bob, offering, 10)
    free_on = (
        issued.effective_at.astimezone(NEW_YORK)
        .date()
        .replace(year=issued.effective_at.astimezone(NEW_YORK).year + 1)
    )
    assert error.value.code == "resale_locked"
    assert error.value.context["free_on"] == free_on.isoformat()
    assert free_on.isoformat() in error.value.detail
    assert (held(offering, alice), held(offering, bob)) == (100, 0)
    assert not TransferRequest.objects.exists()


@pytest.mark.embedded
def test_units_issued_thirteen_months_ago_transfer_at_once():
    offering = offering_with_units()
    alice, bob = investors(2)
    issued = issue_at(days_ago(396), offering, alice, 100)
    transfer = request(alice, bob, offering, 40)
    assert transfer.status == TransferStatus.COMPLETED
    assert transfer.entry is not None
    assert transfer.entry.kind == "transfer"
    assert transfer.entry.metadata["exception"] == "none"
    assert transfer.entry.metadata["transfer_request"] == transfer.pk
    assert (held(offering, alice), held(offering, bob)) == (60, 40)
    (bob_lot,) = lots_as_of(holding=ledger.holding_account(offering, bob))
    assert bob_lot.issued_at == issued.effective_at  # the issue date travels with the units
    assert statuses(transfer) == [("", "approved"), ("approved", "completed")]


@pytest.mark.embedded
def test_mixed_lots_only_the_old_part_is_free():
    offering = offering_with_units()
    alice, bob = investors(2)
    issue_at(days_ago(400), offering, alice, 100)
    issue_at(days_ago(30), offering, alice, 50)
    with pytest.raises(LimitExceeded) as error:
        request(alice, bob, offering, 120)
    assert error.value.context["locked_quanta"] == 20
    assert request(alice, bob, offering, 100).status == TransferStatus.COMPLETED
    with pytest.raises(LimitExceeded, match="cannot be resold"):
        request(alice, bob, offering, 1)
    assert (held(offering, alice), held(offering, bob)) == (50, 100)


@pytest.mark.embedded
def test_the_lock_is_a_calendar_year_not_365_days():
    offering = offering_with_units()
    alice, bob = investors(2)
    # 2027-06-01 → 2028-06-01 spans 29 February 2028: 366 days.
    issued_at = datetime(2027, 6, 1, 12, 0, tzinfo=NEW_YORK)
    issue_at(issued_at, offering, alice, 10)
    almost = issued_at + timedelta(days=365, hours=1)
    with time_machine.travel(almost, tick=False), pytest.raises(LimitExceeded, match="2028-06-01"):
        request(alice, bob, offering, 10)
    with time_machine.travel(datetime(2028, 6, 1, 12, 0, tzinfo=NEW_YORK), tick=False):
        assert request(alice, bob, offering, 10).status == TransferStatus.COMPLETED


@pytest.mark.embedded
def test_one_calendar_year_after_a_leap_day_is_the_first_of_march():
    leap_day = datetime(2024, 2, 29, 17, 0, tzinfo=UTC)  # 12:00 in New York
    assert one_calendar_year_after(leap_day, time_zone="America/New_York") == datetime(
        2025, 3, 1, 17, 0, tzinfo=UTC
    )
    # Same wall-clock time across daylight saving: January (EST) to January (EST).
    winter = datetime(2025, 1, 10, 15, 0, tzinfo=UTC)
    assert one_calendar_year_after(winter, time_zone="America/New_York") == datetime(
        2026, 1, 10, 15, 0, tzinfo=UTC
    )


@pytest.mark.embedded
@pytest.mark.parametrize("exemption", ["reg_d_506c", "reg_a_tier2"])
def test_other_exemptions_have_no_resale_lock_here(exemption):
    offering = offering_with_units(exemption=exemption, funding_model="keep_what_you_raise")
    alice, bob = investors(2)
    issue_at(days_ago(10), offering, alice, 100)
    assert request(alice, bob, offering, 100).status == TransferStatus.COMPLETED
    assert held(offering, bob) == 100


# --- exceptions and approval ------------------------------------------------------------------


@pytest.mark.embedded
def test_exception_with_evidence_waits_for_staff_and_is_recorded_on_the_entry():
    offering = offering_with_units()
    alice, bob = investors(2)
    issued = issue_at(days_ago(90), offering, alice, 100)
    transfer = request(alice, bob, offering, 30, **with_exception())
    assert transfer.status == TransferStatus.PENDING_APPROVAL
    assert transfer.entry is None
    assert held(offering, bob) == 0

    reviewer = new_user(is_staff=True)
    approved = transfer_request_approve(
        actor=reviewer, transfer_id=transfer.pk, reason="Birth certificate checked."
    )

    assert approved.status == TransferStatus.COMPLETED
    assert approved.decided_by == reviewer
    assert approved.entry is not None
    assert approved.entry.metadata == {
        "transfer_request": transfer.pk,
        "kind": "voluntary",
        "exception": "family_member",
        "evidence": "doc-2024-117",
        "approved_by": reviewer.pk,
    }
    assert (held(offering, alice), held(offering, bob)) == (70, 30)
    (bob_lot,) = lots_as_of(holding=ledger.holding_account(offering, bob))
    assert bob_lot.issued_at == issued.effective_at  # still locked for bob until then
    assert statuses(approved) == [
        ("", "pending_approval"),
        ("pending_approval", "approved"),
        ("approved", "completed"),
    ]


@pytest.mark.embedded
def test_an_exception_needs_evidence():
    offering = offering_with_units()
    alice, bob = investors(2)
    issue_at(days_ago(90), offering, alice, 100)
    with pytest.raises(ValidationFailed) as error:
        request(alice, bob, offering, 30, exception="family_member", evidence_reference=" ")
    assert error.value.code == "evidence_required"
    assert not TransferRequest.objects.exists()


@pytest.mark.embedded
def test_accredited_investor_exception_needs_an_accredited_buyer():
    offering = offering_with_units()
    (alice,) = investors(1)
    plain = make_investor(kyc_status="approved", kyc_decided_at=timezone.now())
    certified = make_investor(
        kyc_status="approved",
        kyc_decided_at=timezone.now(),
        accreditation_status="self_certified",
    )
    wealthy = make_investor(
        kyc_status="approved", kyc_decided_at=timezone.now(), net_worth_minor=2_000_000_00
    )
    issue_at(days_ago(90), offering, alice, 100)
    with pytest.raises(LimitExceeded) as error:
        request(alice, plain, offering, 10, **with_exception("accredited_investor"))
    assert error.value.code == "recipient_not_accredited"
    for buyer in (certified, wealthy):
        transfer = request(alice, buyer, offering, 10, **with_exception("accredited_investor"))
        assert transfer.status == TransferStatus.PENDING_APPROVAL


@pytest.mark.embedded
def test_the_requester_cannot_approve_their_own_request():
    offering = offering_with_units()
    alice, bob = investors(2)
    alice.user.is_staff = True  # a staff member who is also an investor
    alice.user.save()
    issue_at(days_ago(90), offering, alice, 100)
    transfer = request(alice, bob, offering, 30, **with_exception())
    with pytest.raises(NotAllowed) as error:
        transfer_request_approve(actor=alice.user, transfer_id=transfer.pk)
    assert error.value.code == "four_eyes"
    with pytest.raises(NotAllowed):
        transfer_request_approve(actor=bob.user, transfer_id=transfer.pk)  # not staff
    transfer.refresh_from_db()
    assert transfer.status == TransferStatus.PENDING_APPROVAL
    assert held(offering, bob) == 0


@pytest.mark.embedded
def test_rejection_needs_a_reason_and_frees_the_units():
    offering = offering_with_units()
    alice, bob, carol = investors(3)
    issue_at(days_ago(90), offering, alice, 100)
    transfer = request(alice, bob, offering, 100, **with_exception())
    reviewer = new_user(is_staff=True)
    with pytest.raises(ValidationFailed):
        transfer_request_reject(actor=reviewer, transfer_id=transfer.pk, reason="")
    rejected = transfer_request_reject(
        actor=reviewer, transfer_id=transfer.pk, reason="Evidence does not show a family tie."
    )
    assert rejected.status == TransferStatus.REJECTED
    assert rejected.decision_reason == "Evidence does not show a family tie."
    with pytest.raises(InvalidTransition):
        transfer_request_approve(actor=reviewer, transfer_id=transfer.pk)
    # the 100 units are available again
    assert request(alice, carol, offering, 100, **with_exception()).quanta == 100
    assert held(offering, bob) == 0


@pytest.mark.embedded
def test_the_seller_can_cancel_a_pending_request_and_nobody_else_can():
    offering = offering_with_units()
    alice, bob = investors(2)
    issue_at(days_ago(90), offering, alice, 100)
    transfer = request(alice, bob, offering, 100, **with_exception())
    with pytest.raises(NotAllowed):
        transfer_request_cancel(actor=bob.user, transfer_id=transfer.pk)
    cancelled = transfer_request_cancel(actor=alice.user, transfer_id=transfer.pk)
    assert cancelled.status == TransferStatus.CANCELLED
    with pytest.raises(InvalidTransition):
        transfer_request_cancel(actor=alice.user, transfer_id=transfer.pk)


# --- recipients and available units -----------------------------------------------------------


@pytest.mark.embedded
def test_recipient_must_be_a_kyc_approved_investor_and_nothing_changes():
    offering = offering_with_units()
    (alice,) = investors(1)
    pending = make_investor()  # KYC pending
    issue_at(days_ago(400), offering, alice, 100)
    with pytest.raises(ValidationFailed) as error:
        request(alice, pending, offering, 10)
    assert error.value.code == "recipient_not_kyc_approved"
    assert "KYC" in error.value.detail
    with pytest.raises(ValidationFailed) as error:
        transfer_request_create(
            actor=alice.user,
            offering_id=offering.pk,
            quanta=10,
            buyer_email="nobody@example.com",
            idempotency_key=key(),
        )
    assert error.value.code == "recipient_not_investor"
    assert held(offering, alice) == 100
    assert not TransferRequest.objects.exists()


@pytest.mark.embedded
def test_available_units_count_the_sellers_open_requests():
    offering = offering_with_units()
    alice, bob, carol = investors(3)
    issue_at(days_ago(90), offering, alice, 100)
    request(alice, bob, offering, 60, **with_exception())
    with pytest.raises(LimitExceeded) as error:
        request(alice, carol, offering, 50, **with_exception())
    assert error.value.code == "insufficient_available_units"
    assert error.value.context["available_quanta"] == 40
    assert request(alice, carol, offering, 40, **with_exception()).quanta == 40
    with pytest.raises(LimitExceeded):
        request(alice, carol, offering, 1, **with_exception())


@pytest.mark.embedded
def test_free_units_already_promised_to_a_pending_request_are_not_free_again():
    offering = offering_with_units()
    alice, bob, carol = investors(3)
    issue_at(days_ago(400), offering, alice, 50)  # free
    issue_at(days_ago(30), offering, alice, 50)  # locked
    request(alice, bob, offering, 50, **with_exception())  # takes the 50 free ones first
    with pytest.raises(LimitExceeded) as error:
        request(alice, carol, offering, 10)
    assert error.value.code == "resale_locked"


@pytest.mark.embedded
def test_a_transfer_never_exceeds_the_units_held():
    offering = offering_with_units()
    alice, bob = investors(2)
    issue_at(days_ago(400), offering, alice, 10)
    with pytest.raises(LimitExceeded) as error:
        request(alice, bob, offering, 11)
    assert error.value.code == "insufficient_available_units"
    with pytest.raises(ValidationFailed):
        request(alice, bob, offering, 0)
    with pytest.raises(ValidationFailed):
        request(alice, alice, offering, 1)
    assert held(offering, alice) == 10


# --- idempotency ------------------------------------------------------------------------------


@pytest.mark.embedded
def test_same_idempotency_key_returns_the_first_request_and_another_body_conflicts():
    offering = offering_with_units()
    alice, bob = investors(2)
    issue_at(days_ago(400), offering, alice, 100)
    first, created = transfer_request_create(
        actor=alice.user,
        offering_id=offering.pk,
        quanta=10,
        buyer_email=bob.user.email,
        idempotency_key="same-key",
    )
    again, created_again = transfer_request_create(
        actor=alice.user,
        offering_id=offering.pk,
        quanta=10,
        buyer_email=bob.user.email,
        idempotency_key="same-key",
    )
    assert (created, created_again) == (True, False)
    assert again.pk == first.pk
    with pytest.raises(Conflict) as error:
        transfer_request_create(
            actor=alice.user,
            offering_id=offering.pk,
            quanta=11,
            buyer_email=bob.user.email,
            idempotency_key="same-key",
        )
    assert error.value.code == "idempotency_key_reused"
    assert TransferRequest.objects.count() == 1
    assert held(offering, bob) == 10


# --- forced transfers -------------------------------------------------------------------------


def prepare_forced(preparer, offering, seller, buyer, quanta=100):
    return forced_transfer_prepare(
        actor=preparer,
        offering_id=offering.pk,
        seller_investor_id=seller.pk,
        buyer_investor_id=buyer.pk,
        quanta=quanta,
        legal_basis="death",
        reason="Estate of the late holder, units to the heir.",
        document_reference="probate-2025-0042",
    )


@pytest.mark.embedded
def test_forced_transfer_needs_a_second_staff_member_and_ignores_the_lock():
    offering = offering_with_units()
    estate, heir = investors(2)
    issue_at(days_ago(30), offering, estate, 100)  # locked for Reg CF resale
    first, second = new_user(is_staff=True), new_user(is_staff=True)
    forced = prepare_forced(first, offering, estate, heir)
    assert forced.status == TransferStatus.PENDING_APPROVAL
    with pytest.raises(NotAllowed) as error:
        forced_transfer_approve(actor=first, transfer_id=forced.pk)
    assert error.value.code == "four_eyes"
    assert held(offering, heir) == 0

    done = forced_transfer_approve(actor=second, transfer_id=forced.pk, reason="Probate seen.")

    assert done.status == TransferStatus.COMPLETED
    assert (held(offering, estate), held(offering, heir)) == (0, 100)
    assert done.entry is not None
    metadata = done.entry.metadata
    assert metadata["prepared_by"] == first.pk
    assert metadata["approved_by"] == second.pk
    assert metadata["legal_basis"] == "death"
    assert metadata["reason"] == "Estate of the late holder, units to the heir."


@pytest.mark.embedded
def test_forced_transfer_never_exceeds_the_units_held():
    offering = offering_with_units()
    estate, heir, other = investors(3)
    issue_at(days_ago(400), offering, estate, 100)
    first, second = new_user(is_staff=True), new_user(is_staff=True)
    with pytest.raises(LimitExceeded):
        prepare_forced(first, offering, estate, heir, quanta=101)
    forced = prepare_forced(first, offering, estate, heir, quanta=100)
    transfer(offering, estate, other, 30)  # the units moved meanwhile (e.g. a correction)
    with pytest.raises(LimitExceeded):
        forced_transfer_approve(actor=second, transfer_id=forced.pk)
    forced.refresh_from_db()
    assert forced.status == TransferStatus.PENDING_APPROVAL  # the approval rolled back
    assert held(offering, heir) == 0


@pytest.mark.embedded
def test_forced_transfer_needs_a_basis_and_staff():
    offering = offering_with_units()
    estate, heir = investors(2)
    issue_at(days_ago(400), offering, estate, 100)
    with pytest.raises(NotAllowed):
        prepare_forced(estate.user, offering, estate, heir)
    with pytest.raises(ValidationFailed):
        forced_transfer_prepare(
            actor=new_user(is_staff=True),
            offering_id=offering.pk,
            seller_investor_id=estate.pk,
            buyer_investor_id=heir.pk,
            quanta=1,
            legal_basis="none",
            reason="because",
            document_reference="x",
        )
    assert not TransferRequest.objects.exists()


# --- reversals --------------------------------------------------------------------------------


@pytest.mark.embedded
def test_reversal_needs_a_second_staff_member():
    offering = offering_with_units()
    alice, bob = investors(2)
    issue_at(days_ago(400), offering, alice, 100)
    transfer = request(alice, bob, offering, 40)
    first, second = new_user(is_staff=True), new_user(is_staff=True)
    reversal = reversal_prepare(actor=first, entry_id=transfer.entry_id, reason="Wrong buyer.")
    with pytest.raises(Conflict):
        reversal_prepare(actor=second, entry_id=transfer.entry_id, reason="Twice.")
    with pytest.raises(NotAllowed):
        reversal_approve(actor=first, reversal_id=reversal.pk)
    assert held(offering, bob) == 40

    done = reversal_approve(actor=second, reversal_id=reversal.pk)

    assert done.status == "completed"
    assert done.reversal_entry is not None
    assert done.reversal_entry.reverses_id == transfer.entry_id
    assert (held(offering, alice), held(offering, bob)) == (100, 0)
    assert list(done.status_changes.values_list("to_status", flat=True)) == [
        "pending_approval",
        "completed",
    ]
    with pytest.raises(Conflict):
        reversal_prepare(actor=first, entry_id=transfer.entry_id, reason="Again.")
    with pytest.raises(InvalidTransition):
        reversal_approve(actor=second, reversal_id=reversal.pk)
    assert ReversalRequest.objects.count() == 1


# --- database constraints ---------------------------------------------------------------------


@pytest.mark.embedded
def test_the_database_refuses_an_approval_by_the_requester_and_a_history_edit():
    offering = offering_with_units()
    alice, bob = investors(2)
    issue_at(days_ago(90), offering, alice, 100)
    transfer = request(alice, bob, offering, 10, **with_exception())
    with pytest.raises(IntegrityError), transaction.atomic():
        TransferRequest.objects.filter(pk=transfer.pk).update(
            decided_by=alice.user, decided_at=timezone.now()
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        TransferRequest.objects.filter(pk=transfer.pk).update(status="completed")
    with pytest.raises(IntegrityError), transaction.atomic():
        TransferRequest.objects.filter(pk=transfer.pk).update(quanta=0)
    with pytest.raises(DatabaseError), transaction.atomic():
        TransferRequestStatusChange.objects.filter(transfer=transfer).update(reason="edited")
    transfer.refresh_from_db()
    assert (transfer.status, transfer.decided_by_id, transfer.quanta) == (
        "pending_approval",
        None,
        10,
    )


# --- concurrency (PostgreSQL) -----------------------------------------------------------------


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_cannot_both_spend_the_same_units():
    offering = offering_with_units()
    alice, bob, carol = investors(3)
    issue_at(days_ago(90), offering, alice, 100)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def attempt(buyer: Investor) -> None:
        try:
            barrier.wait()
            request(alice, buyer, offering, 70, **with_exception())
            outcomes.append("ok")
        except LimitExceeded:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt, args=(buyer,)) for buyer in (bob, carol)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["ok", "refused"]
    assert TransferRequest.objects.filter(status="pending_approval").count() == 1

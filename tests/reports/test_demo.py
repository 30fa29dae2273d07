"""`manage.py demo` seeds through the services, runs an investor journey through closing, and
can be run again and again."""

import json
import re
from io import StringIO
from unittest import mock

import pytest
from django.core.management import call_command
from django.db.models import Model, Sum

from captable.models import (
    Account,
    AccountKind,
    CloseRequest,
    CloseRequestStatus,
    Entry,
    Lot,
    OfferingClosing,
    Payment,
    PaymentEvent,
    PaymentStatus,
    Posting,
    Subscription,
    SubscriptionStatus,
    SubscriptionStatusChange,
)
from captable.selectors import captable_as_of
from captable.verification import ledger_verify
from common.models import OutboxMessage, User
from investors.models import Investor
from offerings.models import Offering, OfferingStatus, OfferingStatusChange
from reports.models import Statement
from tests.reports.conftest import pdf_text

pytestmark = pytest.mark.django_db
# Every test but the last also runs on the embedded default (SQLite): the last needs real
# commits, which SQLite's append-only triggers would refuse to flush afterwards.
embedded = pytest.mark.embedded

# Every row the demo creates, by table: a second run must add none.
SEEDED_MODELS: tuple[type[Model], ...] = (
    User,
    Investor,
    Offering,
    OfferingStatusChange,
    Subscription,
    SubscriptionStatusChange,
    Payment,
    PaymentEvent,
    CloseRequest,
    OfferingClosing,
    Entry,
    Posting,
    Lot,
    Account,
    OutboxMessage,
)

# The journey's steps as a newcomer reads them, in order.
JOURNEY_STEPS = (
    "1. Alice subscribes 60 units ($6,000.00) → reserved (40 of 100 units left)",
    "2. Ben subscribes 40 units ($4,000.00) → reserved (sold out)",
    "3. Dana subscribes 30 units ($3,000.00) → waitlisted #1 (sold out)",
    "4. Alice signs the agreement",
    "5. Alice wires $6,000.00 quoting BB",
    "6. Ben signs the agreement",
    "7. Ben wires $4,000.00 quoting BB",
    "8. Alice's transfer BB",
    "9. Ben cancels → $4,000.00 refunded from escrow, units released; Dana promoted from the "
    "waitlist → reserved",
    "10. Dana signs the agreement",
    "11. Dana wires $3,000.00 quoting BB",
    "12. Alice wires $6,000.00 again quoting BB",
    "13. staff@demo.brickbook.example prepares the close ($9,000.00 funded, target $5,000.00)",
    "14. approver@demo.brickbook.example, a second member of staff, approves → offering closing",
    "15. The close",
)


def run_demo() -> str:
    out = StringIO()
    call_command("demo", stdout=out)
    return out.getvalue()


def row_counts() -> dict[str, int]:
    return {model.__name__: model._default_manager.count() for model in SEEDED_MODELS}


def summary_of(output: str) -> str:
    """What every run prints: from the first offering on."""
    return output[output.index("Offering #") :]


def journey_offering() -> Offering:
    return Offering.objects.get(slug__startswith="birch-street")


def subscription_of(offering: Offering, email: str) -> Subscription:
    return Subscription.objects.get(offering=offering, investor__user__email=email)


def statuses_of(subscription: Subscription) -> list[str]:
    history = SubscriptionStatusChange.objects.filter(subscription=subscription).order_by("pk")
    return list(history.values_list("to_status", flat=True))


@embedded
def test_the_seed_keeps_the_live_reg_cf_offering_and_the_investors_limits():
    output = run_demo()
    offering = Offering.objects.get(slug__startswith="maple-court")
    assert offering.status == OfferingStatus.LIVE
    # the lifecycle went through the services: draft → in_review → approved → live
    assert list(
        OfferingStatusChange.objects.filter(offering=offering)
        .order_by("pk")
        .values_list("to_status", flat=True)
    ) == ["draft", "in_review", "approved", "live"]
    assert Investor.objects.filter(kyc_status="approved").count() == 4
    assert "Demo data seeded." in output
    assert "price per unit   $100.00" in output
    assert "units available  40,000.000 of 40,000.000" in output
    # each investor's limits with the rule version
    assert "USD 2500.00    [reg-cf-investor-2021-03-15]" in output  # Ben, low income
    assert "EUR 3000.00    [ecsp-2021-11-10]" in output  # Eva, 5% of EUR 60,000
    assert "Reg CF (12 months)            yes, no limit" in output  # Alice, accredited


@embedded
def test_the_output_names_each_step_of_the_journey_in_order():
    output = run_demo()
    positions = [output.index(step) for step in JOURNEY_STEPS]
    assert positions == sorted(positions)
    assert "bounced (the bank returned it) → funding reversed, signed again" in output
    assert "→ closed_funded: 90 units issued" in output
    # the summary: subscriptions with their history, payments, cap table, closing, ledger
    assert "waitlisted → reserved → signed → funded → accepted" in output
    assert "returned: the transfer bounced, funding reversed" in output
    assert "Alice Accredited       60  66.6667%  $6,000.00" in output
    assert "Dana Rivera            30  33.3333%  $3,000.00" in output
    assert "raised           $9,000.00 from 2 investors (180% of the $5,000.00 target)" in output
    # staff agreed a 2.5% platform fee at approval: $225.00 of the $9,000.00 raised
    assert "platform fee     $225.00 (250 basis points) → platform fees" in output
    assert "issuer proceeds  $8,775.00 → Birch Street SPV LLC" in output
    assert "left in escrow   $0.00" in output
    assert ": OK" in output.split("Ledger check")[1]


@embedded
def test_the_journey_ends_closed_with_the_units_issued_and_escrow_paid_out():
    run_demo()
    offering = journey_offering()
    assert offering.status == OfferingStatus.CLOSED_FUNDED
    assert offering.exemption == "reg_a_tier2"
    # the ledger verifies: every chain and invariant
    report = ledger_verify()
    assert report.ok, report.summary()
    # units issued = units of the accepted subscriptions, on the offering and on the ledger
    accepted = Subscription.objects.filter(offering=offering, status=SubscriptionStatus.ACCEPTED)
    accepted_quanta = accepted.aggregate(total=Sum("quanta"))["total"]
    table = captable_as_of(offering=offering)
    assert accepted_quanta == 90
    assert offering.units_issued_quanta == table.issued_quanta == accepted_quanta
    assert offering.units_reserved_quanta == 0
    assert {(row.investor_id, row.quanta, row.cost_minor) for row in table.rows} == {
        (s.investor_id, s.quanta, s.amount_minor) for s in accepted
    }
    # escrow is empty; proceeds + platform fees = the funds accepted
    escrow = Account.objects.filter(offering=offering, kind=AccountKind.ESCROW)
    assert escrow.exists()
    assert all(account.balance == 0 for account in escrow)
    proceeds = Account.objects.get(issuer=offering.issuer, kind=AccountKind.PROCEEDS).balance
    fees = sum(
        Account.objects.filter(kind=AccountKind.PLATFORM_FEES).values_list("balance", flat=True)
    )
    assert proceeds + fees == accepted.aggregate(total=Sum("amount_minor"))["total"] == 9_000_00


@embedded
def test_the_waitlisted_investor_ends_accepted_and_the_canceller_is_refunded():
    run_demo()
    offering = journey_offering()
    dana = subscription_of(offering, "dana@demo.brickbook.example")
    assert dana.status == SubscriptionStatus.ACCEPTED
    assert statuses_of(dana) == ["waitlisted", "reserved", "signed", "funded", "accepted"]
    ben = subscription_of(offering, "ben@demo.brickbook.example")
    assert statuses_of(ben) == ["reserved", "signed", "funded", "cancelled"]
    (ben_payment,) = Payment.objects.filter(subscription=ben)
    assert ben_payment.status == PaymentStatus.REFUNDED
    assert ben_payment.amount_refunded_minor == ben_payment.amount_received_minor == 4_000_00


@embedded
def test_the_bounced_payment_is_recorded_and_paid_again():
    run_demo()
    alice = subscription_of(journey_offering(), "alice@demo.brickbook.example")
    assert statuses_of(alice) == ["reserved", "signed", "funded", "signed", "funded", "accepted"]
    bounced, paid_again = Payment.objects.filter(subscription=alice).order_by("pk")
    assert bounced.status == PaymentStatus.RETURNED
    assert bounced.return_entry_id is not None
    assert list(
        PaymentEvent.objects.filter(payment=bounced)
        .order_by("pk")
        .values_list("event_type", flat=True)
    ) == ["payment.confirmed", "payment.returned"]
    assert paid_again.status == PaymentStatus.CONFIRMED
    assert paid_again.amount_received_minor == alice.amount_minor


@embedded
def test_the_close_was_prepared_by_one_member_of_staff_and_approved_by_another():
    run_demo()
    closing = OfferingClosing.objects.get(offering=journey_offering())
    request = closing.close_request
    assert request is not None
    assert request.status == CloseRequestStatus.COMPLETED
    assert request.requested_by.email == "staff@demo.brickbook.example"
    assert request.decided_by is not None
    assert request.decided_by.email == "approver@demo.brickbook.example"
    assert closing.completed_at is not None


@embedded
def test_a_second_run_creates_nothing_and_prints_the_same_summary():
    first = run_demo()
    counts = row_counts()
    second = run_demo()
    assert "already present" in second
    assert "Seeding" not in second
    assert "The investor journey" not in second
    assert row_counts() == counts
    assert summary_of(second) == summary_of(first)


@embedded
def test_the_printed_sign_in_works_for_the_demo_accounts(client):
    # The demo's addresses must be ones the API's email validation accepts (a reserved
    # top-level domain such as .test is refused by POST /auth/token).
    output = run_demo()
    match = re.search(
        r"Sign in: POST /api/v1/auth/token with any email above and password '([^']+)'", output
    )
    assert match is not None
    for email in ("alice@demo.brickbook.example", "staff@demo.brickbook.example"):
        assert email in output
        response = client.post(
            "/api/v1/auth/token",
            data=json.dumps({"email": email, "password": match.group(1)}),
            content_type="application/json",
        )
        assert response.status_code == 200, response.content
        assert response.json()["token"]


@embedded
def test_a_failure_half_way_leaves_nothing_behind_and_the_next_run_completes():
    # given the bank's notification for the bounce fails half-way through the journey
    from captable.payments import payment_simulate

    def failing(*, payment, event_type, amount_minor=None):
        if event_type == "payment.returned":
            raise RuntimeError("the bank's line dropped")
        return payment_simulate(payment=payment, event_type=event_type, amount_minor=amount_minor)

    with (
        mock.patch("reports.management.commands.demo.payment_simulate", failing),
        pytest.raises(RuntimeError, match="line dropped"),
    ):
        run_demo()
    # then nothing of the seed is left
    assert all(count == 0 for count in row_counts().values()), row_counts()
    # and the next run does it all
    output = run_demo()
    assert "Demo data seeded." in output
    assert journey_offering().status == OfferingStatus.CLOSED_FUNDED
    assert ledger_verify().ok


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_with_real_commits_the_approved_close_runs_from_the_outbox():
    output = run_demo()
    assert "15. The close ran from the outbox after the commit → closed_funded" in output
    message = OutboxMessage.objects.get(task_name="captable.close_offering")
    assert message.status == OutboxMessage.Status.DISPATCHED
    assert message.last_error == ""
    assert journey_offering().status == OfferingStatus.CLOSED_FUNDED
    report = ledger_verify()
    assert report.ok, report.summary()
    assert report.unsealed_entries == 0  # sealed after each commit
    # a second run over committed data creates nothing either
    counts = row_counts()
    assert "already present" in run_demo()
    assert row_counts() == counts


@embedded
def test_the_demo_writes_its_statements_as_pdfs_and_prints_their_paths(media_root):
    output = run_demo()
    folder = media_root.parent / "statements"
    paths = sorted(folder.glob("subscription-confirmation-*.pdf"))
    # the demo's two distributions (captable/demo_distributions.py): a notice per paid payout
    assert len(list(folder.glob("distribution-notice-*.pdf"))) == 4
    # Alice and Dana ended accepted: one confirmation each
    assert [p.name.split("-subscription-")[0] for p in paths] == [
        "subscription-confirmation-alice-accredited",
        "subscription-confirmation-dana-rivera",
    ]
    for path in paths:
        assert str(path) in output
        text = pdf_text(path.read_bytes())
        assert "Subscription confirmation" in text
        assert "Birch Street" in text
    statements = Statement.objects.count()
    # a second run finds them: same files, same paths printed, nothing generated again
    again = run_demo()
    assert Statement.objects.count() == statements
    assert sorted(folder.glob("subscription-confirmation-*.pdf")) == paths
    assert all(str(path) in again for path in paths)

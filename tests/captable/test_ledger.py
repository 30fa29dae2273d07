"""The ledger primitive and its operations: balanced, idempotent, lots first in first out."""

from decimal import Decimal

import pytest
from django.conf import settings
from hypothesis import given
from hypothesis import strategies as st

from captable import ledger
from captable.models import Account, Entry, Posting
from captable.seals import ledger_seal_all
from captable.selectors import captable_as_of, lots_as_of, positions_as_of
from captable.verification import ledger_verify
from common.errors import Conflict, LimitExceeded, ValidationFailed
from tests.captable.factories import investors, issue, key, offering_with_units, transfer

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def balance(account: Account) -> int:
    account.refresh_from_db()
    return account.balance


def test_issue_moves_units_from_treasury_to_a_new_lot():
    offering = offering_with_units(1_000)
    (alice,) = investors(1)
    entry = issue(offering, alice, 300, cost_minor=30_000)
    assert balance(ledger.treasury_account(offering)) == 700
    holding = ledger.holding_account(offering, alice)
    assert balance(holding) == 300
    (lot,) = lots_as_of(holding=holding)
    assert (lot.quanta, lot.cost_minor) == (300, 30_000)
    assert lot.issued_at == entry.effective_at
    assert sorted(Posting.objects.filter(entry=entry).values_list("amount", flat=True)) == [
        -300,
        300,
    ]


def test_cannot_issue_more_than_authorized():
    offering = offering_with_units(100)
    (alice,) = investors(1)
    issue(offering, alice, 100)
    with pytest.raises(LimitExceeded, match="treasury"):
        issue(offering, alice, 1)
    assert Entry.objects.filter(kind="issue").count() == 1


def test_transfer_consumes_lots_first_in_first_out_with_cost():
    offering = offering_with_units(1_000)
    alice, bob = investors(2)
    first = issue(offering, alice, 100, cost_minor=10_000)
    issue(offering, alice, 100, cost_minor=12_000)
    transfer(offering, alice, bob, 150)
    bob_lots = lots_as_of(holding=ledger.holding_account(offering, bob))
    # all of the first lot (cost 10,000) and half of the second (6,000), issue dates kept
    assert [(lot.quanta, lot.cost_minor) for lot in bob_lots] == [(100, 10_000), (50, 6_000)]
    assert bob_lots[0].issued_at == first.effective_at
    alice_lots = lots_as_of(holding=ledger.holding_account(offering, alice))
    assert [(lot.quanta, lot.cost_minor) for lot in alice_lots] == [(50, 6_000)]


def test_transfer_cost_splits_are_exact_across_repeated_partial_transfers():
    offering = offering_with_units(1_000)
    alice, bob = investors(2)
    issue(offering, alice, 3, cost_minor=100)  # 33.33… cents a quantum
    for _ in range(3):
        transfer(offering, alice, bob, 1)
    bob_cost = sum(
        lot.cost_minor for lot in lots_as_of(holding=ledger.holding_account(offering, bob))
    )
    assert bob_cost == 100  # nothing lost to rounding
    assert lots_as_of(holding=ledger.holding_account(offering, alice)) == []


def test_transfer_more_than_held_changes_nothing():
    offering = offering_with_units(1_000)
    alice, bob = investors(2)
    issue(offering, alice, 10)
    with pytest.raises(LimitExceeded) as error:
        transfer(offering, alice, bob, 11)
    assert error.value.code == "insufficient_units"
    assert balance(ledger.holding_account(offering, alice)) == 10
    assert Entry.objects.filter(kind="transfer").count() == 0


def test_same_key_same_request_returns_the_first_entry():
    offering = offering_with_units(1_000)
    (alice,) = investors(1)
    first = ledger.units_issue(
        offering=offering, investor=alice, quanta=5, cost_minor=0, idempotency_key="same"
    )
    again = ledger.units_issue(
        offering=offering, investor=alice, quanta=5, cost_minor=0, idempotency_key="same"
    )
    assert again.pk == first.pk
    assert balance(ledger.holding_account(offering, alice)) == 5


def test_same_key_different_request_is_a_conflict_and_changes_nothing():
    offering = offering_with_units(1_000)
    (alice,) = investors(1)
    ledger.units_issue(
        offering=offering, investor=alice, quanta=5, cost_minor=0, idempotency_key="same"
    )
    with pytest.raises(Conflict) as error:
        ledger.units_issue(
            offering=offering, investor=alice, quanta=6, cost_minor=0, idempotency_key="same"
        )
    assert error.value.code == "idempotency_key_reused"
    assert balance(ledger.holding_account(offering, alice)) == 5


def test_redeem_returns_units_and_pays_cash_from_operating():
    offering = offering_with_units(1_000)
    (alice,) = investors(1)
    issue(offering, alice, 100, cost_minor=10_000)
    operating = ledger.issuer_account(offering.issuer, "operating", "USD")
    ledger.cash_move(
        source=ledger.external_account("USD"),
        destination=operating,
        amount_minor=50_000,
        idempotency_key=key(),
    )
    ledger.units_redeem(
        offering=offering, investor=alice, quanta=40, price_minor=4_400, idempotency_key=key()
    )
    assert balance(ledger.holding_account(offering, alice)) == 60
    assert balance(ledger.treasury_account(offering)) == 940
    assert balance(ledger.cash_account(alice, "USD")) == 4_400
    assert balance(operating) == 45_600


def test_redeem_without_operating_cash_changes_nothing():
    offering = offering_with_units(1_000)
    (alice,) = investors(1)
    issue(offering, alice, 100)
    with pytest.raises(LimitExceeded, match="operating"):
        ledger.units_redeem(
            offering=offering, investor=alice, quanta=10, price_minor=1, idempotency_key=key()
        )
    assert balance(ledger.holding_account(offering, alice)) == 100


def test_cash_in_escrow_and_out():
    offering = offering_with_units(1_000)
    (alice,) = investors(1)
    external = ledger.external_account("USD")
    escrow = ledger.escrow_account(offering, alice)
    entry = ledger.cash_move(
        source=external, destination=escrow, amount_minor=25_000, idempotency_key=key()
    )
    assert entry.kind == "cash_in"
    assert entry.chain == "cash:USD"
    assert balance(external) == -25_000  # only external accounts go negative
    refund = ledger.cash_move(
        source=escrow, destination=external, amount_minor=25_000, idempotency_key=key()
    )
    assert refund.kind == "cash_out"
    assert balance(escrow) == 0
    with pytest.raises(LimitExceeded):
        ledger.cash_move(source=escrow, destination=external, amount_minor=1, idempotency_key=key())


def test_cash_between_currencies_is_refused():
    (alice,) = investors(1)
    with pytest.raises(ValidationFailed):
        ledger.cash_move(
            source=ledger.external_account("EUR"),
            destination=ledger.cash_account(alice, "USD"),
            amount_minor=1,
            idempotency_key=key(),
        )


def test_reversal_negates_and_cannot_be_repeated():
    offering = offering_with_units(1_000)
    alice, bob = investors(2)
    issue(offering, alice, 100, cost_minor=1_000)
    moved = transfer(offering, alice, bob, 30)
    reversal = ledger.entry_reverse(entry_id=moved.pk, idempotency_key=key(), reason="typo")
    assert reversal.reverses_id == moved.pk
    assert balance(ledger.holding_account(offering, alice)) == 100
    assert balance(ledger.holding_account(offering, bob)) == 0
    alice_lots = lots_as_of(holding=ledger.holding_account(offering, alice))
    assert [(lot.quanta, lot.cost_minor) for lot in alice_lots] == [(100, 1_000)]
    with pytest.raises(Conflict):
        ledger.entry_reverse(entry_id=moved.pk, idempotency_key=key(), reason="again")
    with pytest.raises(Conflict):
        ledger.entry_reverse(entry_id=reversal.pk, idempotency_key=key(), reason="undo")


def test_reversing_an_issue_after_the_units_moved_on_is_refused():
    offering = offering_with_units(1_000)
    alice, bob = investors(2)
    issued = issue(offering, alice, 10)
    transfer(offering, alice, bob, 10)
    with pytest.raises(LimitExceeded):
        ledger.entry_reverse(entry_id=issued.pk, idempotency_key=key(), reason="mistake")
    assert Entry.objects.filter(kind="reversal").count() == 0


def test_captable_as_of_and_positions():
    offering = offering_with_units(1_000)
    alice, bob = investors(2)
    issue(offering, alice, 300, cost_minor=3_000)
    middle = issue(offering, bob, 100, cost_minor=1_000).effective_at
    transfer(offering, alice, bob, 100)
    now = captable_as_of(offering=offering)
    assert [(row.investor_id, row.quanta, row.percent) for row in now.rows] == [
        (alice.pk, 200, Decimal("50.0000")),
        (bob.pk, 200, Decimal("50.0000")),
    ]
    assert (now.authorized_quanta, now.treasury_quanta, now.issued_quanta) == (1_000, 600, 400)
    before = captable_as_of(offering=offering, as_of=middle)
    assert [(row.investor_id, row.quanta) for row in before.rows] == [
        (alice.pk, 300),
        (bob.pk, 100),
    ]
    assert [(p.offering_id, p.quanta, p.cost_minor) for p in positions_as_of(investor=bob)] == [
        (offering.pk, 200, 2_000)
    ]


def test_sealed_ledger_verifies():
    offering = offering_with_units(1_000)
    alice, bob = investors(2)
    issue(offering, alice, 100)
    transfer(offering, alice, bob, 40)
    ledger.cash_move(
        source=ledger.external_account("USD"),
        destination=ledger.escrow_account(offering, alice),
        amount_minor=100,
        idempotency_key=key(),
    )
    assert ledger_seal_all() == 4
    report = ledger_verify()
    assert report.ok, report.summary()
    assert (report.chains, report.unsealed_entries) == (2, 0)


def test_sealing_digests_each_entry_as_its_canonical_text():
    from captable.models import ChainSeal, SealedEntry
    from captable.seals import (
        GENESIS_DIGEST,
        content_digests,
        entries_with_content,
        entry_digest,
        seal_digest,
    )

    # given entries with postings and lots (a transfer splits a lot), sealed in one batch
    offering = offering_with_units(1_000)
    alice, bob = investors(2)
    issue(offering, alice, 100, cost_minor=999)
    moved = transfer(offering, alice, bob, 33)
    assert ledger_seal_all() == 3
    entries = entries_with_content(Entry.objects.all())

    # then each stored digest is the SHA-256 of the entry's canonical text built from its
    # model objects, as read back by the plain-row reader verification shares
    expected = {e.pk: entry_digest(e, e.postings.all(), e.lots_opened.all()) for e in entries}
    assert content_digests([e.pk for e in entries]) == expected
    assert dict(SealedEntry.objects.values_list("entry_id", "entry_digest")) == expected
    assert moved.pk in expected
    # and the chain's one seal is the HMAC over the genesis digest and those digests in order
    (seal,) = ChainSeal.objects.filter(chain=f"offering:{offering.pk}")
    members = sorted(SealedEntry.objects.filter(seal=seal).values_list("entry_id", flat=True))
    assert (seal.sequence, seal.previous_digest, seal.entry_count) == (1, GENESIS_DIGEST, 3)
    assert seal.digest == seal_digest(
        GENESIS_DIGEST, [(pk, expected[pk]) for pk in members], settings.LEDGER_HMAC_KEY
    )


def test_captable_as_of_accepts_any_utc_offset():
    from datetime import timedelta, timezone

    offering = offering_with_units(1_000)
    alice, bob = investors(2)
    first = issue(offering, alice, 10).effective_at
    issue(offering, bob, 20)
    # the same instant as the first issue, written in New York time (UTC-5)
    new_york = first.astimezone(timezone(timedelta(hours=-5)))
    table = captable_as_of(offering=offering, as_of=new_york)
    assert [(row.investor_id, row.quanta) for row in table.rows] == [(alice.pk, 10)]


@pytest.mark.embedded
@given(
    part=st.integers(min_value=0, max_value=10**15),
    whole=st.integers(min_value=1, max_value=10**15),
)
def test_integer_percentages_equal_the_decimal_definition(part, whole):
    from captable.selectors import _percent_places, percent_of

    assert _percent_places(part, whole) == percent_of(part, whole)

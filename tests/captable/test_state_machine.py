"""Random sequences of ledger operations against an independent model of the books.

The model is plain Python dicts updated from each operation's *parameters* (never from the
postings), and it predicts whether each operation must succeed. After every step the ledger
must agree with it and keep every invariant: per-asset postings sum to zero; no negative
balance outside external accounts; units held + treasury = units authorized; lots sum to
holdings; the cap table as of earlier instants equals the model's snapshot then (a replay);
the hash chains verify. A refused operation must change nothing.

Profiles: small on SQLite (the `embedded` run), larger on PostgreSQL, much larger in
`make stress` (HYPOTHESIS_PROFILE=stress).
"""

from __future__ import annotations

import itertools
import os
from collections import defaultdict
from datetime import datetime

import pytest
from django.db import connection
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from captable import ledger
from captable.models import Account, Entry
from captable.seals import ledger_seal_all
from captable.selectors import captable_as_of, lots_as_of
from captable.verification import INVARIANT_QUERIES, ledger_verify
from common.errors import DomainError
from tests.captable.factories import investors
from tests.offerings.factories import live_offering

INVESTORS = 3
_keys = itertools.count()


def profile(examples: int, steps: int) -> settings:
    if os.environ.get("HYPOTHESIS_PROFILE") == "stress":
        examples, steps = examples * 15, steps * 3
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        if connection.vendor == "postgresql":
            # Everything here sits in one uncommitted test transaction, so autovacuum never
            # sees it and the planner believes the ledger is empty (nested loops over
            # thousands of rows). ANALYZE reads this transaction's rows too.
            with connection.cursor() as cursor:
                cursor.execute(
                    "ANALYZE captable_posting, captable_account, captable_entry, "
                    "captable_lot, captable_sealedentry, captable_chainseal"
                )
        self.offering = live_offering()
        self.people = investors(INVESTORS)
        self.currency = self.offering.currency
        self.model: dict[str, int] = defaultdict(int)  # account key → balance
        self.effects: dict[int, dict[str, int]] = {}  # entry id → its effect on the model
        self.reversed: set[int] = set()
        self.snapshots: list[tuple[datetime, dict[int, int]]] = []
        # The external account is shared by every example: start from where it stands.
        external = ledger.external_account(self.currency)
        self.model[external.key] = external.balance

    # --- account keys (the model's names, mirroring the chart of accounts) --------------

    def holding(self, index: int) -> Account:
        return ledger.holding_account(self.offering, self.people[index])

    def treasury(self) -> Account:
        return ledger.treasury_account(self.offering)

    def operating(self) -> Account:
        return ledger.issuer_account(self.offering.issuer, "operating", self.currency)

    def escrow(self, index: int) -> Account:
        return ledger.escrow_account(self.offering, self.people[index])

    def cash(self, index: int) -> Account:
        return ledger.cash_account(self.people[index], self.currency)

    def proceeds(self) -> Account:
        return ledger.issuer_account(self.offering.issuer, "proceeds", self.currency)

    # --- running an operation against the model -----------------------------------------

    def run(self, operation, effect: dict[str, int], must_succeed: bool | None) -> None:
        entries_before = Entry.objects.count()
        try:
            entry = operation(f"sm-{next(_keys)}")
        except DomainError:
            assert must_succeed is not True, f"refused although the model allows {effect}"
            assert Entry.objects.count() == entries_before  # a refusal changes nothing
            return
        assert must_succeed is not False, f"accepted although the model refuses {effect}"
        for key, delta in effect.items():
            self.model[key] += delta
        self.effects[entry.pk] = effect
        self.snapshots.append((entry.effective_at, self.holdings_in_model()))

    def allows(self, effect: dict[str, int]) -> bool:
        negative_allowed = ("external:", "authorized:")
        return all(
            self.model[key] + delta >= 0
            for key, delta in effect.items()
            if not key.startswith(negative_allowed)
        )

    def holdings_in_model(self) -> dict[int, int]:
        return {
            person.pk: self.model[self.holding(index).key]
            for index, person in enumerate(self.people)
            if self.model[self.holding(index).key]
        }

    # --- rules ---------------------------------------------------------------------------

    @rule(quanta=st.integers(1, 500))
    def authorize(self, quanta: int) -> None:
        effect = {self.treasury().key: quanta, f"authorized:o{self.offering.pk}": -quanta}
        self.run(
            lambda key: ledger.units_authorize(
                offering=self.offering, quanta=quanta, idempotency_key=key
            ),
            effect,
            must_succeed=True,
        )

    @rule(who=st.integers(0, INVESTORS - 1), quanta=st.integers(1, 300), cost=st.integers(0, 9999))
    def issue(self, who: int, quanta: int, cost: int) -> None:
        effect = {self.treasury().key: -quanta, self.holding(who).key: quanta}
        self.run(
            lambda key: ledger.units_issue(
                offering=self.offering,
                investor=self.people[who],
                quanta=quanta,
                cost_minor=cost,
                idempotency_key=key,
            ),
            effect,
            must_succeed=self.allows(effect),
        )

    @rule(
        seller=st.integers(0, INVESTORS - 1),
        buyer=st.integers(0, INVESTORS - 1),
        quanta=st.integers(1, 300),
    )
    def transfer(self, seller: int, buyer: int, quanta: int) -> None:
        effect = {self.holding(seller).key: -quanta, self.holding(buyer).key: quanta}
        if seller == buyer:
            effect = {self.holding(seller).key: 0}
        self.run(
            lambda key: ledger.units_transfer(
                offering=self.offering,
                seller=self.people[seller],
                buyer=self.people[buyer],
                quanta=quanta,
                idempotency_key=key,
            ),
            effect,
            must_succeed=seller != buyer and self.allows(effect),
        )

    @rule(amount=st.integers(1, 50_000))
    def fund_operating(self, amount: int) -> None:
        effect = {f"external:{self.currency}": -amount, self.operating().key: amount}
        self.run(
            lambda key: ledger.cash_move(
                source=ledger.external_account(self.currency),
                destination=self.operating(),
                amount_minor=amount,
                idempotency_key=key,
            ),
            effect,
            must_succeed=True,
        )

    @rule(who=st.integers(0, INVESTORS - 1), quanta=st.integers(1, 200), price=st.integers(0, 9999))
    def redeem(self, who: int, quanta: int, price: int) -> None:
        effect = {self.holding(who).key: -quanta, self.treasury().key: quanta}
        if price:
            effect |= {self.operating().key: -price, self.cash(who).key: price}
        self.run(
            lambda key: ledger.units_redeem(
                offering=self.offering,
                investor=self.people[who],
                quanta=quanta,
                price_minor=price,
                idempotency_key=key,
            ),
            effect,
            must_succeed=self.allows(effect),
        )

    @rule(who=st.integers(0, INVESTORS - 1), amount=st.integers(1, 20_000))
    def deposit_to_escrow(self, who: int, amount: int) -> None:
        effect = {f"external:{self.currency}": -amount, self.escrow(who).key: amount}
        self.run(
            lambda key: ledger.cash_move(
                source=ledger.external_account(self.currency),
                destination=self.escrow(who),
                amount_minor=amount,
                idempotency_key=key,
            ),
            effect,
            must_succeed=True,
        )

    @rule(who=st.integers(0, INVESTORS - 1), amount=st.integers(1, 20_000))
    def release_escrow(self, who: int, amount: int) -> None:
        effect = {self.escrow(who).key: -amount, self.proceeds().key: amount}
        self.run(
            lambda key: ledger.cash_move(
                source=self.escrow(who),
                destination=self.proceeds(),
                amount_minor=amount,
                idempotency_key=key,
            ),
            effect,
            must_succeed=self.allows(effect),
        )

    @precondition(lambda self: len(self.effects) > len(self.reversed))
    @rule(data=st.data())
    def reverse(self, data: st.DataObject) -> None:
        candidates = sorted(set(self.effects) - self.reversed)
        entry_id = data.draw(st.sampled_from(candidates))
        effect = {key: -delta for key, delta in self.effects[entry_id].items()}
        entries_before = Entry.objects.count()
        try:
            reversal = ledger.entry_reverse(
                entry_id=entry_id, idempotency_key=f"sm-{next(_keys)}", reason="state machine"
            )
        except DomainError:
            # refused when the units or cash have moved on (lot or balance would go negative)
            assert Entry.objects.count() == entries_before
            assert not self.allows(effect) or self.lots_moved_on(entry_id)
            return
        for key, delta in effect.items():
            self.model[key] += delta
        self.reversed |= {entry_id, reversal.pk}
        self.snapshots.append((reversal.effective_at, self.holdings_in_model()))

    def lots_moved_on(self, entry_id: int) -> bool:
        """A reversal can also be refused because a specific lot it touches was consumed."""
        return Entry.objects.get(pk=entry_id).postings.filter(lot__isnull=False).exists()

    # --- invariants ----------------------------------------------------------------------

    @invariant()
    def books_agree_with_the_model(self) -> None:
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:  # fire the deferred balance checks now
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        balances = dict(
            Account.objects.filter(key__in=list(self.model)).values_list("key", "balance")
        )
        assert {k: v for k, v in self.model.items() if v} == {
            k: v for k, v in balances.items() if v
        }

    @invariant()
    def ledger_invariants_hold(self) -> None:
        with connection.cursor() as cursor:
            for message, sql in INVARIANT_QUERIES:
                cursor.execute(sql)
                assert cursor.fetchall() == [], message

    @invariant()
    def units_are_conserved_and_lots_sum_to_holdings(self) -> None:
        table = captable_as_of(offering=self.offering)
        assert table.issued_quanta + table.treasury_quanta == table.authorized_quanta
        for index in range(INVESTORS):
            holding = self.holding(index)
            lots = lots_as_of(holding=holding)
            assert sum(lot.quanta for lot in lots) == self.model[holding.key]
            assert all(lot.quanta > 0 for lot in lots)

    @invariant()
    def as_of_equals_replay(self) -> None:
        for moment, holdings in self.snapshots[-1::-3][:3]:  # a sample of earlier instants
            table = captable_as_of(offering=self.offering, as_of=moment)
            assert {row.investor_id: row.quanta for row in table.rows} == holdings

    @invariant()
    def chains_verify(self) -> None:
        # every step: this offering's chain (the cash chain is shared by all examples and is
        # verified whole, with everything else, when the example ends)
        ledger_seal_all()
        report = ledger_verify(chains=[f"offering:{self.offering.pk}"])
        assert report.ok, report.summary()
        assert report.unsealed_entries == 0

    def teardown(self) -> None:
        report = ledger_verify()
        assert report.ok, report.summary()


@pytest.mark.embedded
@pytest.mark.django_db
def test_ledger_state_machine_small():
    run_state_machine_as_test(LedgerMachine, settings=profile(examples=5, steps=10))


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_ledger_state_machine_postgres():
    run_state_machine_as_test(LedgerMachine, settings=profile(examples=8, steps=15))


@pytest.mark.stress
@pytest.mark.postgres_only
@pytest.mark.django_db
def test_ledger_state_machine_soak():
    # 60 sequences of 30 steps under the stress profile (x15 examples, x3 steps): the checks
    # after each step replay every earlier snapshot, so a step costs more the longer the
    # sequence; the former 100 x 40 (scaled to 1,500 x 120) never finished in `make stress`.
    run_state_machine_as_test(LedgerMachine, settings=profile(examples=4, steps=10))

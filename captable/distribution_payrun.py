"""The pay run in batches: many payouts per transaction, their entries written together by
`ledger.cash_fan_out_post` (set-based statements on PostgreSQL), for distributions to many
holders.

Same outcome, keys and rules as paying each payout alone (`distributions.payout_pay`): each
payout gets ONE entry under `distribution:{id}:payout:{investor}` with the same request, so a
run interrupted (a batch is one transaction: all of it or none) and started again — by either
path — pays nobody twice. Holders who reinvest (DRIP) are paid one by one, since their
purchase goes through the subscription checks. Locks: the batch's payout rows (by id), then
the ledger's accounts (the holders' first, the shared ones last: `ledger.LOCK_ORDER`), so the
batches run on several connections at once (`PAY_RUN_CONNECTIONS`) and wait on each other
only for the shared accounts' balance update, at the end of their last statement, and COMMIT.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from captable import ledger
from captable.distributions import (
    DistributionAccounts,
    PayoutParts,
    _locked,
    distribution_complete,
    payout_pay,
)
from captable.models import Distribution, EntryKind, Payout, ReinvestmentElection
from common.sql import fetch

BATCH_SIZE = 25_000
# Up to this many payouts a run pays them one by one (each committed as it is paid, as the
# worker-kill test watches); batching pays off only with many holders.
ONE_BY_ONE_MAX = 1_000


# PayoutParts's fields, in order.
_UNPAID_LOCKED_SQL = """
    SELECT id, investor_id, gross_minor, income_minor, return_of_capital_minor,
           withholding_minor, net_minor, promote_minor
    FROM captable_payout WHERE id = ANY(%s::bigint[]) AND paid_at IS NULL ORDER BY id FOR UPDATE
"""


@dataclass(frozen=True)
class _Batch:
    """One transaction's payouts, and their holders (read with the ids: no query per batch)."""

    payout_ids: list[int]
    investor_ids: list[int]


_PAID_SQL = """
    UPDATE captable_payout p SET entry_id = v.entry_id, paid_at = %s::timestamptz
    FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, entry_id) WHERE p.id = v.id
"""


def _json_string(text: str) -> str:
    """`text` as JSON writes it; account keys need no escaping (checked, not assumed)."""
    quoted = json.dumps(text)
    assert quoted == f'"{text}"', text
    return quoted


class _PayoutEntryShape:
    """What every payout entry of one distribution shares, and the per-payout parts written
    as text without building a request dict per payout: the request digest is the one
    `payout_batch_entry` gives to `ledger.request_digest` (same canonical JSON, tested)."""

    def __init__(self, distribution: Distribution, accounts: DistributionAccounts) -> None:
        self.distribution_id = distribution.pk
        self.currency = distribution.currency
        self.payable = _json_string(accounts.payable.key)
        self.withholding = _json_string(accounts.withholding.key)
        self.promote = _json_string(accounts.promote.key)
        self.kind = _json_string(EntryKind.CASH_MOVE)

    def key(self, payout: PayoutParts) -> str:
        return f"distribution:{self.distribution_id}:payout:{payout.investor_id}"

    def digest(self, payout: PayoutParts) -> str:
        cash = f'"cash:i{payout.investor_id}:{self.currency}"'
        promote = (
            f'"promote": {payout.promote_minor}, "promote_to": {self.promote}, '
            if payout.promote_minor
            else ""
        )
        canonical = (
            f'{{"kind": {self.kind}, "request": {{"from": {self.payable}, '
            f'"net": {payout.net_minor}, {promote}"to": {cash}, '
            f'"withholding": {payout.withholding_minor}, "withholding_to": {self.withholding}}}}}'
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    def metadata(self, payout: PayoutParts) -> str:
        return (
            f'{{"distribution_id": {self.distribution_id}, "payout_id": {payout.pk}, '
            f'"income_minor": {payout.income_minor}, '
            f'"return_of_capital_minor": {payout.return_of_capital_minor}, '
            f'"promote_minor": {payout.promote_minor}}}'
        )


def payouts_fan_out(
    payouts: Sequence[PayoutParts], distribution: Distribution, accounts: DistributionAccounts
) -> ledger.CashFanOut:
    """The payouts' entries as one fan-out: payable → each holder's cash (net), → withholding
    payable (withholding), → promote (promote); the same entries as `payout_batch_entry`."""
    shape = _PayoutEntryShape(distribution, accounts)
    sides = [
        (spec, amounts)
        for spec, amounts in (
            (accounts.withholding, [p.withholding_minor for p in payouts]),
            (accounts.promote, [p.promote_minor for p in payouts]),
        )
        if any(amounts)  # an account no payout credits is not created
    ]
    return ledger.CashFanOut(
        kind=EntryKind.CASH_MOVE,
        currency=distribution.currency,
        source=accounts.payable,
        idempotency_keys=[shape.key(p) for p in payouts],
        request_digests=[shape.digest(p) for p in payouts],
        investor_ids=[p.investor_id for p in payouts],
        to_cash=[p.net_minor for p in payouts],
        sides=sides,
        metadata_json=[shape.metadata(p) for p in payouts],
        memo=f"Distribution #{distribution.pk}: payout",
    )


def _cash_accounts_open(distribution: Distribution, batch: _Batch) -> None:
    """The batch's holders' available-cash accounts, opened (committed) before the batch pays
    them: see `ledger.cash_accounts_open`."""
    ledger.cash_accounts_open(sorted(batch.investor_ids), distribution.currency)


def _pay_batch(distribution: Distribution, payout_ids: list[int]) -> int:
    accounts = DistributionAccounts.of(distribution)
    # Statements through common.sql: server-side parameters, so 25,000-element arrays are not
    # quoted into the statement text.
    with transaction.atomic():
        ids_text = ledger.bigint_array_text(payout_ids)
        payouts = [PayoutParts(*row) for row in fetch(_UNPAID_LOCKED_SQL, [ids_text])]
        to_post = [p for p in payouts if p.gross_minor or p.promote_minor]
        now = timezone.now()
        if to_post:
            shape = _PayoutEntryShape(distribution, accounts)

            def mark_paid(keys: dict[str, int]) -> None:
                # Before the ledger locks the shared accounts: see cash_fan_out_post's `then`.
                entry_ids = [keys[shape.key(p)] for p in to_post]
                paid_ids = ledger.bigint_array_text([p.pk for p in to_post])
                fetch(_PAID_SQL, [now, paid_ids, ledger.bigint_array_text(entry_ids)])

            ledger.cash_fan_out_post(
                payouts_fan_out(to_post, distribution, accounts), then=mark_paid
            )
        zero = [p.pk for p in payouts if not (p.gross_minor or p.promote_minor)]
        if zero:
            Payout.objects.filter(pk__in=zero).update(paid_at=now)
    return len(payouts)


_CREDITED_SQL = """
    SELECT coalesce(bool_or(withholding_minor > 0), false),
           coalesce(bool_or(promote_minor > 0), false)
    FROM captable_payout WHERE distribution_id = %s AND paid_at IS NULL
"""


def _credited_accounts_open(distribution: Distribution) -> None:
    """The issuer's withholding and promote accounts, if unpaid payouts credit them, opened
    before the batches: batches opening one at once would wait on each other's insert."""
    accounts = DistributionAccounts.of(distribution)
    ((withholds, promotes),) = fetch(_CREDITED_SQL, [distribution.pk])
    for spec, credited in ((accounts.withholding, withholds), (accounts.promote, promotes)):
        if credited:
            ledger.account_open(spec)


def _open_and_pay(distribution: Distribution, batch: _Batch) -> int:
    _cash_accounts_open(distribution, batch)
    return _pay_batch(distribution, batch.payout_ids)


def _open_and_pay_on_own_connection(distribution: Distribution, batch: _Batch) -> int:
    """A pool thread's batch, on the thread's own database connection (closed after it)."""
    try:
        return _open_and_pay(distribution, batch)
    finally:
        connection.close()


def _pay_batches(distribution: Distribution, batches: list[_Batch], workers: int | None) -> int:
    """The batches, on `workers` connections at once (settings.PAY_RUN_CONNECTIONS): each batch
    is its own transaction and they share only the fixed accounts, which each locks last
    (`ledger.cash_fan_out_post`), so the database works on several at a time."""
    workers = min(workers or settings.PAY_RUN_CONNECTIONS, len(batches))
    # Inside a caller's transaction, other connections would not see its uncommitted rows.
    if workers <= 1 or connection.in_atomic_block:
        return sum(_open_and_pay(distribution, batch) for batch in batches)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pay-run") as pool:
        futures = [pool.submit(_open_and_pay_on_own_connection, distribution, b) for b in batches]
        try:
            return sum(future.result() for future in futures)
        finally:
            for future in futures:
                future.cancel()


def distribution_pay_run_batched(
    *,
    distribution_id: int,
    batch_size: int = BATCH_SIZE,
    one_by_one_max: int = ONE_BY_ONE_MAX,
    connections: int | None = None,
) -> int:
    """Pay every unpaid payout, `batch_size` per transaction (PostgreSQL, more than
    `one_by_one_max` of them; otherwise one by one; on `connections` connections at once,
    settings.PAY_RUN_CONNECTIONS by default), then complete the distribution. Returns
    how many payouts this run paid. This is the `captable.pay_distribution` task's run."""
    with transaction.atomic():
        distribution = _locked(distribution_id)  # fresh, with its offering and issuer
    reinvesting = ReinvestmentElection.objects.filter(
        offering_id=distribution.offering_id, is_enabled=True
    ).values("investor_id")
    unpaid = Payout.objects.filter(distribution_id=distribution_id, paid_at__isnull=True)
    one_by_one = list(unpaid.filter(investor_id__in=reinvesting).values_list("pk", flat=True))
    batched = list(
        unpaid.exclude(investor_id__in=reinvesting).order_by("pk").values_list("pk", "investor_id")
    )
    if connection.vendor != "postgresql" or len(batched) <= one_by_one_max:
        one_by_one, batched = one_by_one + [pk for pk, _ in batched], []
    batches = [
        _Batch([pk for pk, _ in part], [investor for _, investor in part])
        for part in (
            batched[start : start + batch_size] for start in range(0, len(batched), batch_size)
        )
    ]
    if batches:
        _credited_accounts_open(distribution)
    paid = _pay_batches(distribution, batches, connections)
    for payout_id in one_by_one:
        payout_pay(payout_id=payout_id)
        paid += 1
    distribution_complete(distribution_id=distribution_id)
    return paid

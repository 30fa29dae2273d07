"""The pay run in batches: many payouts per transaction, their entries written together by
`ledger.entries_post_batch` (COPY on PostgreSQL), for distributions to many holders.

Same outcome, keys and rules as paying each payout alone (`distributions.payout_pay`): each
payout gets ONE entry under `distribution:{id}:payout:{investor}` with the same request, so a
run interrupted (a batch is one transaction: all of it or none) and started again — by either
path — pays nobody twice. Holders who reinvest (DRIP) are paid one by one, since their
purchase goes through the subscription checks. Locks: the batch's payout rows (by id), then
the ledger's accounts.
"""

from __future__ import annotations

from django.db import connection, transaction
from django.utils import timezone

from captable import ledger
from captable.distributions import (
    PAYOUT_PARTS_FIELDS,
    DistributionAccounts,
    PayoutParts,
    _locked,
    distribution_complete,
    payout_batch_entry,
    payout_pay,
)
from captable.models import Distribution, Payout, ReinvestmentElection

BATCH_SIZE = 25_000
# Up to this many payouts a run pays them one by one (each committed as it is paid, as the
# worker-kill test watches); batching pays off only with many holders.
ONE_BY_ONE_MAX = 1_000


def _pay_batch(distribution: Distribution, payout_ids: list[int]) -> int:
    accounts = DistributionAccounts.of(distribution)
    with transaction.atomic():
        locked = (
            Payout.objects.select_for_update()
            .filter(pk__in=payout_ids, paid_at__isnull=True)
            .order_by("pk")
            .values_list(*PAYOUT_PARTS_FIELDS)
        )
        payouts = [PayoutParts(*row) for row in locked]
        to_post = [p for p in payouts if p.gross_minor or p.promote_minor]
        keys = ledger.entries_post_batch(
            [payout_batch_entry(p, distribution, accounts) for p in to_post]
        )
        entry_ids = [
            keys[f"distribution:{distribution.pk}:payout:{p.investor_id}"] for p in to_post
        ]
        now = timezone.now()
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE captable_payout p SET entry_id = v.entry_id, paid_at = %s "
                "FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, entry_id) WHERE p.id = v.id",
                [now, [p.pk for p in to_post], entry_ids],
            )
        zero = [p.pk for p in payouts if not (p.gross_minor or p.promote_minor)]
        Payout.objects.filter(pk__in=zero).update(paid_at=now)
    return len(payouts)


def distribution_pay_run_batched(
    *,
    distribution_id: int,
    batch_size: int = BATCH_SIZE,
    one_by_one_max: int = ONE_BY_ONE_MAX,
) -> int:
    """Pay every unpaid payout, `batch_size` per transaction (PostgreSQL, more than
    `one_by_one_max` of them; otherwise one by one), then complete the distribution. Returns
    how many payouts this run paid. This is the `captable.pay_distribution` task's run."""
    with transaction.atomic():
        distribution = _locked(distribution_id)  # fresh, with its offering and issuer
    reinvesting = ReinvestmentElection.objects.filter(
        offering_id=distribution.offering_id, is_enabled=True
    ).values("investor_id")
    unpaid = Payout.objects.filter(distribution_id=distribution_id, paid_at__isnull=True)
    one_by_one = list(unpaid.filter(investor_id__in=reinvesting).values_list("pk", flat=True))
    batched = list(
        unpaid.exclude(investor_id__in=reinvesting).order_by("pk").values_list("pk", flat=True)
    )
    if connection.vendor != "postgresql" or len(batched) <= one_by_one_max:
        one_by_one, batched = one_by_one + batched, []
    paid = 0
    for start in range(0, len(batched), batch_size):
        paid += _pay_batch(distribution, batched[start : start + batch_size])
    for payout_id in one_by_one:
        payout_pay(payout_id=payout_id)
        paid += 1
    distribution_complete(distribution_id=distribution_id)
    return paid

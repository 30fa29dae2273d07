"""Undoing a paid distribution, only by reversing its ledger entries, with four eyes.

One staff member prepares the reversal with a reason (`distribution_reversal_prepare`);
another approves it (`distribution_reversal_approve`), which in ONE transaction reverses,
newest first: each holder's reinvestment (the cash for the units, the issue, the
authorization — and the offering's counters shrink back), each payout entry (net, withholding
and promote go back to the payable account), then the funding (payable → operating, operating
→ external). The distribution becomes `reversed`; its payouts stay as the record of what was
paid and undone. If any account can no longer give the money back (an investor has withdrawn
it, units moved on), the ledger refuses and nothing is reversed.

Reversal keys: `distribution:{id}:reverse:{the original entry's key}`.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from captable import ledger
from captable.distributions import _locked, _transition
from captable.models import (
    DistributionReversal,
    DistributionStatus,
    Entry,
    EntryKind,
    Payout,
)
from common.auth import staff_required
from common.errors import Conflict, InvalidTransition, NotAllowed, ValidationFailed
from common.models import User
from offerings.models import Offering


def distribution_reversal_prepare(
    *, actor: User, distribution_id: int, reason: str
) -> DistributionReversal:
    """Staff prepare undoing a paid distribution; another staff member must approve it."""
    staff_required(actor)
    if not reason.strip():
        raise ValidationFailed("A reversal needs a reason.", code="reason_required")
    with transaction.atomic():
        distribution = _locked(distribution_id)
        if distribution.status != DistributionStatus.PAID:
            raise InvalidTransition(
                f"The distribution is {distribution.status}; only a paid one is reversed.",
                from_status=distribution.status,
                to_status=DistributionStatus.REVERSED,
            )
        if DistributionReversal.objects.filter(distribution=distribution).exists():
            raise Conflict(
                "A reversal of this distribution is already prepared.",
                code="reversal_already_prepared",
            )
        return DistributionReversal.objects.create(
            distribution=distribution, reason=reason.strip(), prepared_by=actor
        )


def _reinvestment_entries(distribution_id: int, investor_id: int) -> list[Entry]:
    """The holder's reinvestment entries, in the order they are undone."""
    prefix = f"distribution:{distribution_id}:drip:{investor_id}"
    keys = [f"{prefix}:cash", f"{prefix}:issue", f"{prefix}:authorize"]
    found = {
        entry.idempotency_key: entry for entry in Entry.objects.filter(idempotency_key__in=keys)
    }
    return [found[key] for key in keys if key in found]


def _funding_entries(distribution_id: int) -> list[Entry]:
    keys = [
        f"distribution:{distribution_id}:fund:payable",
        f"distribution:{distribution_id}:fund:operating",
    ]
    found = {
        entry.idempotency_key: entry for entry in Entry.objects.filter(idempotency_key__in=keys)
    }
    return [found[key] for key in keys if key in found]


def _reverse(entry: Entry, *, distribution_id: int, actor: User, reason: str) -> None:
    ledger.entry_reverse(
        entry_id=entry.pk,
        idempotency_key=f"distribution:{distribution_id}:reverse:{entry.idempotency_key}",
        actor=actor,
        reason=reason,
    )


def _entries_to_reverse(distribution_id: int) -> list[Entry]:
    entries: list[Entry] = []
    payouts = Payout.objects.filter(distribution_id=distribution_id, entry__isnull=False)
    for payout in payouts.select_related("entry").order_by("-investor_id"):
        entries += _reinvestment_entries(distribution_id, payout.investor_id)
        assert payout.entry is not None
        entries.append(payout.entry)
    return entries + _funding_entries(distribution_id)


def distribution_reversal_approve(*, actor: User, distribution_id: int) -> DistributionReversal:
    """A second staff member approves: every entry of the distribution is reversed, in one
    transaction, and the distribution becomes `reversed`."""
    staff_required(actor)
    with transaction.atomic():
        distribution = _locked(distribution_id)
        reversal = (
            DistributionReversal.objects.select_for_update()
            .filter(distribution=distribution)
            .first()
        )
        if reversal is None:
            raise Conflict("No reversal of this distribution is prepared.", code="no_reversal")
        if reversal.approved_by_id is not None:
            return reversal
        if reversal.prepared_by_id == actor.pk:
            raise NotAllowed(
                "Four eyes: a reversal is approved by someone other than who prepared it.",
                code="four_eyes",
            )
        entries = _entries_to_reverse(distribution.pk)
        reason = f"Distribution #{distribution.pk} reversed: {reversal.reason}"
        for entry in entries:
            _reverse(entry, distribution_id=distribution.pk, actor=actor, reason=reason)
        _shrink_offering_counters(distribution.offering_id, entries)
        _transition(
            distribution,
            from_statuses=(DistributionStatus.PAID,),
            to_status=DistributionStatus.REVERSED,
            actor=actor,
            reason=reason,
        )
        DistributionReversal.objects.filter(pk=reversal.pk).update(
            approved_by=actor, approved_at=timezone.now(), entries_reversed=len(entries)
        )
        reversal.refresh_from_db()
    return reversal


def _shrink_offering_counters(offering_id: int, entries: list[Entry]) -> None:
    """Reinvested units were authorized and issued; undone, the counters come back down."""
    issued = [entry for entry in entries if entry.kind == EntryKind.ISSUE]
    quanta = sum(
        posting.amount for entry in issued for posting in entry.postings.all() if posting.amount > 0
    )
    if quanta:
        Offering.objects.filter(pk=offering_id).update(
            units_authorized_quanta=F("units_authorized_quanta") - quanta,
            units_issued_quanta=F("units_issued_quanta") - quanta,
        )

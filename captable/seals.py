"""Tamper evidence: committed entries sealed in batches into hash chains.

A chain per offering (every entry that moves its units) and one per currency (cash-only
entries). Sealing runs after commit, outside the posting transaction, so ledger writes never
queue behind a chain head. Each seal stores, per entry, the SHA-256 of the entry's canonical
content (ids, kinds, times, amounts — never names or memos) and an HMAC, keyed by
LEDGER_HMAC_KEY, over the previous seal's digest and those entry digests. Changing a row
changes its entry digest; rewriting the digests needs the key.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Prefetch

from captable.models import ChainSeal, Entry, Lot, Posting, SealedEntry

logger = logging.getLogger(__name__)

GENESIS_DIGEST = "0" * 64
SEAL_BATCH_SIZE = 1_000


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def entry_canonical(entry: Entry, postings: Iterable[Posting], lots: Iterable[Lot]) -> str:
    lines = [
        f"e|{entry.pk}|{entry.kind}|{_time(entry.effective_at)}|{entry.reverses_id or '-'}|"
        f"{entry.request_digest}|{entry.chain}"
    ]
    lines += [
        f"p|{p.pk}|{p.account_id}|{p.asset}|{p.amount}|{p.cost_minor}|{p.lot_id or '-'}|"
        f"{_time(p.effective_at)}"
        for p in sorted(postings, key=lambda posting: posting.pk)
    ]
    lines += [
        f"l|{lot.pk}|{lot.holding_id}|{_time(lot.issued_at)}|{lot.origin_lot_id or '-'}|"
        f"{lot.quanta_acquired}|{lot.cost_minor_acquired}"
        for lot in sorted(lots, key=lambda lot: lot.pk)
    ]
    return "\n".join(lines)


def entry_digest(entry: Entry, postings: Iterable[Posting], lots: Iterable[Lot]) -> str:
    return hashlib.sha256(entry_canonical(entry, postings, lots).encode()).hexdigest()


def seal_digest(previous_digest: str, entry_digests: Sequence[tuple[int, str]], key: str) -> str:
    message = previous_digest + "".join(
        f"\n{entry_id}:{digest}" for entry_id, digest in entry_digests
    )
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


def entries_with_content(queryset: Iterable[Entry]) -> list[Entry]:
    return list(
        Entry.objects.filter(pk__in=[entry.pk for entry in queryset])
        .prefetch_related(
            Prefetch("postings", queryset=Posting.objects.order_by("pk")),
            Prefetch("lots_opened", queryset=Lot.objects.order_by("pk")),
        )
        .order_by("pk")
    )


def _lock_chain(chain: str) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"ledger-chain:{chain}"])
    # SQLite: BEGIN IMMEDIATE already serializes writers.


def chain_seal_pending(*, chain: str, batch_size: int = SEAL_BATCH_SIZE) -> int:
    """Seal the chain's committed, unsealed entries (oldest first); returns how many."""
    sealed = 0
    while True:
        with transaction.atomic():
            _lock_chain(chain)
            pending = Entry.objects.filter(chain=chain, sealedentry__isnull=True).order_by("pk")[
                :batch_size
            ]
            entries = entries_with_content(pending)
            if not entries:
                return sealed
            head = ChainSeal.objects.filter(chain=chain).order_by("-sequence").first()
            digests = [
                (e.pk, entry_digest(e, e.postings.all(), e.lots_opened.all())) for e in entries
            ]
            previous = head.digest if head else GENESIS_DIGEST
            seal = ChainSeal.objects.create(
                chain=chain,
                sequence=(head.sequence + 1) if head else 1,
                previous_digest=previous,
                digest=seal_digest(previous, digests, settings.LEDGER_HMAC_KEY),
                entry_count=len(entries),
            )
            SealedEntry.objects.bulk_create(
                SealedEntry(entry_id=entry_id, seal=seal, entry_digest=digest)
                for entry_id, digest in digests
            )
            sealed += len(entries)
        if len(entries) < batch_size:
            return sealed  # a short batch took everything pending: no second transaction


def ledger_seal_all() -> int:
    """Seal every chain's pending entries (the periodic backstop for after-commit sealing)."""
    chains = (
        Entry.objects.filter(sealedentry__isnull=True)
        .order_by()
        .values_list("chain", flat=True)
        .distinct()
    )
    return sum(chain_seal_pending(chain=chain) for chain in list(chains))

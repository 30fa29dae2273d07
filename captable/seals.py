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

from captable.models import ChainSeal, Entry, Lot, Posting, SealedEntry, UnsealedEntry

logger = logging.getLogger(__name__)

GENESIS_DIGEST = "0" * 64
SEAL_BATCH_SIZE = 1_000


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _entry_line(
    entry_id: int,
    kind: str,
    effective_at: datetime,
    reverses_id: int | None,
    request_digest: str,
    chain: str,
) -> str:
    return (
        f"e|{entry_id}|{kind}|{_time(effective_at)}|{reverses_id or '-'}|{request_digest}|{chain}"
    )


def _posting_line(
    posting_id: int,
    account_id: int,
    asset: str,
    amount: int,
    cost_minor: int,
    lot_id: int | None,
    effective_at: datetime,
) -> str:
    return (
        f"p|{posting_id}|{account_id}|{asset}|{amount}|{cost_minor}|{lot_id or '-'}|"
        f"{_time(effective_at)}"
    )


def _lot_line(
    lot_id: int,
    holding_id: int,
    issued_at: datetime,
    origin_lot_id: int | None,
    quanta_acquired: int,
    cost_minor_acquired: int,
) -> str:
    return (
        f"l|{lot_id}|{holding_id}|{_time(issued_at)}|{origin_lot_id or '-'}|{quanta_acquired}|"
        f"{cost_minor_acquired}"
    )


_ENTRY_COLUMNS = ("id", "kind", "effective_at", "reverses_id", "request_digest", "chain")
_POSTING_COLUMNS = (
    "id", "account_id", "asset", "amount", "cost_minor", "lot_id", "effective_at"
)  # fmt: skip
_LOT_COLUMNS = (
    "id", "holding_id", "issued_at", "origin_lot_id", "quanta_acquired", "cost_minor_acquired"
)  # fmt: skip


def entry_canonical(entry: Entry, postings: Iterable[Posting], lots: Iterable[Lot]) -> str:
    """The sealed text of one entry: ids, kinds, times and amounts, never names or memos."""
    lines = [_entry_line(*(getattr(entry, c) for c in ("pk", *_ENTRY_COLUMNS[1:])))]
    lines += [
        _posting_line(*(getattr(p, c) for c in ("pk", *_POSTING_COLUMNS[1:])))
        for p in sorted(postings, key=lambda posting: posting.pk)
    ]
    lines += [
        _lot_line(*(getattr(lot, c) for c in ("pk", *_LOT_COLUMNS[1:])))
        for lot in sorted(lots, key=lambda lot: lot.pk)
    ]
    return "\n".join(lines)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def entry_digest(entry: Entry, postings: Iterable[Posting], lots: Iterable[Lot]) -> str:
    return _sha256(entry_canonical(entry, postings, lots))


def content_digests(entry_ids: Sequence[int]) -> dict[int, str]:
    """The digest of each entry's canonical content as the rows stand now, read as plain rows
    (three queries, no model objects): what sealing and verification both compute."""
    lines: dict[int, list[str]] = {}
    for row in Entry.objects.filter(pk__in=entry_ids).order_by("pk").values_list(*_ENTRY_COLUMNS):
        lines[row[0]] = [_entry_line(*row)]
    postings = Posting.objects.filter(entry_id__in=entry_ids).order_by("pk")
    for entry_id, *row in postings.values_list("entry_id", *_POSTING_COLUMNS):
        lines[entry_id].append(_posting_line(*row))
    lots = Lot.objects.filter(acquired_by_id__in=entry_ids).order_by("pk")
    for entry_id, *row in lots.values_list("acquired_by_id", *_LOT_COLUMNS):
        lines[entry_id].append(_lot_line(*row))
    return {entry_id: _sha256("\n".join(text)) for entry_id, text in lines.items()}


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
    """Seal the chain's committed, unsealed entries (oldest first); returns how many. The
    queue rows of the sealed entries go in the same transaction as their seal."""
    sealed = 0
    while True:
        with transaction.atomic():
            _lock_chain(chain)
            pending = list(
                UnsealedEntry.objects.filter(chain=chain)
                .order_by("entry_id")
                .values_list("entry_id", flat=True)[:batch_size]
            )
            if not pending:
                return sealed
            current = content_digests(pending)
            digests = [(entry_id, current[entry_id]) for entry_id in pending]
            head = ChainSeal.objects.filter(chain=chain).order_by("-sequence").first()
            previous = head.digest if head else GENESIS_DIGEST
            seal = ChainSeal.objects.create(
                chain=chain,
                sequence=(head.sequence + 1) if head else 1,
                previous_digest=previous,
                digest=seal_digest(previous, digests, settings.LEDGER_HMAC_KEY),
                entry_count=len(digests),
            )
            SealedEntry.objects.bulk_create(
                SealedEntry(entry_id=entry_id, seal=seal, entry_digest=digest)
                for entry_id, digest in digests
            )
            UnsealedEntry.objects.filter(entry_id__in=pending).delete()
            sealed += len(digests)
        if len(digests) < batch_size:
            return sealed  # a short batch took everything pending: no second transaction


def ledger_seal_all() -> int:
    """Seal every chain's pending entries (beat runs this every LEDGER_SEAL_INTERVAL_SECONDS;
    without a broker each commit seals its own chain)."""
    chains = UnsealedEntry.objects.order_by().values_list("chain", flat=True).distinct()
    return sum(chain_seal_pending(chain=chain) for chain in list(chains))

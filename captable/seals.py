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
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Prefetch
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from captable.models import Entry, Lot, Posting, UnsealedEntry

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
    (three hand-written queries, no model objects or query building: sealing runs this for
    every batch): what sealing and verification both compute."""
    if not entry_ids:
        return {}
    lines: dict[int, list[str]] = {}
    for entry_id, kind, effective_at, reverses_id, digest, chain in _rows(
        _ENTRY_ROWS_SQL, entry_ids
    ):
        line = _entry_line(entry_id, kind, _moment(effective_at), reverses_id, digest, chain)
        lines[entry_id] = [line]
    for entry_id, posting_id, account_id, asset, amount, cost, lot_id, moment in _rows(
        _POSTING_ROWS_SQL, entry_ids
    ):
        line = _posting_line(posting_id, account_id, asset, amount, cost, lot_id, _moment(moment))
        lines[entry_id].append(line)
    for entry_id, lot_id, holding_id, issued_at, origin_id, quanta, lot_cost in _rows(
        _LOT_ROWS_SQL, entry_ids
    ):
        line = _lot_line(lot_id, holding_id, _moment(issued_at), origin_id, quanta, lot_cost)
        lines[entry_id].append(line)
    return {entry_id: _sha256("\n".join(text)) for entry_id, text in lines.items()}


# The columns of _ENTRY_COLUMNS, _POSTING_COLUMNS and _LOT_COLUMNS, after the entry id; only
# the ids' placeholders are filled in.
_ENTRY_ROWS_SQL = """
    SELECT id, kind, effective_at, reverses_id, request_digest, chain
    FROM captable_entry WHERE id IN ({ids}) ORDER BY id
"""
_POSTING_ROWS_SQL = """
    SELECT entry_id, id, account_id, asset, amount, cost_minor, lot_id, effective_at
    FROM captable_posting WHERE entry_id IN ({ids}) ORDER BY id
"""
_LOT_ROWS_SQL = """
    SELECT acquired_by_id, id, holding_id, issued_at, origin_lot_id, quanta_acquired,
           cost_minor_acquired
    FROM captable_lot WHERE acquired_by_id IN ({ids}) ORDER BY id
"""


def _rows(sql: str, ids: Sequence[int]) -> list[tuple[Any, ...]]:
    """Rows of one of the queries above for these ids (only placeholders are interpolated)."""
    with connection.cursor() as cursor:
        cursor.execute(sql.format(ids=", ".join(["%s"] * len(ids))), list(ids))
        return cursor.fetchall()


def _moment(value: datetime | str) -> datetime:
    """A timestamp read by hand-written SQL: PostgreSQL gives an aware datetime; SQLite gives
    text (or a naive datetime) in UTC, as Django stores it."""
    moment = parse_datetime(value) if isinstance(value, str) else value
    if moment is None:
        raise ValueError(f"not a timestamp: {value!r}")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


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
    queue rows of the sealed entries go in the same transaction as their seal. Plain SQL
    statements: the benchmark of ledger transfers counts this work in every entry's cost."""
    sealed = 0
    while True:
        with transaction.atomic():
            _lock_chain(chain)
            pending = [row[0] for row in _query(_PENDING_SQL, [chain, batch_size])]
            if not pending:
                return sealed
            current = content_digests(pending)
            digests = [(entry_id, current[entry_id]) for entry_id in pending]
            head = _query(_HEAD_SQL, [chain])
            sequence, previous = (head[0][0] + 1, head[0][1]) if head else (1, GENESIS_DIGEST)
            digest = seal_digest(previous, digests, settings.LEDGER_HMAC_KEY)
            seal_id = _query(
                _INSERT_SEAL_SQL,
                [chain, sequence, previous, digest, len(digests), timezone.now()],
            )[0][0]
            with connection.cursor() as cursor:
                cursor.execute(
                    _INSERT_SEALED_SQL.format(rows=", ".join(["(%s, %s, %s)"] * len(digests))),
                    [value for pair in digests for value in (pair[0], seal_id, pair[1])],
                )
                cursor.execute(
                    _DELETE_QUEUED_SQL.format(ids=", ".join(["%s"] * len(pending))), pending
                )
            sealed += len(digests)
        if len(digests) < batch_size:
            return sealed  # a short batch took everything pending: no second transaction


_PENDING_SQL = (
    "SELECT entry_id FROM captable_unsealedentry WHERE chain = %s ORDER BY entry_id LIMIT %s"
)
_HEAD_SQL = (
    "SELECT sequence, digest FROM captable_chainseal WHERE chain = %s "
    "ORDER BY sequence DESC LIMIT 1"
)
_INSERT_SEAL_SQL = (
    "INSERT INTO captable_chainseal "
    "(chain, sequence, previous_digest, digest, entry_count, sealed_at) "
    "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id"
)
_INSERT_SEALED_SQL = (
    "INSERT INTO captable_sealedentry (entry_id, seal_id, entry_digest) VALUES {rows}"
)
_DELETE_QUEUED_SQL = "DELETE FROM captable_unsealedentry WHERE entry_id IN ({ids})"


def _query(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def ledger_seal_all() -> int:
    """Seal every chain's pending entries (beat runs this every LEDGER_SEAL_INTERVAL_SECONDS;
    without a broker each commit seals its own chain)."""
    chains = UnsealedEntry.objects.order_by().values_list("chain", flat=True).distinct()
    return sum(chain_seal_pending(chain=chain) for chain in list(chains))

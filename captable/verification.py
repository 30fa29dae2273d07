"""`verify_ledger`: recompute every hash chain and re-check every invariant from the rows.

Read-only. Each check runs in SQL over the whole ledger (or walks the chains) and reports
problems with the first bad entry it can name; `LedgerReport.ok` is False on any problem.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection

from captable.models import ChainSeal, Entry, SealedEntry
from captable.seals import GENESIS_DIGEST, content_digests, seal_digest


@dataclass
class LedgerReport:
    entries: int = 0
    postings: int = 0
    chains: int = 0
    seals: int = 0
    unsealed_entries: int = 0
    problems: list[str] = field(default_factory=list)
    first_bad_entry_id: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, message: str, entry_id: int | None = None) -> None:
        self.problems.append(message)
        if entry_id is not None and (
            self.first_bad_entry_id is None or entry_id < self.first_bad_entry_id
        ):
            self.first_bad_entry_id = entry_id

    def summary(self) -> str:
        verdict = "OK" if self.ok else f"{len(self.problems)} PROBLEM(S)"
        lines = [
            f"ledger: {self.entries} entries, {self.postings} postings, {self.chains} chains, "
            f"{self.seals} seals, {self.unsealed_entries} entries awaiting their seal: {verdict}"
        ]
        if self.first_bad_entry_id is not None:
            lines.append(f"first bad entry: #{self.first_bad_entry_id}")
        lines += [f"  - {problem}" for problem in self.problems]
        return "\n".join(lines)


def _rows(sql: str) -> list[tuple[object, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return list(cursor.fetchall())


CONTENT_BATCH = 2_000


def _current_digests(entry_ids: list[int]) -> dict[int, str]:
    """SHA-256 of each entry's canonical content as the rows stand now (batched queries)."""
    digests: dict[int, str] = {}
    for start in range(0, len(entry_ids), CONTENT_BATCH):
        digests.update(content_digests(entry_ids[start : start + CONTENT_BATCH]))
    return digests


def _check_chains(report: LedgerReport, chains: Collection[str] | None) -> None:
    key = settings.LEDGER_HMAC_KEY
    seals = ChainSeal.objects.order_by("chain", "sequence")
    sealed = SealedEntry.objects.order_by("entry_id")
    if chains is not None:
        seals = seals.filter(chain__in=chains)
        sealed = sealed.filter(seal__chain__in=chains)
    members: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for seal_id, entry_id, digest in sealed.values_list("seal_id", "entry_id", "entry_digest"):
        members[seal_id].append((entry_id, digest))
    current = _current_digests(sorted(entry_id for m in members.values() for entry_id, _ in m))
    previous_by_chain: dict[str, tuple[int, str]] = {}
    for seal in seals:
        report.seals += 1
        if seal.chain not in previous_by_chain:
            report.chains += 1
        sequence, previous = previous_by_chain.get(seal.chain, (0, GENESIS_DIGEST))
        if seal.sequence != sequence + 1 or seal.previous_digest != previous:
            report.problem(f"chain {seal.chain}: seal #{seal.sequence} is out of sequence")
        stored = members.get(seal.pk, [])
        if seal_digest(seal.previous_digest, stored, key) != seal.digest:
            report.problem(
                f"chain {seal.chain}: seal #{seal.sequence} does not verify with the key "
                "(its entry digests were rewritten)",
                stored[0][0] if stored else None,
            )
        for entry_id, digest in stored:
            if entry_id not in current:
                report.problem(f"chain {seal.chain}: sealed entry #{entry_id} is gone", entry_id)
            elif current[entry_id] != digest:
                report.problem(
                    f"chain {seal.chain}: entry #{entry_id} changed after it was sealed", entry_id
                )
        previous_by_chain[seal.chain] = (seal.sequence, seal.digest)


INVARIANT_QUERIES: tuple[tuple[str, str], ...] = (
    (
        "entry #{0} is unbalanced: {1} sums to {2}",
        """SELECT entry_id, asset, SUM(amount) FROM captable_posting
           GROUP BY entry_id, asset HAVING SUM(amount) <> 0 ORDER BY entry_id""",
    ),
    (
        "entry #{0} has no postings",
        """SELECT e.id FROM captable_entry e
           WHERE NOT EXISTS (SELECT 1 FROM captable_posting p WHERE p.entry_id = e.id)
           ORDER BY e.id""",
    ),
    (
        "account {1} balance {2} differs from its postings {3} (last entry #{0})",
        """SELECT MAX(p.entry_id), a.key, a.balance, COALESCE(SUM(p.amount), 0)
           FROM captable_account a LEFT JOIN captable_posting p ON p.account_id = a.id
           GROUP BY a.id, a.key, a.balance HAVING a.balance <> COALESCE(SUM(p.amount), 0)""",
    ),
    (
        "account {1} is negative ({2}) (last entry #{0})",
        """SELECT MAX(p.entry_id), a.key, SUM(p.amount)
           FROM captable_account a JOIN captable_posting p ON p.account_id = a.id
           WHERE NOT a.allows_negative GROUP BY a.id, a.key HAVING SUM(p.amount) < 0""",
    ),
    (
        "lot {1} is negative ({2}) (last entry #{0})",
        """SELECT MAX(entry_id), lot_id, SUM(amount) FROM captable_posting
           WHERE lot_id IS NOT NULL GROUP BY lot_id HAVING SUM(amount) < 0""",
    ),
    (
        "posting of entry #{0} on lot {1} is not on the lot's holding",
        """SELECT p.entry_id, p.lot_id FROM captable_posting p
           JOIN captable_lot l ON l.id = p.lot_id WHERE l.holding_id <> p.account_id""",
    ),
    (
        "posting of entry #{0} on holding {1} names no lot",
        """SELECT p.entry_id, a.key FROM captable_posting p
           JOIN captable_account a ON a.id = p.account_id
           WHERE a.kind = 'holding' AND p.lot_id IS NULL""",
    ),
    (
        "offering asset {1}: held + treasury = {2} but authorized = {3} (last entry #{0})",
        """SELECT MAX(p.entry_id), p.asset,
                  SUM(CASE WHEN a.kind IN ('holding', 'treasury') THEN p.amount ELSE 0 END),
                  -SUM(CASE WHEN a.kind = 'authorized' THEN p.amount ELSE 0 END)
           FROM captable_posting p JOIN captable_account a ON a.id = p.account_id
           WHERE p.asset LIKE 'units:%' GROUP BY p.asset
           HAVING SUM(CASE WHEN a.kind IN ('holding', 'treasury') THEN p.amount ELSE 0 END)
               <> -SUM(CASE WHEN a.kind = 'authorized' THEN p.amount ELSE 0 END)""",
    ),
    (
        "entry #{0} is neither sealed nor queued for sealing",
        """SELECT e.id FROM captable_entry e
           WHERE NOT EXISTS (SELECT 1 FROM captable_sealedentry s WHERE s.entry_id = e.id)
             AND NOT EXISTS (SELECT 1 FROM captable_unsealedentry q WHERE q.entry_id = e.id)
           ORDER BY e.id""",
    ),
)


def _check_invariants(report: LedgerReport) -> None:
    for message, sql in INVARIANT_QUERIES:
        for row in _rows(sql):
            first = row[0]
            report.problem(message.format(*row), first if isinstance(first, int) else None)


def ledger_verify(*, chains: Collection[str] | None = None) -> LedgerReport:
    """Check every invariant, and every hash chain (or only `chains`)."""
    report = LedgerReport()
    report.entries = Entry.objects.count()
    report.postings = _rows("SELECT COUNT(*) FROM captable_posting")[0][0]  # type: ignore[assignment]
    report.unsealed_entries = Entry.objects.filter(sealedentry__isnull=True).count()
    _check_invariants(report)
    _check_chains(report, chains)
    return report

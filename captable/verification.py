"""`verify_ledger`: recompute every hash chain and re-check every invariant from the rows.

Read-only. Each check runs in SQL over the whole ledger (or walks the chains) and reports
problems with the first bad entry it can name; `LedgerReport.ok` is False on any problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection

from captable.models import ChainSeal, Entry, SealedEntry
from captable.seals import GENESIS_DIGEST, entries_with_content, entry_digest, seal_digest


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


def _check_chains(report: LedgerReport) -> None:
    key = settings.LEDGER_HMAC_KEY
    chains = ChainSeal.objects.order_by().values_list("chain", flat=True).distinct()
    for chain in sorted(chains):
        report.chains += 1
        previous = GENESIS_DIGEST
        for expected_sequence, seal in enumerate(
            ChainSeal.objects.filter(chain=chain).order_by("sequence"), start=1
        ):
            report.seals += 1
            members = list(SealedEntry.objects.filter(seal=seal).order_by("entry_id"))
            if seal.sequence != expected_sequence or seal.previous_digest != previous:
                report.problem(f"chain {chain}: seal #{seal.sequence} is out of sequence")
            stored = [(member.entry_id, member.entry_digest) for member in members]
            if seal_digest(seal.previous_digest, stored, key) != seal.digest:
                first = stored[0][0] if stored else None
                report.problem(
                    f"chain {chain}: seal #{seal.sequence} does not verify with the key "
                    "(its entry digests were rewritten)",
                    first,
                )
            by_id = {member.entry_id: member.entry_digest for member in members}
            for entry in entries_with_content(Entry(pk=entry_id) for entry_id in by_id):
                actual = entry_digest(entry, entry.postings.all(), entry.lots_opened.all())
                if actual != by_id[entry.pk]:
                    report.problem(
                        f"chain {chain}: entry #{entry.pk} changed after it was sealed", entry.pk
                    )
            missing = set(by_id) - {
                entry.pk for entry in entries_with_content(Entry(pk=i) for i in by_id)
            }
            for entry_id in sorted(missing):
                report.problem(f"chain {chain}: sealed entry #{entry_id} is gone", entry_id)
            previous = seal.digest


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
)


def _check_invariants(report: LedgerReport) -> None:
    for message, sql in INVARIANT_QUERIES:
        for row in _rows(sql):
            first = row[0]
            report.problem(message.format(*row), first if isinstance(first, int) else None)


def ledger_verify() -> LedgerReport:
    report = LedgerReport()
    report.entries = Entry.objects.count()
    report.postings = _rows("SELECT COUNT(*) FROM captable_posting")[0][0]  # type: ignore[assignment]
    report.unsealed_entries = Entry.objects.filter(sealedentry__isnull=True).count()
    _check_invariants(report)
    _check_chains(report)
    return report

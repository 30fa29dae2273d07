"""Posting transfers: entries per second on PostgreSQL, Brickbook's ledger vs django-hordak.

Both run in this one process, on the same scratch database (migrated with
benchmarks.settings_hordak, which adds hordak's apps), in alternating rounds so that drift of
the machine hits both alike. Each transfer is its own transaction, as production runs it.

- Brickbook: `captable.ledger.units_transfer` between holdings of one offering (100
  investors, each with an issued lot and a funded cash account), pairs of investors trading
  back and forth so lots and balances change every time. Every call, as production runs it
  outside a caller's transaction: one prepared read of both holdings with the seller's open
  lots (same snapshot as the holdings' versions), FIFO lots and every rule checked in Python,
  then one prepared, autocommitted statement that locks both holdings in primary-key order,
  refuses to write if a debited holding's version moved (then reads again), and inserts the
  entry (idempotency key: ON CONFLICT DO NOTHING), its lot and its postings; triggers check
  the postings against accounts, entry and lots, refuse a negative lot or balance, maintain
  the balances, queue the entry for sealing, and a deferred trigger checks the entry balances
  at COMMIT. Sealing runs as in production with a broker:
  not on the commit path but in batches (beat, every LEDGER_SEAL_INTERVAL_SECONDS); here every
  SEAL_EVERY transfers the benchmark seals the chain itself, and that time counts in
  Brickbook's figure, so every measured entry is also sealed into its offering's HMAC chain.
- hordak: `Account.transfer_to` (one Transaction, a credit and a debit Leg, in its own
  transaction) between 100 equivalent asset accounts funded from an equity account. hordak
  enforces debit/credit sign and exclusivity and a leg currency the account accepts (row
  triggers) and legs summing to zero per currency (deferred trigger at COMMIT); it keeps no
  balance, takes no lock, has no idempotency key, lots or seals.

Figure: Brickbook entries/s; reference: hordak transactions/s; goal ratio ≥ 1.0.
`--diagnose` adds statements and COMMIT time per transfer, trigger-function time
(track_functions), the share of batch sealing, a pyinstrument profile and the plan of
sealing's pending-entries query. `--fragmented` rotates buyers instead of pairs, which splits
lots (many postings per entry). BENCH_TRANSFERS sets transfers per side (default 600).
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import django_in_process, scratch_database, verdict

INVESTORS = 100
TRANSFERS = int(os.environ.get("BENCH_TRANSFERS", "600"))  # per side
ROUNDS = 4
WARM_UP = 50
QUANTA_PER_LOT = 1_000_000
PRICE_PER_QUANTUM_MINOR = 5
GOAL = 1.0
SEAL_EVERY = 50  # transfers between two seal batches (≈ the beat interval at this rate)
FRAGMENTED = "--fragmented" in sys.argv

ENFORCED = {
    "brickbook": "idempotency key, row locks in id order with a version check, FIFO lots, "
    "no negative balance or lot (Python and triggers), balances by trigger, balanced entry "
    "(deferred trigger), append-only rows, HMAC chain seal in batches (timed)",
    "hordak": "legs sum to zero per currency (deferred trigger), debit/credit positive and "
    "exclusive, leg currency accepted by the account",
}


def transfer_plan(number: int) -> tuple[int, int, int]:
    """(seller, buyer, quanta) of transfer `number`: pairs of investors (2p, 2p+1) in turn,
    each pair trading the same 7 to 29 quanta there and back. Balances and lots change every
    time: the buyer gets a new lot that keeps the seller's issue date, and FIFO then sells that
    older lot first, so each transfer takes one lot (two postings, one new lot), the common
    case. (Rotating buyers instead fragments lots and multiplies postings per entry: see the
    --fragmented option.)"""
    if FRAGMENTED:
        seller = number % INVESTORS
        offset = 1 + (number // INVESTORS) % (INVESTORS - 1)
        return seller, (seller + offset) % INVESTORS, 7 + number % 23
    pair = (number // 2) % (INVESTORS // 2)
    first, second = 2 * pair, 2 * pair + 1
    quanta = 7 + (number // 2) % 23
    return (first, second, quanta) if number % 2 == 0 else (second, first, quanta)


class Brickbook:
    def __init__(self) -> None:
        from django.utils import timezone

        from benchmarks.seed import seed_live_offerings
        from captable import ledger
        from captable.seals import chain_seal_pending
        from common.models import User
        from investors.models import Investor
        from offerings.models import Offering

        self.ledger = ledger
        self.seal = chain_seal_pending
        self.transfers = 0
        seed_live_offerings(count=1)
        self.offering = Offering.objects.get()
        ledger.units_authorize(
            offering=self.offering,
            quanta=INVESTORS * QUANTA_PER_LOT,
            idempotency_key="bench-authorize",
        )
        external = ledger.external_account("USD")
        self.investors = []
        for number in range(INVESTORS):
            user = User.objects.create_user(
                username=f"bench-holder{number}@example.com",
                email=f"bench-holder{number}@example.com",
            )
            self.investors.append(
                Investor.objects.create(
                    user=user,
                    legal_name=f"Holder {number}",
                    country="US",
                    us_state="NY",
                    kyc_status="approved",
                    kyc_decided_at=timezone.now(),
                )
            )
        for investor in self.investors:
            ledger.units_issue(
                offering=self.offering,
                investor=investor,
                quanta=QUANTA_PER_LOT,
                cost_minor=QUANTA_PER_LOT * PRICE_PER_QUANTUM_MINOR,
                idempotency_key=f"bench-issue-{investor.pk}",
            )
        for investor in self.investors:
            ledger.cash_move(
                source=external,
                destination=ledger.cash_account(investor, "USD"),
                amount_minor=100_000_00,
                idempotency_key=f"bench-cash-{investor.pk}",
            )

    def transfer(self, number: int) -> None:
        seller, buyer, quanta = transfer_plan(number)
        self.ledger.units_transfer(
            offering=self.offering,
            seller=self.investors[seller],
            buyer=self.investors[buyer],
            quanta=quanta,
            idempotency_key=f"bench-transfer-{number}",
        )
        self.transfers += 1
        if self.transfers % SEAL_EVERY == 0:
            self.seal(chain=f"offering:{self.offering.pk}")

    def check(self) -> str:
        """Conservation, balances = postings, every entry sealed; returns a summary."""
        from django.db.models import Sum

        from captable.models import Account, Entry, Posting, SealedEntry, units_asset
        from captable.seals import ledger_seal_all

        ledger_seal_all()  # the last partial batch and the setup's cash entries, untimed
        asset = units_asset(self.offering.pk)
        holdings = Account.objects.filter(asset=asset, kind="holding")
        held = holdings.aggregate(total=Sum("balance"))["total"]
        assert held == INVESTORS * QUANTA_PER_LOT, held
        for account in holdings:
            posted = Posting.objects.filter(account=account).aggregate(total=Sum("amount"))
            assert posted["total"] == account.balance, account.key
        entries = Entry.objects.filter(kind="transfer").count()
        assert entries == self.transfers, entries
        unsealed = Entry.objects.filter(sealedentry__isnull=True).count()
        assert unsealed == 0, f"{unsealed} entries left unsealed"
        postings = Posting.objects.filter(entry__kind="transfer").count()
        assert SealedEntry.objects.count() == Entry.objects.count()
        return f"{entries} transfer entries, {postings} postings, all sealed, units conserved"

    def transfer_postings(self) -> int:
        from captable.models import Posting

        return Posting.objects.filter(entry__kind="transfer").count()


class Hordak:
    def __init__(self) -> None:
        from hordak.models import Account, AccountType
        from moneyed import Money

        self.money = Money
        self.transfers = 0
        issuer = Account.objects.create(
            name="Bench issuer equity", type=AccountType.equity, currencies=["USD"]
        )
        self.accounts = [
            Account.objects.create(
                name=f"Holder {number}", type=AccountType.asset, currencies=["USD"]
            )
            for number in range(INVESTORS)
        ]
        for account in self.accounts:
            issuer.transfer_to(account, Money(QUANTA_PER_LOT, "USD"))

    def transfer(self, number: int) -> None:
        seller, buyer, quanta = transfer_plan(number)
        self.accounts[seller].transfer_to(
            self.accounts[buyer],
            self.money(quanta, "USD"),
            description=f"bench-transfer-{number}",
        )
        self.transfers += 1

    def check(self) -> str:
        from hordak.models import Leg, Transaction

        count = Transaction.objects.filter(description__startswith="bench-transfer-").count()
        assert count == self.transfers, count
        total = sum(account.get_balance()["USD"].amount for account in self.accounts)
        assert total == INVESTORS * QUANTA_PER_LOT, total
        legs = Leg.objects.filter(transaction__description__startswith="bench-transfer-").count()
        return f"{count} transactions, {legs} legs, amounts conserved"


def backend_cpu_seconds() -> float | None:
    """CPU seconds used so far by this connection's PostgreSQL backend (user + system, from
    /proc), or None when the server is not on this machine or /proc is not readable."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_rounds(
    sides: Mapping[str, Callable[[int], None]], start: int
) -> tuple[dict[str, float], dict[str, float | None]]:
    """Run TRANSFERS per side in ROUNDS alternating blocks; return seconds per side, and CPU
    seconds per side (this process plus its database backend; None if the backend's CPU
    cannot be read). On a shared machine wall time carries the other processes' load; CPU
    time much less so."""
    seconds = dict.fromkeys(sides, 0.0)
    cpu: dict[str, float | None] = dict.fromkeys(sides, 0.0)
    per_round = TRANSFERS // ROUNDS
    for round_number in range(ROUNDS):
        first = start + round_number * per_round
        order = list(sides) if round_number % 2 == 0 else list(sides)[::-1]
        for name in order:
            transfer = sides[name]
            backend_before = backend_cpu_seconds()
            process_before = time.process_time()
            began = time.perf_counter()
            for number in range(first, first + per_round):
                transfer(number)
            seconds[name] += time.perf_counter() - began
            process = time.process_time() - process_before
            backend_after = backend_cpu_seconds()
            spent = cpu[name]
            if spent is None or backend_before is None or backend_after is None:
                cpu[name] = None
            else:
                cpu[name] = spent + process + backend_after - backend_before
    return seconds, cpu


def query_profile(
    transfer: Callable[[int], None], numbers: range
) -> tuple[list[tuple[str, int, float]], int, float]:
    """(SQL shape, how many, seconds) over the transfers `numbers`, slowest first; and the
    COMMITs (count, seconds: deferred triggers run there)."""
    from django.db import connection, connections

    spent: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    commits = [0, 0.0]

    def timer(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            shape = re.sub(r'"s\d+_x\d+"', '"…"', re.sub(r"\s+", " ", sql))
            spent[shape][0] += 1
            spent[shape][1] += time.perf_counter() - began

    wrapper: Any = connections["default"]  # DatabaseWrapper._commit: the COMMIT round trip
    commit = wrapper._commit

    def timed_commit() -> None:
        began = time.perf_counter()
        try:
            commit()
        finally:
            commits[0] += 1
            commits[1] += time.perf_counter() - began

    wrapper._commit = timed_commit
    try:
        with connection.execute_wrapper(timer):
            for number in numbers:
                transfer(number)
    finally:
        del wrapper._commit  # back to the class's method
    rows = [(shape, int(count), seconds) for shape, (count, seconds) in spent.items()]
    return sorted(rows, key=lambda row: -row[2]), int(commits[0]), commits[1]


def print_query_profile(name: str, transfer: Callable[[int], None], numbers: range) -> None:
    began = time.perf_counter()
    rows, commits, commit_seconds = query_profile(transfer, numbers)
    wall = (time.perf_counter() - began) / len(numbers)
    statements = sum(count for _, count, _ in rows) / len(numbers)
    in_sql = sum(seconds for _, _, seconds in rows) / len(numbers)
    print(
        f"{name}: {wall * 1000:.2f} ms per transfer; {statements:.1f} statements "
        f"({in_sql * 1000:.2f} ms, the first of each transaction includes its BEGIN) and "
        f"{commits / len(numbers):.0f} COMMIT ({commit_seconds / len(numbers) * 1000:.2f} ms, "
        "deferred triggers included); by statement:"
    )
    for shape, count, seconds in rows[:14]:
        print(f"  {count / len(numbers):5.2f} x {seconds / count * 1e6:6.0f} µs  {shape[:110]}")


def trigger_functions(cursor: Any) -> list[tuple[str, int, float]]:
    """PL/pgSQL functions (triggers) by total time: (name, calls, ms), from track_functions."""
    time.sleep(1.5)  # statistics reach the shared view within a second of going idle
    cursor.execute("SELECT pg_stat_clear_snapshot()")
    cursor.execute(
        "SELECT funcname, calls, total_time FROM pg_stat_user_functions ORDER BY total_time DESC"
    )
    return [(name, int(calls), float(total)) for name, calls, total in cursor.fetchall()]


def diagnose(brickbook: Brickbook, hordak: Hordak, start: int) -> None:
    """Where Brickbook's time goes: statements, the on-commit sealing share, a profile."""
    from django.db import connection
    from pyinstrument import Profiler

    from captable.seals import chain_seal_pending

    sample = 200
    with connection.cursor() as cursor:
        cursor.execute("SET track_functions = 'pl'")  # superuser: the throwaway cluster
        cursor.execute("SELECT pg_stat_reset()")
    print_query_profile("brickbook", brickbook.transfer, range(start, start + sample))
    print_query_profile("hordak", hordak.transfer, range(start, start + sample))
    start += sample
    with connection.cursor() as cursor:
        print(f"trigger functions, per transfer over {sample} transfers of each side:")
        for name, calls, total in trigger_functions(cursor):
            print(f"  {calls / sample:5.2f} calls  {total / sample * 1000:6.0f} µs  {name}")
        cursor.execute("SET track_functions = 'none'")
    chain = f"offering:{brickbook.offering.pk}"
    chain_seal_pending(chain=chain)
    transfers = 0.0
    for number in range(start, start + 200):
        began = time.perf_counter()
        brickbook.ledger.units_transfer(
            offering=brickbook.offering,
            seller=brickbook.investors[transfer_plan(number)[0]],
            buyer=brickbook.investors[transfer_plan(number)[1]],
            quanta=transfer_plan(number)[2],
            idempotency_key=f"bench-transfer-{number}",
        )
        brickbook.transfers += 1
        transfers += time.perf_counter() - began
    start += 200
    began = time.perf_counter()
    sealed = chain_seal_pending(chain=chain)
    batch = time.perf_counter() - began
    print(
        f"batch sealing: {sealed} entries posted unsealed at {200 / transfers:,.0f} entries/s, "
        f"then sealed in one batch in {batch * 1000:.0f} ms ({batch / sealed * 1e6:.0f} µs an "
        "entry)"
    )
    profiler = Profiler(interval=0.0005)
    profiler.start()
    for number in range(start, start + 300):
        brickbook.transfer(number)
    profiler.stop()
    print(profiler.output_text(unicode=True, color=False, show_all=False))
    from captable.models import Entry

    pending = Entry.objects.filter(chain=chain, sealedentry__isnull=True).order_by("pk")[:1000]
    print(
        f"sealing's pending-entries query, all {Entry.objects.filter(chain=chain).count()} "
        f"entries of the chain sealed:\n{pending.explain(analyze=True)}"
    )


def main() -> int:
    began = time.perf_counter()
    with scratch_database(
        "brickbook_bench_transfers", settings_module="benchmarks.settings_hordak"
    ) as url:
        django_in_process(url, settings_module="benchmarks.settings_hordak")
        from django.db import connections

        setting_up = time.perf_counter()
        brickbook, hordak = Brickbook(), Hordak()
        setup_seconds = time.perf_counter() - setting_up
        sides = {"brickbook": brickbook.transfer, "hordak": hordak.transfer}
        for transfer in sides.values():
            for number in range(WARM_UP):
                transfer(number)
        seconds, cpu = timed_rounds(sides, start=WARM_UP)
        done = WARM_UP + TRANSFERS // ROUNDS * ROUNDS
        brickbook_rate = (TRANSFERS // ROUNDS * ROUNDS) / seconds["brickbook"]
        hordak_rate = (TRANSFERS // ROUNDS * ROUNDS) / seconds["hordak"]
        postings_per_entry = brickbook.transfer_postings() / brickbook.transfers
        if "--diagnose" in sys.argv:
            diagnose(brickbook, hordak, done)
        brickbook_summary, hordak_summary = brickbook.check(), hordak.check()
        connections.close_all()
    ratio = brickbook_rate / hordak_rate
    print(
        f"ledger transfers ({INVESTORS} holders, {TRANSFERS} per side in {ROUNDS} alternating "
        f"rounds, one transaction each): brickbook {brickbook_rate:,.0f} entries/s "
        f"({postings_per_entry:.1f} postings each, batch sealing included) | hordak "
        f"{hordak_rate:,.0f} transactions/s (2 legs each) | ratio {ratio:.2f} "
        f"({verdict(ratio, GOAL)})"
    )
    brickbook_cpu, hordak_cpu = cpu["brickbook"], cpu["hordak"]
    if brickbook_cpu is not None and hordak_cpu is not None:
        timed = TRANSFERS // ROUNDS * ROUNDS
        print(
            f"  CPU per transfer (this process + its PostgreSQL backend): brickbook "
            f"{brickbook_cpu / timed * 1000:.2f} ms | hordak {hordak_cpu / timed * 1000:.2f} ms "
            f"| hordak/brickbook {hordak_cpu / brickbook_cpu:.2f}"
        )
    print(f"  checked: brickbook {brickbook_summary}; hordak {hordak_summary}")
    for name, rules in ENFORCED.items():
        print(f"  {name} enforces: {rules}")
    print(f"  setup {setup_seconds:.0f} s; total {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

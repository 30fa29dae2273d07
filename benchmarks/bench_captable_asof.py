"""The as-of cap table of an offering with 100,000 holders and 1,000,000 postings.

Figure: `captable.selectors.captable_as_of(offering=…, as_of=<mid-year>)`, median of 5 warm
runs. Reference: the hand-written `SELECT account_id, SUM(amount) FROM captable_posting WHERE
asset = %s AND effective_at <= %s GROUP BY account_id`, fetched with fetchall() through the
same connection, over the same rows. Goal: ratio ≤ 1.5.

The data: one live offering made through the services and its units authorized through the
ledger; then, by PostgreSQL COPY, 100,000 users and investors, their holding accounts, and
500,000 entries over one year: 100,000 issues (treasury → holding, opening a lot) and 400,000
transfers (holding → holding, from the seller's issue lot, opening a lot on the buyer that
keeps the issue date), i.e. 1,000,000 postings and 500,000 lots.

Shortcut, for this throwaway database only: the ledger's triggers (posting checks and balance
maintenance, the deferred balanced-entry check, append-only guards) and the foreign-key
triggers would make a 1M-row COPY slow, so they are disabled (`ALTER TABLE … DISABLE TRIGGER
ALL`, which needs a superuser, as `make bench`'s throwaway cluster is) while loading. In the
same transaction the account balances are then set from the postings by one UPDATE … FROM
(SELECT account_id, SUM(amount) …) and the triggers re-enabled. Likewise the indexes that
back no constraint are dropped for the load and rebuilt after it. The script then checks what
the triggers would have refused: every entry balances, no lot below zero, supply conserved;
and runs VACUUM (ANALYZE), as autovacuum would have. The copied entries are not sealed
(sealing does not affect the cap table).

`--explain` adds EXPLAIN ANALYZE plans, the selector's time split into its query and its
Python (interleaved medians), the same with work_mem = 64MB and with a covering index, and
finding a chain's pending entries (the sealing queue vs the former anti-join) at this size.
"""

from __future__ import annotations

import contextlib
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import django_in_process, scratch_database, verdict

HOLDERS = 100_000
TRANSFERS = 400_000  # 2 postings each, plus 2 per issue: 1,000,000 postings
QUANTA_PER_ISSUE = 10_000
PRICE_PER_QUANTUM_MINOR = 5
YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)
AS_OF = YEAR_START + timedelta(days=182, hours=12)
RUNS = 5
GOAL = 1.5

RAW_SQL = """
    SELECT account_id, SUM(amount) FROM captable_posting
    WHERE asset = %s AND effective_at <= %s
    GROUP BY account_id
"""

POSTING_COLUMNS = (
    "id",
    "entry_id",
    "account_id",
    "asset",
    "amount",
    "cost_minor",
    "lot_id",
    "effective_at",
)
LEDGER_TABLES = ("captable_account", "captable_entry", "captable_lot", "captable_posting")


# --- loading --------------------------------------------------------------------------------


def _constant_columns(model: Any, given: Sequence[str]) -> tuple[list[str], tuple[Any, ...]]:
    """The model's other concrete columns with the value a new row would get (its default, or
    now for auto_now(_add)): the load keeps working when a column with a default is added."""
    from django.db import connection
    from django.utils import timezone

    columns, values = [], []
    for field in model._meta.concrete_fields:
        if field.column in given or field.primary_key:
            continue
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            value = timezone.now()
        else:
            value = field.get_db_prep_save(field.get_default(), connection)
        if value is None and not field.null:
            raise RuntimeError(f"{model.__name__}.{field.name}: NOT NULL without a default")
        columns.append(field.column)
        values.append(value)
    return columns, tuple(values)


def copy_rows(
    cursor: Any, model: Any, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]
) -> int:
    """COPY `rows` (values for `columns`, the id first) into the model's table, in binary
    (about twice as fast as text: no parsing of numbers and times on the server)."""
    table = model._meta.db_table
    extra_columns, extra_values = _constant_columns(model, columns)
    all_columns = [*columns, *extra_columns]
    cursor.execute(
        "SELECT attname, atttypid FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
        "AND NOT attisdropped",
        [table],
    )
    type_oids = dict(cursor.fetchall())
    names = ", ".join(f'"{column}"' for column in all_columns)
    count = 0
    with cursor.copy(f'COPY "{table}" ({names}) FROM STDIN (FORMAT BINARY)') as copy:
        copy.set_types([type_oids[column] for column in all_columns])
        for row in rows:
            copy.write_row(row + extra_values)
            count += 1
    return count


def _next_id(cursor: Any, table: str) -> int:
    cursor.execute(f'SELECT COALESCE(MAX(id), 0) + 1 FROM "{table}"')
    return int(cursor.fetchone()[0])


def _drop_plain_indexes(cursor: Any, tables: Sequence[str]) -> list[str]:
    """Drop the indexes that back no constraint (rebuilt after the load, which is much faster
    than maintaining them row by row); returns their definitions."""
    cursor.execute(
        """SELECT indexname, indexdef FROM pg_indexes
           WHERE schemaname = 'public' AND tablename = ANY(%s)
             AND indexname::regclass NOT IN (SELECT conindid FROM pg_constraint)""",
        [list(tables)],
    )
    found = cursor.fetchall()
    for name, _ in found:
        cursor.execute(f'DROP INDEX "{name}"')
    return [definition for _, definition in found]


def create_offering() -> Any:
    """A live offering (through the services) with its units authorized (through the
    ledger): the treasury and authorized accounts and the first entry are real."""
    from benchmarks.seed import seed_live_offerings
    from captable import ledger
    from offerings.models import Offering

    seed_live_offerings(count=1)
    offering = Offering.objects.get()
    ledger.units_authorize(
        offering=offering, quanta=HOLDERS * QUANTA_PER_ISSUE, idempotency_key="bench-authorize"
    )
    return offering


@contextlib.contextmanager
def timed(phases: dict[str, float], name: str) -> Iterator[None]:
    began = time.perf_counter()
    yield
    phases[name] = phases.get(name, 0.0) + time.perf_counter() - began


LOADED_TABLES = ("common_user", "investors_investor", *LEDGER_TABLES)


def load(offering: Any, phases: dict[str, float]) -> dict[str, int]:
    """COPY the holders and their year of entries, in one transaction with the ledger's
    triggers off; returns rows written per table and adds seconds per phase to `phases`."""
    import psycopg
    from django.conf import settings

    from captable import ledger

    # Read through Django before the load's transaction locks the tables (ALTER TABLE).
    treasury_id = ledger.treasury_account(offering).pk
    database = settings.DATABASES["default"]
    connection = psycopg.connect(
        dbname=database["NAME"],
        user=database["USER"],
        password=database["PASSWORD"],
        host=database["HOST"],
        port=database["PORT"],
    )
    with connection, connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '256MB'")
        for table in LEDGER_TABLES:
            cursor.execute(f'ALTER TABLE "{table}" DISABLE TRIGGER ALL')
        indexes = _drop_plain_indexes(cursor, LOADED_TABLES)
        first_ids = {table: _next_id(cursor, table) for table in LOADED_TABLES}
        with timed(phases, "COPY"):
            written = copy_holders(cursor, offering, first_ids)
        written |= copy_ledger(cursor, offering, treasury_id, first_ids, phases)
        with timed(phases, "balances"):
            cursor.execute(
                """UPDATE captable_account AS a SET balance = s.total
                   FROM (SELECT account_id, SUM(amount) AS total FROM captable_posting
                         GROUP BY account_id) AS s
                   WHERE a.id = s.account_id AND a.balance <> s.total"""
            )
        for table in LEDGER_TABLES:
            cursor.execute(f'ALTER TABLE "{table}" ENABLE TRIGGER ALL')
        with timed(phases, "indexes"):
            for definition in indexes:
                cursor.execute(definition)
        for table in LOADED_TABLES:
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f'(SELECT MAX(id) FROM "{table}"))'
            )
    connection.close()
    return written


def copy_holders(cursor: Any, offering: Any, first_ids: dict[str, int]) -> dict[str, int]:
    """Users, their investor profiles and their holding accounts in the offering."""
    from django.utils import timezone

    from captable.models import Account, units_asset
    from common.models import User
    from investors.models import Investor

    user_id, investor_id = first_ids["common_user"], first_ids["investors_investor"]
    account_id, now = first_ids["captable_account"], timezone.now()
    return {
        "users": copy_rows(
            cursor,
            User,
            ["id", "username", "email", "password", "date_joined"],
            (
                (user_id + n, f"h{n}@example.com", f"h{n}@example.com", "!", now)
                for n in range(HOLDERS)
            ),
        ),
        "investors": copy_rows(
            cursor,
            Investor,
            ["id", "user_id", "legal_name", "kind", "country", "us_state"],
            (
                (investor_id + n, user_id + n, f"Holder {n}", "individual", "US", "NY")
                for n in range(HOLDERS)
            ),
        ),
        "accounts": copy_rows(
            cursor,
            Account,
            ["id", "key", "kind", "asset", "offering_id", "investor_id", "allows_negative"],
            (
                (
                    account_id + n,
                    f"holding:o{offering.pk}:i{investor_id + n}",
                    "holding",
                    units_asset(offering.pk),
                    offering.pk,
                    investor_id + n,
                    False,
                )
                for n in range(HOLDERS)
            ),
        ),
    }


LOT_COLUMNS = (
    "id",
    "holding_id",
    "acquired_by_id",
    "issued_at",
    "origin_lot_id",
    "quanta_acquired",
    "cost_minor_acquired",
)


def copy_ledger(
    cursor: Any,
    offering: Any,
    treasury_id: int,
    first_ids: dict[str, int],
    phases: dict[str, float],
) -> dict[str, int]:
    """The year of entries, their lots and postings."""
    from captable.models import Entry, Lot, Posting, units_asset

    chain = f"offering:{offering.pk}"
    with timed(phases, "generate"):
        entries, lots, postings = ledger_rows(
            asset=units_asset(offering.pk),
            treasury_id=treasury_id,
            holding_id=lambda holder: first_ids["captable_account"] + holder,
            first_ids=(
                first_ids["captable_entry"],
                first_ids["captable_lot"],
                first_ids["captable_posting"],
            ),
        )
    with timed(phases, "COPY"):
        return {
            "entries": copy_rows(
                cursor,
                Entry,
                ["id", "kind", "idempotency_key", "request_digest", "effective_at", "chain"],
                ((*row, chain) for row in entries),
            ),
            "lots": copy_rows(cursor, Lot, LOT_COLUMNS, lots),
            "postings": copy_rows(cursor, Posting, POSTING_COLUMNS, postings),
        }


def ledger_rows(
    *,
    asset: str,
    treasury_id: int,
    holding_id: Callable[[int], int],
    first_ids: tuple[int, int, int],
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Entries, lots and postings: every fifth entry issues to the next holder; the others
    transfer 1 to 100 quanta from a random holder already issued (with quanta left in their
    issue lot) to a random other holder. Times spread evenly over the year."""
    randomness = random.Random(20250101)  # reproducible data
    entry_id, lot_id, posting_id = first_ids
    entries: list[tuple[Any, ...]] = []
    lots: list[tuple[Any, ...]] = []
    postings: list[tuple[Any, ...]] = []
    issue_lot: list[int] = []
    issued_at: list[datetime] = []
    left: list[int] = []
    count = HOLDERS + TRANSFERS
    step = timedelta(days=365) / count
    digest = "0" * 64
    for number in range(count):
        moment = YEAR_START + step * number
        if number % 5 == 0:
            holding = holding_id(len(issue_lot))
            cost = QUANTA_PER_ISSUE * PRICE_PER_QUANTUM_MINOR
            entries.append((entry_id, "issue", f"bench-{entry_id}", digest, moment))
            lots.append((lot_id, holding, entry_id, moment, None, QUANTA_PER_ISSUE, cost))
            postings.append(
                (posting_id, entry_id, treasury_id, asset, -QUANTA_PER_ISSUE, 0, None, moment)
            )
            postings.append(
                (posting_id + 1, entry_id, holding, asset, QUANTA_PER_ISSUE, cost, lot_id, moment)
            )
            issue_lot.append(lot_id)
            issued_at.append(moment)
            left.append(QUANTA_PER_ISSUE)
        else:
            quanta = randomness.randint(1, 100)
            seller = randomness.randrange(len(issue_lot))
            while left[seller] < quanta:
                seller = randomness.randrange(len(issue_lot))
            buyer = randomness.randrange(HOLDERS - 1)
            buyer += buyer >= seller
            left[seller] -= quanta
            cost = quanta * PRICE_PER_QUANTUM_MINOR
            source, destination = holding_id(seller), holding_id(buyer)
            entries.append((entry_id, "transfer", f"bench-{entry_id}", digest, moment))
            lots.append(
                (lot_id, destination, entry_id, issued_at[seller], issue_lot[seller], quanta, cost)
            )
            postings.append(
                (posting_id, entry_id, source, asset, -quanta, -cost, issue_lot[seller], moment)
            )
            postings.append(
                (posting_id + 1, entry_id, destination, asset, quanta, cost, lot_id, moment)
            )
        entry_id, lot_id, posting_id = entry_id + 1, lot_id + 1, posting_id + 2
    return entries, lots, postings


def check_loaded(cursor: Any, asset: str) -> None:
    """What the disabled triggers would have refused: none of it is there."""
    cursor.execute(
        "SELECT COUNT(*) FROM (SELECT entry_id FROM captable_posting GROUP BY entry_id "
        "HAVING SUM(amount) <> 0) AS unbalanced"
    )
    assert cursor.fetchone()[0] == 0, "unbalanced entries"
    cursor.execute(
        "SELECT COUNT(*) FROM (SELECT lot_id FROM captable_posting WHERE lot_id IS NOT NULL "
        "GROUP BY lot_id HAVING SUM(amount) < 0) AS negative"
    )
    assert cursor.fetchone()[0] == 0, "lots below zero"
    cursor.execute(
        "SELECT SUM(balance) FROM captable_account WHERE asset = %s AND kind <> 'authorized'",
        [asset],
    )
    assert cursor.fetchone()[0] == HOLDERS * QUANTA_PER_ISSUE, "units not conserved"


def vacuum_analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for table in LEDGER_TABLES:
            cursor.execute(f'VACUUM (ANALYZE) "{table}"')


# --- timing ---------------------------------------------------------------------------------


def interleaved_medians(
    runs: dict[str, Callable[[], object]], rounds: int = RUNS
) -> dict[str, float]:
    """Median seconds of each, running all of them once per round (drift hits all alike)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            began = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - began)
    return {name: statistics.median(seconds) for name, seconds in times.items()}


def raw_group_by(asset: str) -> list[tuple[Any, ...]]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(RAW_SQL, [asset, AS_OF])
        return cursor.fetchall()


def measure(offering: Any, asset: str) -> tuple[float, float, int, int]:
    """(selector seconds, raw seconds, holders, raw rows), alternating after a warm-up."""
    from captable.selectors import captable_as_of

    def selector() -> object:
        return captable_as_of(offering=offering, as_of=AS_OF)

    def raw() -> object:
        return raw_group_by(asset)

    selector()  # warm: caches, plans, the buffer pool
    raw()
    medians = interleaved_medians({"selector": selector, "raw": raw})
    table = captable_as_of(offering=offering, as_of=AS_OF)
    raw_rows = raw_group_by(asset)
    assert table.issued_quanta + table.treasury_quanta == table.authorized_quanta
    return medians["selector"], medians["raw"], len(table.rows), len(raw_rows)


# --- diagnosis ------------------------------------------------------------------------------


def explain(sql: str, params: Sequence[Any]) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", params)
        return "\n".join(f"    {row[0]}" for row in cursor.fetchall())


def fetch(sql: str, params: Sequence[Any]) -> Callable[[], object]:
    from django.db import connection

    def run() -> object:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    return run


COVERING_INDEX = (
    "CREATE INDEX bench_posting_asset_time_covering ON captable_posting (asset, effective_at) "
    "INCLUDE (account_id, amount, cost_minor)"
)


def sealing_scan_at_scale(offering: Any) -> None:
    """Sealing finds pending entries in its queue (captable_unsealedentry); before the queue it
    anti-joined the chain's entries with their seals. Time both on this ledger with every
    entry sealed (a fake seal over all of them: diagnosis only)."""
    from django.db import connection

    from captable.models import ChainSeal, Entry, UnsealedEntry

    chain = f"offering:{offering.pk}"
    head = ChainSeal.objects.filter(chain=chain).order_by("-sequence").first()
    seal = ChainSeal.objects.create(
        chain=chain,
        sequence=(head.sequence + 1) if head else 1,
        previous_digest=head.digest if head else "0" * 64,
        digest="0" * 64,
        entry_count=0,
    )
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO captable_sealedentry (entry_id, seal_id, entry_digest)
               SELECT e.id, %s, repeat('0', 64) FROM captable_entry e
               WHERE NOT EXISTS (SELECT 1 FROM captable_sealedentry s WHERE s.entry_id = e.id)""",
            [seal.pk],
        )
        cursor.execute('VACUUM (ANALYZE) "captable_sealedentry"')
    queued = UnsealedEntry.objects.filter(chain=chain).order_by("entry_id")[:1000]
    anti_join = Entry.objects.filter(chain=chain, sealedentry__isnull=True).order_by("pk")[:1000]
    medians = interleaved_medians(
        {"queue": lambda: list(queued.all()), "anti-join": lambda: list(anti_join.all())}
    )
    print(
        f"  finding a chain's pending entries with all {Entry.objects.count():,} entries sealed: "
        f"queue {medians['queue'] * 1000:.1f} ms, former anti-join "
        f"{medians['anti-join'] * 1000:.0f} ms"
    )


def selector_parts(offering: Any, asset: str) -> dict[str, Callable[[], object]]:
    """The selector, the reference, and the selector's parts on the same rows."""
    from captable import selectors

    query = fetch(selectors._CAPTABLE_AS_OF_SQL, [asset, AS_OF])
    balances = query()
    assert isinstance(balances, list)

    def rows_in_python() -> object:
        holdings = sorted((i, q, c) for kind, i, q, c in balances if kind == "holding")
        issued = sum(quanta for _, quanta, _ in holdings)
        return [selectors.CapTableRow(i, q, c, issued) for i, q, c in holdings]

    return {
        "raw GROUP BY (reference)": fetch(RAW_SQL, [asset, AS_OF]),
        "selector (captable_as_of)": lambda: selectors.captable_as_of(
            offering=offering, as_of=AS_OF
        ),
        "  its query (per-account sums with cost, joined to accounts), fetched": query,
        "  its rows in Python (sort, total, one tuple per holder)": rows_in_python,
        "  reading every row's percentage afterwards": lambda: [
            row.percent for row in selectors.captable_as_of(offering=offering, as_of=AS_OF).rows
        ],
    }


def diagnose(offering: Any, asset: str) -> None:
    """Plans, where the selector's time goes, the same with more work_mem and with a covering
    index, and the sealing queue at this size."""
    from django.db import connection

    from captable import selectors

    for name, sql in (("raw GROUP BY", RAW_SQL), ("selector", selectors._CAPTABLE_AS_OF_SQL)):
        print(f"  EXPLAIN ANALYZE {name}:\n{explain(sql, [asset, AS_OF])}")
    parts = selector_parts(offering, asset)
    print("  median ms over the same rows (interleaved rounds):")
    for name, seconds in interleaved_medians(parts).items():
        print(f"    {seconds * 1000:8.1f}  {name}")
    compared = {name: parts[name] for name in list(parts)[:2]}
    with connection.cursor() as cursor:
        cursor.execute("SET work_mem = '64MB'")
    print("  with work_mem = 64MB (default 4MB: the aggregates spill to disk):")
    for name, seconds in interleaved_medians(compared).items():
        print(f"    {seconds * 1000:8.1f}  {name}")
    with connection.cursor() as cursor:
        cursor.execute("RESET work_mem")
        cursor.execute(COVERING_INDEX)
        cursor.execute('VACUUM (ANALYZE) "captable_posting"')
    print(f"  with {COVERING_INDEX[13:]}:")
    for name, seconds in interleaved_medians(compared).items():
        print(f"    {seconds * 1000:8.1f}  {name}")
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX bench_posting_asset_time_covering")
    sealing_scan_at_scale(offering)


def main() -> int:
    began = time.perf_counter()
    with scratch_database("brickbook_bench_captable_asof") as url:
        django_in_process(url)
        from django.db import connection, connections

        from captable.models import units_asset

        offering = create_offering()
        asset = units_asset(offering.pk)
        phases: dict[str, float] = {}
        written = load(offering, phases)
        with timed(phases, "check"), connection.cursor() as cursor:
            check_loaded(cursor, asset)
        with timed(phases, "vacuum analyze"):
            vacuum_analyze()
        selector_seconds, raw_seconds, holders, raw_rows = measure(offering, asset)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT COUNT(*) FROM captable_posting WHERE asset = %s AND effective_at <= %s",
                [asset, AS_OF],
            )
            rows_as_of = cursor.fetchone()[0]
        if "--explain" in sys.argv:
            diagnose(offering, asset)
        connections.close_all()
    ratio = selector_seconds / raw_seconds
    copied = sum(written.values())
    steps = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in phases.items())
    print(
        f"cap table as of {AS_OF:%Y-%m-%d %H:%M} ({holders:,} holders; "
        f"{rows_as_of:,} of {written['postings']:,} postings up to then): selector "
        f"{selector_seconds * 1000:,.0f} ms | raw GROUP BY fetched {raw_seconds * 1000:,.0f} ms "
        f"({raw_rows:,} rows) | ratio {ratio:.2f} ({verdict(ratio, GOAL, at_most=True)})"
    )
    print(
        f"  data: {written['users']:,} users and investors, {written['accounts']:,} holdings, "
        f"{written['entries']:,} entries, {written['lots']:,} lots, {written['postings']:,} "
        f"postings; COPY {copied / phases['COPY']:,.0f} rows/s; {steps}; total "
        f"{time.perf_counter() - began:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A pro-rata distribution to 100,000 holders on PostgreSQL, end to end.

Figure: wall time and peak memory (VmHWM) of a fresh process that starts the pay run of a
funded distribution through the service, as staff would (`distributions.distribution_pay`):
the holders of record as of the record date (the holding accounts' balances less what moved
after it, in a ledger of 1,000,000 postings), the allocation to the cent, withholding by tax
form, 100,000 payout rows, then the `captable.pay_distribution` task (run in-process at
commit, as the embedded default does) paying them in batches on PAY_RUN_CONNECTIONS
connections at once — one ledger entry per payout written by `ledger.cash_fan_out_post`
(set-based), every trigger on (balance upkeep, the deferred balanced-entry check, the sealing
queue); the entries are sealed afterwards by the periodic sealing task, timed and printed
separately.
Reference: a bare COPY of the same rows the run wrote into plain tables of the same columns
(no index, constraint or trigger), timed in the same process right after the run: every row
the run inserts (payouts, entries, postings, the holders' new available-cash accounts, the
sealing queue's rows). The ratio to the first reference (payouts, entries and postings only)
is printed too.
Rounds: the data is loaded once, then the run and its reference are measured RUN_ROUNDS times,
each on a fresh copy of the loaded database (copied as files: the same starting point), in a
fresh process. This machine's speed drifts by ±30 % from one minute to the next; each round's
ratio pairs a run with a COPY made a few seconds later, and the figures judged are the medians
(time, ratio) and the highest peak memory. Every round is printed.
Goals: ≤ 10 s, < 500 MB, ≤ 3 times the COPY.

The data (not timed): the holders and a year of entries from bench_captable_asof's loader
(100,000 holders, 1,000,000 postings); every tenth holder has no W-9 on file (backup
withholding: a third posting), the rest a W-9.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import database_copy, django_in_process, scratch_database, verdict

AMOUNT_MINOR = 12_345_678_91  # $12,345,678.91
GOAL_SECONDS = 10.0
GOAL_MEMORY_MB = 500.0
GOAL_RATIO = 3.0
# Every row the run inserts: its payouts, their entries and postings, the holders' available-cash
# accounts it opens (a first distribution opens them all) and the entries' sealing-queue rows.
# The first three are the reference this benchmark began with; both ratios are printed.
COPIED_TABLES = (
    "captable_payout",
    "captable_entry",
    "captable_posting",
    "captable_account",
    "captable_unsealedentry",
)
FIRST_REFERENCE = COPIED_TABLES[:3]
RUN_ROUNDS = 3


def prepare() -> dict[str, int]:
    """The offering with its holders, closed funded; a distribution declared with yesterday as
    its record date and today as its payment date, approved and funded."""
    from django.db import connection
    from django.utils import timezone

    from benchmarks.bench_captable_asof import create_offering, load
    from captable.distributions import (
        distribution_approve,
        distribution_declare,
        distribution_fund,
    )
    from common.models import User
    from offerings.models import Offering, OfferingStatus

    offering = create_offering()
    load(offering, {})
    Offering.objects.filter(pk=offering.pk).update(status=OfferingStatus.CLOSED_FUNDED)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE investors_investor SET tax_form = CASE WHEN id % 10 = 0 THEN 'none' "
            "ELSE 'w9' END"
        )
        # Every table vacuumed after the load, as a database in use would be: left to
        # autovacuum, the 100,000 investor rows just updated were vacuumed during the timed run
        # (on two cores, from its CPU).
        cursor.execute("VACUUM (ANALYZE)")
    declarer, approver = (
        User.objects.create_user(
            username=f"staff{n}@bench.test", email=f"staff{n}@bench.test", is_staff=True
        )
        for n in (1, 2)
    )
    local_today = timezone.now().astimezone(_zone(offering.time_zone)).date()
    distribution = distribution_declare(
        actor=declarer,
        offering_id=offering.pk,
        amount_minor=AMOUNT_MINOR,
        currency=offering.currency,
        kind="income",
        record_date=local_today - timedelta(days=1),
        payment_date=local_today,
    )
    distribution_approve(actor=approver, distribution_id=distribution.pk)
    distribution_fund(actor=declarer, distribution_id=distribution.pk)
    return {"distribution_id": distribution.pk, "staff_id": declarer.pk}


def _zone(name: str) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def pay(distribution_id: int, staff_id: int, *, seal: bool) -> dict[str, Any]:
    """In a fresh process: the timed pay run, checks, then the bare COPY reference; `seal`:
    then the sealing task, timed."""
    from captable.distributions import distribution_pay
    from captable.models import Distribution, DistributionStatus
    from common.models import User

    staff = User.objects.get(pk=staff_id)
    started_at = database_now()
    cpu_before = cpu_seconds()
    began = time.perf_counter()
    distribution_pay(actor=staff, distribution_id=distribution_id)
    seconds = time.perf_counter() - began
    cpu = cpu_since(cpu_before)
    peak_mb = peak_rss_mb()
    distribution = Distribution.objects.get(pk=distribution_id)
    assert distribution.status == DistributionStatus.PAID, distribution.status
    rows = written_rows(distribution_id, started_at)
    copy_seconds, copy_cpu = bare_copy(rows)
    seal_seconds = None
    if seal:
        from captable.seals import ledger_seal_all

        began = time.perf_counter()
        ledger_seal_all()
        seal_seconds = time.perf_counter() - began
    return {
        "seal_seconds": seal_seconds,
        "seconds": seconds,
        "peak_mb": peak_mb,
        "copy_seconds": copy_seconds,
        "cpu_seconds": cpu,
        "copy_cpu_seconds": copy_cpu,
        "rows": {table: len(found) for table, found in rows.items()},
    }


def database_now() -> Any:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


def written_rows(distribution_id: int, started_at: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the run inserted, read back (before the sealing task empties the queue)."""
    from django.db import connection

    payout = "SELECT * FROM captable_payout WHERE distribution_id = %(d)s"
    entry = f"SELECT e.* FROM captable_entry e JOIN ({payout}) p ON p.entry_id = e.id"
    posting = f"SELECT t.* FROM captable_posting t JOIN ({entry}) x ON x.id = t.entry_id"
    account = "SELECT * FROM captable_account WHERE created_at >= %(started)s"
    queued = f"SELECT u.* FROM captable_unsealedentry u JOIN ({entry}) x ON x.id = u.entry_id"
    rows = {}
    with connection.cursor() as cursor:
        queries = (payout, entry, posting, account, queued)
        for table, sql in zip(COPIED_TABLES, queries, strict=True):
            cursor.execute(sql, {"d": distribution_id, "started": started_at})
            rows[table] = cursor.fetchall()
    return rows


def bare_copy(
    rows: dict[str, list[tuple[Any, ...]]],
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """COPY the same rows into plain copies of the tables (columns only), one transaction per
    table: wall and CPU seconds (this process and its database backend) per table."""
    from django.db import connection, transaction

    with connection.cursor() as cursor:
        for table in COPIED_TABLES:
            cursor.execute(f"CREATE TABLE bare_{table} (LIKE {table})")
    seconds, cpu = {}, {}
    for table in COPIED_TABLES:
        cpu_before = cpu_seconds()
        began = time.perf_counter()
        with (
            transaction.atomic(),
            connection.cursor() as cursor,
            cursor.cursor.copy(f"COPY bare_{table} FROM STDIN") as copy,
        ):
            for row in rows[table]:
                copy.write_row(row)
        seconds[table] = time.perf_counter() - began
        cpu[table] = cpu_since(cpu_before)
    with connection.cursor() as cursor:
        for table in COPIED_TABLES:
            cursor.execute(f"DROP TABLE bare_{table}")
    return seconds, cpu


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). Not getrusage's ru_maxrss: on Linux that
    keeps, across exec, the peak of the process it was forked from — here the parent that
    loaded a million postings (it read 490 MB whatever the run did)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds used so far (user + system) by this process (all its threads) and by the
    PostgreSQL server (every backend: the pay run pays on several connections, and its
    background processes): unlike wall time, hardly changed by what else the machine runs."""
    from django.db import connection

    from benchmarks.harness import server_cpu_seconds

    usage = resource.getrusage(resource.RUSAGE_SELF)
    connection.ensure_connection()
    return usage.ru_utime + usage.ru_stime, server_cpu_seconds(
        connection.connection.info.backend_pid
    )


def cpu_since(before: tuple[float, float]) -> tuple[float, float]:
    now = cpu_seconds()
    return now[0] - before[0], now[1] - before[1]


def child(url: str, distribution_id: int, staff_id: int, *, seal: bool) -> int:
    os.environ.pop("CELERY_BROKER_URL", None)  # the embedded default: the task runs in-process
    # As with a broker in production, entries are sealed by the periodic sealing task rather
    # than after each commit: timed separately below (the sealing queue trigger still fires).
    os.environ["LEDGER_SEAL_ON_COMMIT"] = "0"
    django_in_process(url)
    # A warm process, as the worker or web process that starts a run is: the apps' task
    # modules imported (Celery autodiscovery imports the URL conf, pandas and all: seconds
    # that belong to a process starting, not to a distribution).
    from common.outbox import _discover_tasks_once

    _discover_tasks_once()
    # Then frozen out of the cyclic collector's reach, as both processes that start and run a
    # pay run in production freeze theirs once started (gunicorn's post_worker_init, the
    # Celery worker's worker_ready / worker_process_init: config/gunicorn.py, config/celery.py).
    gc.freeze()
    print(json.dumps(pay(distribution_id, staff_id, seal=seal)))
    return 0


def main() -> int:
    if sys.argv[1:2] == ["--pay"]:
        url, distribution_id, staff_id, seal = sys.argv[2:6]
        return child(url, int(distribution_id), int(staff_id), seal=seal == "seal")
    began = time.perf_counter()
    name = "brickbook_bench_distribution"
    with scratch_database(name) as url:
        os.environ.pop("CELERY_BROKER_URL", None)
        django_in_process(url)
        from django.db import connections

        prepared = prepare()
        connections.close_all()
        rounds = []
        for number in range(RUN_ROUNDS):
            with database_copy(url, f"{name}_run") as run_url:
                seal = "seal" if number == 0 else "no-seal"
                rounds.append(run_round(run_url, prepared, seal))
    report(rounds, time.perf_counter() - began)
    return 0


def run_round(url: str, prepared: dict[str, int], seal: str) -> dict[str, Any]:
    """One timed run and its reference, in a fresh process on the database at `url`."""
    distribution, staff = str(prepared["distribution_id"]), str(prepared["staff_id"])
    done = subprocess.run(
        [sys.executable, __file__, "--pay", url, distribution, staff, seal],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["copy_total"] = sum(result["copy_seconds"].values())
    result["ratio"] = result["seconds"] / result["copy_total"]
    return result


def report(rounds: list[dict[str, Any]], total_seconds: float) -> None:
    assert all(r["rows"] == rounds[0]["rows"] for r in rounds), "every round writes the same"
    seconds = statistics.median(r["seconds"] for r in rounds)
    copy = statistics.median(r["copy_total"] for r in rounds)
    ratio = statistics.median(r["ratio"] for r in rounds)
    peak = max(r["peak_mb"] for r in rounds)
    rows = rounds[0]["rows"]
    time_verdict = "meets" if seconds <= GOAL_SECONDS else "ABOVE"
    memory_verdict = "meets" if peak < GOAL_MEMORY_MB else "ABOVE"
    print(
        f"pro-rata distribution to {rows['captable_payout']:,} holders, end to end "
        f"(median of {len(rounds)} runs): {seconds:.2f} s ({time_verdict} goal ≤ "
        f"{GOAL_SECONDS:.0f} s) | peak memory {peak:,.0f} MB at most ({memory_verdict} goal < "
        f"{GOAL_MEMORY_MB:.0f} MB) | bare COPY of the same rows {copy:.2f} s | ratio "
        f"{ratio:.2f} ({verdict(ratio, GOAL_RATIO, at_most=True)})"
    )
    for number, result in enumerate(rounds, 1):
        first = sum(result["copy_seconds"][table] for table in FIRST_REFERENCE)
        client, backend = result["cpu_seconds"]
        copy_client = sum(cpu[0] for cpu in result["copy_cpu_seconds"].values())
        copy_backend = sum(cpu[1] for cpu in result["copy_cpu_seconds"].values())
        cpu, copy_cpu = client + backend, copy_client + copy_backend
        print(
            f"  run {number}: {result['seconds']:.2f} s, {result['peak_mb']:.0f} MB, COPY "
            f"{result['copy_total']:.2f} s, ratio {result['ratio']:.2f} (to payouts, entries "
            f"and postings only: {result['seconds'] / first:.2f}) | CPU seconds (this process "
            f"+ the database server) run {client:.2f} + {backend:.2f} = {cpu:.2f}, COPY "
            f"{copy_client:.2f} + {copy_backend:.2f} = {copy_cpu:.2f}, ratio "
            f"{cpu / copy_cpu:.2f}"
        )
    print(
        f"  rows written: {rows['captable_payout']:,} payouts, {rows['captable_entry']:,} "
        f"entries, {rows['captable_posting']:,} postings, {rows['captable_account']:,} "
        f"accounts, {rows['captable_unsealedentry']:,} sealing-queue rows; sealing them "
        f"afterwards (the periodic task, run 1) {rounds[0]['seal_seconds']:.1f} s; total with "
        f"the data load {total_seconds:.0f} s"
    )


if __name__ == "__main__":
    raise SystemExit(main())

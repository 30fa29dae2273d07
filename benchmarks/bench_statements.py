"""Statements: the whole pipeline against WeasyPrint alone, two processes against one, and the
memory of a 1,000-statement batch.

Figures (PostgreSQL scratch database, data posted in 2025-Q3 through the ledger API):
1. statements per second in one warm process through `reports.services.statement_generate`
   (ledger reads → data → HTML → PDF → storage → row + notification through the outbox),
   against the ceiling: WeasyPrint rendering the very same HTML, prepared beforehand, with no
   data work. Rounds alternate (ceiling, pipeline, pipeline, ceiling) over fresh investors.
   Goal: ratio ≥ 0.8.
2. two worker processes (each warm, started together) against one: statements per second of
   both together / of one alone. Goal ≥ 1.7 (needs two idle cores). Throughput is counted
   over the span from the first worker's start to the last one's end (the system-wide
   monotonic clock), not from each worker's own timer. In the same run, the same for
   WeasyPrint alone on the workers' prepared HTML (what two processes can reach on this
   machine at this load), and each worker's CPU time a statement (unchanged from one to two
   processes means nothing is contended inside them: the lost time is waiting for a core).
3. a 1,000-statement batch run item by item through the batch service in a fresh process:
   resident memory every 100 statements and the peak. Goal: flat (growth from the first 100
   to the end under 10% or 25 MB).

Usage: `make bench` (all benchmarks) or, with DATABASE_URL at a PostgreSQL server,
`.venv/bin/python benchmarks/bench_statements.py [--statements 24] [--batch 1000]`.
The machine's load average is printed beside each figure: on a shared machine the ratios,
not the absolute rates, are what to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import PYTHON, django_in_process, scratch_database, verdict

PERIOD = "2025-Q3"
CHICAGO = ZoneInfo("America/Chicago")
QUANTA_PER_PURCHASE = 10_000  # 10 units of a 1/1000-unit offering at $50.00 a unit
GOAL_CEILING = 0.8
GOAL_TWO_PROCESSES = 1.7
GOAL_MEMORY_GROWTH = 0.10
GOAL_MEMORY_GROWTH_MB = 25.0


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min) / {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def rss_megabytes() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_megabytes() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def isolated_environment() -> None:
    """Files to a temporary folder, notifications to nowhere (the console would print 1,000)."""
    os.environ.setdefault("BRICKBOOK_VAR_DIR", tempfile.mkdtemp(prefix="bench-statements-"))
    os.environ["EMAIL_BACKEND"] = "django.core.mail.backends.dummy.EmailBackend"
    os.environ.pop("CELERY_BROKER_URL", None)


# --- data -----------------------------------------------------------------------------------


def seed(*, investors_per_offering: list[int]) -> list[list[int]]:
    """Live offerings (the benchmark seed), each with its number of investors who bought 10
    units before the period (June) and 10 more in it (August): a position, contributions and
    a short transaction list each. Returns the investor ids per offering."""
    import time_machine
    from django.db import transaction

    from benchmarks.seed import seed_live_offerings
    from captable import ledger
    from captable.models import AccountKind
    from common.models import User
    from investors.models import Investor
    from offerings.models import Offering

    seed_live_offerings(count=len(investors_per_offering))
    ids: list[list[int]] = []
    offerings = Offering.objects.order_by("pk")
    for index, (offering, count) in enumerate(zip(offerings, investors_per_offering, strict=True)):
        ledger.units_authorize(
            offering=offering, quanta=50_000_000, idempotency_key=f"bench-auth-{offering.pk}"
        )
        cost = QUANTA_PER_PURCHASE * offering.price_per_unit_minor // offering.quanta_per_unit
        proceeds = ledger.issuer_account(offering.issuer, AccountKind.PROCEEDS, offering.currency)
        people = []
        for number in range(count):
            with transaction.atomic():
                email = f"bench-investor-{index}-{number}@example.com"
                user = User.objects.create_user(username=email, email=email)
                investor = Investor.objects.create(
                    user=user,
                    legal_name=f"Investor {index}-{number:04d} Example",
                    kind="individual",
                    country="US",
                    us_state="TX",
                    financials_currency="USD",
                )
            for month, day in ((6, 15), (8, 10)):
                moment = datetime(2025, month, day, 12, tzinfo=CHICAGO)
                key = f"bench-{investor.pk}-{month}"
                with time_machine.travel(moment, tick=False):
                    escrow = ledger.escrow_account(offering, investor)
                    ledger.cash_move(
                        source=ledger.external_account(offering.currency),
                        destination=escrow,
                        amount_minor=cost,
                        idempotency_key=f"{key}-pay",
                    )
                    ledger.cash_move(
                        source=escrow,
                        destination=proceeds,
                        amount_minor=cost,
                        idempotency_key=f"{key}-release",
                    )
                    ledger.units_issue(
                        offering=offering,
                        investor=investor,
                        quanta=QUANTA_PER_PURCHASE,
                        cost_minor=cost,
                        idempotency_key=f"{key}-issue",
                    )
            people.append(investor.pk)
        ids.append(people)
    return ids


def scope_of(investor_id: int) -> Any:
    from reports.kinds import StatementScope
    from reports.periods import period_parse

    return StatementScope("investor_periodic", period_parse(PERIOD), investor_id=investor_id)


def prepared_html(investor_id: int) -> str:
    from reports.kinds import kind_spec
    from reports.render import statement_html

    spec = kind_spec("investor_periodic")
    return statement_html(spec, spec.build(scope_of(investor_id)))


def warm_up(investor_id: int) -> None:
    """What a worker process has done before its first real statement: WeasyPrint imported
    and its fonts built, templates loaded, the database connection open, the tasks the
    outbox runs discovered. One whole statement, of an investor set aside for it."""
    from reports.pdf import pdf_warm_up
    from reports.services import statement_generate

    pdf_warm_up()
    statement_generate(scope=scope_of(investor_id))


def pipeline_seconds(investor_ids: list[int]) -> tuple[float, float]:
    """(wall, CPU of this process) seconds to generate the investors' statements."""
    from reports.services import statement_generate

    started, cpu = time.perf_counter(), time.process_time()
    for investor_id in investor_ids:
        assert statement_generate(scope=scope_of(investor_id)).created
    return time.perf_counter() - started, time.process_time() - cpu


def ceiling_seconds(htmls: list[str]) -> tuple[float, float]:
    from reports.pdf import html_to_pdf

    started, cpu = time.perf_counter(), time.process_time()
    for html in htmls:
        html_to_pdf(html)
    return time.perf_counter() - started, time.process_time() - cpu


def add(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    return a[0] + b[0], a[1] + b[1]


# --- 1. one process: pipeline vs WeasyPrint alone --------------------------------------------


def one_process(investor_ids: list[int]) -> bool:
    """Wall-clock rates, and the same from this process's CPU time (steadier on a shared
    machine; the database's own CPU, a few indexed reads, is not in it)."""
    half = len(investor_ids) // 2
    rounds = [investor_ids[:half], investor_ids[half:]]
    htmls = [[prepared_html(i) for i in ids] for ids in rounds]
    ceiling = ceiling_seconds(htmls[0])
    pipeline = pipeline_seconds(rounds[0])
    pipeline = add(pipeline, pipeline_seconds(rounds[1]))
    ceiling = add(ceiling, ceiling_seconds(htmls[1]))
    count = len(investor_ids)
    ratio, cpu_ratio = ceiling[0] / pipeline[0], ceiling[1] / pipeline[1]
    print(f"  statements through the pipeline, one process: {count / pipeline[0]:6.2f} /s")
    print(f"  ceiling, WeasyPrint on the same HTML:          {count / ceiling[0]:6.2f} /s")
    print(f"  ratio {ratio:.2f} ({verdict(ratio, GOAL_CEILING)}) — {load_average()}")
    print(
        f"  by CPU time: {pipeline[1] / count * 1000:.0f} ms vs {ceiling[1] / count * 1000:.0f}"
        f" ms a statement, ratio {cpu_ratio:.2f} ({verdict(cpu_ratio, GOAL_CEILING)})"
    )
    return ratio >= GOAL_CEILING


# --- 2. two processes vs one -------------------------------------------------------------------


def start_worker(
    database_url: str, spare_id: int, investor_ids: list[int], mode: str
) -> subprocess.Popen[str]:
    ids = ",".join(map(str, [spare_id, *investor_ids]))
    command = [PYTHON, __file__, "--worker", database_url, ids, mode]
    worker = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    assert worker.stdout is not None
    assert worker.stdout.readline().strip() == "ready"
    return worker


@dataclass(frozen=True)
class WorkersRun:
    per_second: float
    cpu_ms_a_statement: list[float]  # each worker's


def run_workers(
    database_url: str, slices: list[list[int]], spares: list[int], mode: str
) -> WorkersRun:
    """Start one warm worker per slice (started and warmed one after another, untimed), let
    them all go at once; statements per second over the span all of them worked."""
    workers = [
        start_worker(database_url, spare, ids, mode)
        for spare, ids in zip(spares, slices, strict=True)
    ]
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    reports = []
    for worker in workers:
        output, _ = worker.communicate()
        assert worker.returncode == 0, f"a {mode} worker failed"
        reports.append(json.loads(output.strip().splitlines()[-1]))
    span = max(r["ended"] for r in reports) - min(r["started"] for r in reports)
    count = sum(len(ids) for ids in slices)
    cpu = [r["cpu"] / len(ids) * 1000 for r, ids in zip(reports, slices, strict=True)]
    return WorkersRun(count / span, cpu)


def worker_main(database_url: str, ids_text: str, mode: str) -> None:
    """A warm worker: the whole pipeline (`pipeline`), or WeasyPrint alone on the same
    investors' HTML prepared before the start (`ceiling`). Its spare investor is its own."""
    django_in_process(database_url)
    spare_id, *investor_ids = [int(i) for i in ids_text.split(",")]
    warm_up(spare_id)
    htmls = [prepared_html(i) for i in investor_ids] if mode == "ceiling" else []
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process on the machine
    seconds = ceiling_seconds(htmls) if mode == "ceiling" else pipeline_seconds(investor_ids)
    cpu = seconds[1]
    ended = time.monotonic()
    print(json.dumps({"started": started, "ended": ended, "cpu": cpu}), flush=True)


def two_processes(
    database_url: str, investor_ids: list[int], per_worker: int, spares: list[int]
) -> bool:
    """WeasyPrint alone, then the pipeline: one worker on `per_worker` investors, then two on
    as many each. The ceiling renders the very investors the pipeline then generates (it
    stores nothing); every worker has a spare investor of its own to warm up with."""
    slices = [investor_ids[n * per_worker : (n + 1) * per_worker] for n in range(3)]
    results = {}
    for mode, mode_spares in (("ceiling", spares[:3]), ("pipeline", spares[3:])):
        one = run_workers(database_url, slices[:1], mode_spares[:1], mode)
        two = run_workers(database_url, slices[1:], mode_spares[1:], mode)
        results[mode] = two.per_second / one.per_second
        label = "WeasyPrint alone" if mode == "ceiling" else "the pipeline"
        cpu_two = " and ".join(f"{ms:.0f}" for ms in two.cpu_ms_a_statement)
        print(
            f"  {label + ':':17} one process {one.per_second:5.2f}/s, two {two.per_second:5.2f}/s"
            f" = {results[mode]:.2f}x; CPU a statement {one.cpu_ms_a_statement[0]:.0f} ms in"
            f" one, {cpu_two} ms in two"
        )
    ratio = results["pipeline"]
    print(
        f"  ratio {ratio:.2f} ({verdict(ratio, GOAL_TWO_PROCESSES)}); WeasyPrint alone reached "
        f"{results['ceiling']:.2f}x in the same run — {load_average()}"
    )
    return ratio >= GOAL_TWO_PROCESSES


# --- 3. memory of a 1,000-statement batch ----------------------------------------------------


def memory_main(database_url: str, offering_id: int) -> None:
    """One batch for one offering, its items run one after another in this process, as one
    worker process runs them."""
    django_in_process(database_url)
    from reports import services
    from reports.models import StatementBatchItem

    batch = services.statement_batch_create(
        requested_by=None, period=PERIOD, offering_id=offering_id, start_in_background=False
    )
    total = services.statement_batch_start(batch_id=batch.pk, enqueue_items=False)
    investor_ids = list(
        StatementBatchItem.objects.filter(batch_id=batch.pk)
        .order_by("investor_id")
        .values_list("investor_id", flat=True)
    )
    started = time.perf_counter()
    for done, investor_id in enumerate(investor_ids, start=1):
        services.statement_batch_item_run(batch_id=batch.pk, investor_id=investor_id)
        if done % 100 == 0 or done == total:
            # One line a sample, as it happens: a run stopped early still shows its figures.
            sample = [done, total, rss_megabytes(), peak_megabytes(), time.perf_counter() - started]
            print(json.dumps(sample), flush=True)


def memory(database_url: str, offering_id: int) -> bool:
    command = [PYTHON, __file__, "--memory", database_url, str(offering_id)]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    ) as process:
        assert process.stdout is not None
        samples = []
        for line in process.stdout:
            if not line.startswith("["):
                continue
            done, total, rss, peak, seconds = json.loads(line)
            samples.append((rss, peak))
            print(
                f"  after {done:5d} of {total} statements: RSS {rss:7.1f} MB, peak {peak:7.1f} MB"
                f"  ({done / seconds:5.2f} /s) — {load_average()}",
                flush=True,
            )
    assert process.returncode == 0, "the batch process failed"
    first, last, peak = samples[0][0], samples[-1][0], samples[-1][1]
    growth = last - first
    flat = growth <= max(GOAL_MEMORY_GROWTH * first, GOAL_MEMORY_GROWTH_MB)
    print(
        f"  batch of {total}: peak {peak:.1f} MB; growth from the first 100 to the end "
        f"{growth:+.1f} MB ({'flat' if flat else 'GROWING'}) — {load_average()}"
    )
    return flat


# --- main --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statements", type=int, default=24, help="per figure 1 and 2")
    parser.add_argument("--batch", type=int, default=1000, help="statements in the batch")
    parser.add_argument("--worker", nargs=3, metavar=("URL", "IDS", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--memory", nargs=2, metavar=("URL", "OFFERING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    isolated_environment()
    if args.worker:
        worker_main(*args.worker)
        return 0
    if args.memory:
        memory_main(args.memory[0], int(args.memory[1]))
        return 0
    with scratch_database("bench_statements") as database_url:
        django_in_process(database_url)
        started = time.perf_counter()
        small = args.statements
        spare_count = 7  # one to warm each process up: this one, and 3 + 3 workers
        ids = seed(investors_per_offering=[4 * small + spare_count, args.batch])
        print(f"seeded {sum(map(len, ids))} investors in {time.perf_counter() - started:.0f} s")
        from offerings.models import Offering

        first, second = ids
        spares, first = first[:spare_count], first[spare_count:]
        warm_up(spares[0])
        print(f"1. one process, {small} periodic statements ({PERIOD}):")
        results = [one_process(first[:small])]
        print(f"2. worker processes, {small} statements each:")
        results.append(two_processes(database_url, first[small:], small, spares[1:]))
        print(f"3. a batch of {len(second)} statements, one worker process:")
        results.append(memory(database_url, Offering.objects.order_by("pk")[1].pk))
        print(f"statements: {sum(results)} of 3 goals met")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Subscribe: POST /api/v1/offerings/{id}/subscriptions vs a bare hot-row update.

Both served by the same gunicorn (2 sync workers, persistent DB connections) on PostgreSQL,
loaded by wrk with 32 connections from a second process, in alternating rounds (so drift of
the shared machine hits both alike):

- subscribe: each request a new `Idempotency-Key` and the bearer token of one of INVESTORS
  KYC-approved investors (benchmarks/subscribe.lua), for 1 to 5 units of one live Reg CF
  offering with supply to spare — the whole path: token, idempotency record, investor row
  lock, offering, compliance (the Reg CF 12-month total), the conditional UPDATE on the
  offering's reserved units (the hot row), the subscription and its history row, the
  response rendered and stored for replays;
- ceiling: POST /bench/hot-update (benchmarks/bare_api.py), bare django-ninja doing one
  transactional `UPDATE ... SET n = n + 1 ... RETURNING n` on one hot row.

Goal: subscribe ≥ 0.5 of the ceiling; p50/p90/p99 latency reported, and the CPU each request
cost the gunicorn workers and their PostgreSQL backends (/proc): on a machine shared with
other work that ratio moves far less than requests per second do. Afterwards the database
is read: subscriptions reserved / waitlisted, wrk's non-2xx count is the refusals (none
expected: many investors, limits far away, supply to spare), and the offering's counter must
equal the reserved subscriptions' units.

`--diagnose` adds an in-process profile of the subscribe request (Django test client, full
middleware stack, DEBUG off): milliseconds per request, SQL statements by shape, pyinstrument.
BENCH_SECONDS sets seconds per measured run (default 10), BENCH_ROUNDS the rounds (default 2).
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import (
    LoadResult,
    cpu_used,
    django_in_process,
    gunicorn,
    scratch_database,
    verdict,
    wrk,
)

BENCHMARKS = Path(__file__).resolve().parent
INVESTORS = 2_000
CONNECTIONS = 32
THREADS = 2
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
GOAL = 0.5
UNITS_AUTHORIZED = 400_000  # $4M at $10 a unit: inside Reg CF's $5M, never sold out here
PRICE_PER_UNIT_MINOR = 10_00
DIAGNOSE_REQUESTS = 300
# A response slower than this is a socket error (wrk's default, 2 s, is less than what a
# request queued behind 31 others may wait at this endpoint's current speed).
RESPONSE_TIMEOUT_SECONDS = 30


def seed() -> tuple[int, list[str]]:
    """One live Reg CF offering and INVESTORS KYC-approved investors with bearer tokens (half
    accredited, half with a Reg CF limit far above what this run buys); the ceiling's hot
    row. Returns the offering's id and the tokens."""
    from django.db import transaction
    from django.utils import timezone

    from benchmarks.bare_api import hot_row_table_create
    from common.auth import api_token_issue
    from common.models import User
    from investors.models import Investor
    from offerings import services

    hot_row_table_create()
    with transaction.atomic():
        staff = User.objects.create_user(
            username="bench-staff@example.com", email="bench-staff@example.com", is_staff=True
        )
        owner = User.objects.create_user(
            username="bench-sponsor@example.com", email="bench-sponsor@example.com"
        )
        sponsor = services.sponsor_apply(actor=owner, name="Bench Sponsor")
        services.sponsor_approve(actor=staff, sponsor_id=sponsor.pk)
        issuer = services.issuer_create(
            actor=owner,
            legal_name="Bench Subscribe SPV LLC",
            jurisdiction_country="US",
            entity_type="llc",
        )
        home = services.property_create(
            actor=owner,
            details=services.PropertyDetails(
                name="Bench Tower",
                address_line1="1 Main St",
                city="Austin",
                region="TX",
                country="US",
                property_type="multifamily",
            ),
        )
        now = timezone.now()
        offering = services.offering_create(
            actor=owner,
            draft=services.OfferingDraft(
                title="Bench Tower, Austin",
                property_id=home.pk,
                issuer_id=issuer.pk,
                security_type="equity",
                currency="USD",
                price_per_unit_minor=PRICE_PER_UNIT_MINOR,
                quanta_per_unit=1,
                units_authorized=Decimal(UNITS_AUTHORIZED),
                min_investment_units=Decimal(1),
                max_investment_units=Decimal(10_000),
                target_raise_minor=1_000_000_00,
                max_raise_minor=UNITS_AUTHORIZED * PRICE_PER_UNIT_MINOR,
                funding_model="all_or_nothing",
                exemption="reg_cf",
                time_zone="America/Chicago",
                opens_at=now,
                closes_at=now + timedelta(days=90),
            ),
        )
        services.offering_submit(actor=owner, offering_id=offering.pk)
        services.offering_approve(actor=staff, offering_id=offering.pk)
        services.offering_go_live(actor=staff, offering_id=offering.pk)
    with transaction.atomic():
        users = []
        for number in range(INVESTORS):
            user = User(username=f"bench-investor{number}@example.com")
            user.email = user.username
            user.set_unusable_password()  # hashing 2,000 passwords is not under test
            users.append(user)
        users = User.objects.bulk_create(users)
        Investor.objects.bulk_create(
            Investor(
                user=user,
                legal_name=f"Investor {number}",
                country="US",
                us_state="NY",
                # accredited (net worth > $1M) or a Reg CF limit of 10% of $200k
                net_worth_minor=2_000_000_00 if number % 2 else 200_000_00,
                kyc_status="approved",
                kyc_decided_at=timezone.now(),
            )
            for number, user in enumerate(users)
        )
        tokens = [api_token_issue(user=user, ttl=timedelta(hours=2)).token for user in users]
    return offering.pk, tokens


def outcomes(offering_id: int) -> dict[str, int]:
    """Subscriptions of the offering by status, and its reserved units counter."""
    from django.db.models import Count, Sum

    from captable.models import Subscription
    from offerings.models import Offering

    rows = Subscription.objects.filter(offering_id=offering_id).values("status")
    counts = {row["status"]: row["n"] for row in rows.annotate(n=Count("pk"))}
    reserved_units = Subscription.objects.filter(
        offering_id=offering_id, status="reserved"
    ).aggregate(total=Sum("quanta"))["total"]
    counter = Offering.objects.values_list("units_reserved_quanta", flat=True).get(pk=offering_id)
    return {**counts, "reserved_units": reserved_units or 0, "counter": counter}


def settled_outcomes(offering_id: int) -> dict[str, int]:
    """`outcomes` once the server has finished the requests wrk left queued when it stopped
    (two reads half a second apart agree)."""
    latest = outcomes(offering_id)
    while True:
        time.sleep(0.5)
        previous, latest = latest, outcomes(offering_id)
        if latest == previous:
            return latest


def combined(results: list[LoadResult]) -> tuple[float, int, int, str, str, str]:
    """(requests/s over every round, requests, non-2xx, worst p50, worst p90, worst p99)."""
    from benchmarks.harness import milliseconds

    seconds = sum(result.seconds for result in results)
    requests = sum(result.requests for result in results)

    def worst(name: str) -> str:
        return max((getattr(result, name) for result in results), key=milliseconds)

    return (
        requests / seconds,
        requests,
        sum(result.errors for result in results),
        worst("latency_p50"),
        worst("latency_p90"),
        worst("latency_p99"),
    )


def statement_profile(name: str, call: Callable[[], None], requests: int) -> None:
    """Time `requests` calls: wall time, SQL statements by shape, COMMITs, the rest Python."""
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
    began = time.perf_counter()
    try:
        with connection.execute_wrapper(timer):
            for _ in range(requests):
                call()
    finally:
        del wrapper._commit  # back to the class's method
    wall = (time.perf_counter() - began) / requests
    statements = sum(count for count, _ in spent.values()) / requests
    in_sql = sum(seconds for _, seconds in spent.values()) / requests
    committing = commits[1] / requests
    print(
        f"{name} in process: {wall * 1000:.2f} ms a request; {statements:.1f} statements "
        f"({in_sql * 1000:.2f} ms) + {commits[0] / requests:.0f} COMMIT "
        f"({committing * 1000:.2f} ms); the rest, Python: {(wall - in_sql - committing) * 1000:.2f}"
        " ms; by statement:"
    )
    for shape, (count, seconds) in sorted(spent.items(), key=lambda item: -item[1][1])[:25]:
        print(f"  {count / requests:5.2f} x {seconds / count * 1e6:6.0f} µs  {shape[:150]}")


def diagnose(offering_id: int, tokens: list[str]) -> None:
    """The subscribe request in this process (Django's test client, the full middleware
    stack): time per request against the ceiling's, SQL by shape, a pyinstrument profile."""
    from django.db import connections
    from django.test import Client
    from pyinstrument import Profiler

    client = Client()
    path = f"/api/v1/offerings/{offering_id}/subscriptions"
    sequence = iter(range(10**9))

    def subscribe() -> None:
        number = next(sequence)
        response = client.post(
            path,
            data=json.dumps({"units": str(1 + number % 5)}),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {tokens[(7 * number + 3) % len(tokens)]}",
            HTTP_IDEMPOTENCY_KEY=f"diagnose-{number}",
        )
        assert response.status_code == 201, response.content

    def hot_update() -> None:
        response = client.post("/bench/hot-update", data="{}", content_type="application/json")
        assert response.status_code == 200, response.content

    for call in (subscribe, hot_update):  # warm both
        for _ in range(30):
            call()
    statement_profile("subscribe", subscribe, DIAGNOSE_REQUESTS)
    statement_profile("hot-update", hot_update, DIAGNOSE_REQUESTS)
    profiler = Profiler(interval=0.0005)
    profiler.start()
    for _ in range(DIAGNOSE_REQUESTS):
        subscribe()
    profiler.stop()
    print(profiler.output_text(unicode=True, color=False, show_all=False))
    connections.close_all()


@dataclass(frozen=True)
class Measured:
    load: LoadResult
    worker_seconds: float  # CPU the gunicorn workers used during the run
    backend_seconds: float  # CPU their PostgreSQL backends used during the run


def measured(base: str, run: Callable[[], LoadResult]) -> Measured:
    before = cpu_used(base)
    load = run()
    worker_seconds, backend_seconds = cpu_used(base).since(before)
    return Measured(load, worker_seconds, backend_seconds)


def cpu_per_request(runs: list[Measured]) -> tuple[float, float]:
    """(gunicorn, PostgreSQL) CPU milliseconds per request over `runs`."""
    requests = sum(run.load.requests for run in runs)
    workers = sum(run.worker_seconds for run in runs)
    backends = sum(run.backend_seconds for run in runs)
    return workers / requests * 1000, backends / requests * 1000


def main() -> int:
    began = time.perf_counter()
    with scratch_database("brickbook_bench_subscribe") as url:
        os.environ["BRICKBOOK_BENCH_ENDPOINTS"] = "1"  # --diagnose calls the ceiling here too
        django_in_process(url)
        from django.db import connections

        offering_id, tokens = seed()
        connections.close_all()
        with tempfile.NamedTemporaryFile("w", suffix=".tokens", delete=False) as token_file:
            token_file.write("\n".join(tokens) + "\n")
        subscribe_url = f"/api/v1/offerings/{offering_id}/subscriptions"
        lua, post = BENCHMARKS / "subscribe.lua", BENCHMARKS / "post.lua"
        ceilings: list[Measured] = []
        figures: list[Measured] = []
        try:
            with gunicorn(url, workers=2) as base:

                def ceiling_run(seconds: int) -> LoadResult:
                    return wrk(
                        f"{base}/bench/hot-update",
                        seconds=seconds,
                        connections=CONNECTIONS,
                        threads=THREADS,
                        script=post,
                        timeout_seconds=RESPONSE_TIMEOUT_SECONDS,
                    )

                def subscribe_run(seconds: int, name: str) -> LoadResult:
                    return wrk(
                        f"{base}{subscribe_url}",
                        seconds=seconds,
                        connections=CONNECTIONS,
                        threads=THREADS,
                        script=lua,
                        script_args=[token_file.name, name, str(THREADS)],
                        timeout_seconds=RESPONSE_TIMEOUT_SECONDS,
                    )

                ceiling_run(2)  # warm up both workers and both paths
                warm = subscribe_run(2, "warm-up")
                before = settled_outcomes(offering_id)
                for number in range(ROUNDS):  # alternating which goes first
                    if number % 2 == 0:
                        ceilings.append(measured(base, lambda: ceiling_run(SECONDS)))
                    figures.append(
                        measured(base, partial(subscribe_run, SECONDS, f"round-{number}"))
                    )
                    if number % 2 == 1:
                        ceilings.append(measured(base, lambda: ceiling_run(SECONDS)))
                after = settled_outcomes(offering_id)
            if "--diagnose" in sys.argv:
                diagnose(offering_id, tokens)
            connections.close_all()
        finally:
            os.unlink(token_file.name)
    return summary(figures, ceilings, before, after, warm, began)


def summary(
    figures: list[Measured],
    ceilings: list[Measured],
    before: dict[str, int],
    after: dict[str, int],
    warm: LoadResult,
    began: float,
) -> int:
    rate, requests, errors, p50, p90, p99 = combined([run.load for run in figures])
    ceiling, _, ceiling_errors, c50, c90, c99 = combined([run.load for run in ceilings])
    reserved = after.get("reserved", 0) - before.get("reserved", 0)
    waitlisted = after.get("waitlisted", 0) - before.get("waitlisted", 0)
    refused = sum(run.load.non_2xx for run in figures)
    ratio = rate / ceiling
    print(
        f"POST /offerings/{{id}}/subscriptions ({INVESTORS} investors, {CONNECTIONS} "
        f"connections, {ROUNDS} rounds of {SECONDS} s): {rate:,.0f} req/s (p50 {p50}, p90 "
        f"{p90}, p99 {p99}) | ceiling POST /bench/hot-update {ceiling:,.0f} req/s (p50 {c50}, "
        f"p90 {c90}, p99 {c99}) | ratio {ratio:.2f} ({verdict(ratio, GOAL)})"
    )
    print(
        "  per round: subscribe "
        + ", ".join(f"{run.load.requests_per_second:,.0f}" for run in figures)
        + " req/s; ceiling "
        + ", ".join(f"{run.load.requests_per_second:,.0f}" for run in ceilings)
        + " req/s"
    )
    python_ms, postgres_ms = cpu_per_request(figures)
    ceiling_python_ms, ceiling_postgres_ms = cpu_per_request(ceilings)
    cpu_ratio = (ceiling_python_ms + ceiling_postgres_ms) / (python_ms + postgres_ms)
    print(
        f"  CPU a request (steadier than req/s on a shared machine): subscribe gunicorn "
        f"{python_ms:.2f} ms + PostgreSQL {postgres_ms:.2f} ms; ceiling {ceiling_python_ms:.2f}"
        f" + {ceiling_postgres_ms:.2f} ms; ratio {cpu_ratio:.2f}"
    )
    print(
        f"  measured: {requests} requests answered by wrk (and those it left queued) → "
        f"{reserved} reserved, {waitlisted} waitlisted, {refused} refused (non-2xx), "
        f"{errors - refused} socket errors; warm-up {warm.requests}"
    )
    counter_ok = after["counter"] == after["reserved_units"]
    print(
        f"  offering counter {after['counter']} units = reserved subscriptions' "
        f"{after['reserved_units']} units: {'yes' if counter_ok else 'NO'}; "
        f"total {time.perf_counter() - began:.0f} s"
    )
    return 0 if errors == 0 and ceiling_errors == 0 and counter_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

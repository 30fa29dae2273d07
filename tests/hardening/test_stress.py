"""Mixed load against gunicorn on PostgreSQL, from a second process
(benchmarks/stress_load.py): browsing, subscribing (with replays) and funding (agreement, sign,
fund, the bank's signed confirmation, sometimes delivered twice) by many investors at once.

Afterwards the database is compared with what the server acknowledged: every 201 is exactly
one subscription and every subscription was acknowledged (none lost, none duplicated), every
confirmed payment funded its subscription once with one cash-in entry, the offerings' counters
match their subscriptions, no 5xx, and `ledger_verify` is clean. p50/p99 and throughput are
printed (a figure of a shared 2-core machine, not a goal).

`make test` runs a short version (STRESS_SHORT_SECONDS, default 10 s); `make stress` runs the
soak (`-m stress`, STRESS_SECONDS, default 60 s)."""

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db.models import Sum

from captable.models import Entry, Payment, Subscription
from captable.seals import ledger_seal_all
from captable.verification import ledger_verify
from common.auth import api_token_issue
from common.models import IdempotencyRecord
from tests.captable import test_subscriptions_http as subscriptions_http
from tests.captable.test_payments import escrow_of
from tests.captable.test_subscriptions import (
    assert_reservations_consistent,
    kyc_investor,
    open_offering,
)

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
LOAD_GENERATOR = ROOT / "benchmarks" / "stress_load.py"
THREADS = 8

server = subscriptions_http.server  # gunicorn (4 sync workers, --preload) on the test database

EXPECTED_STATUSES = {
    "browse": {"200"},
    "subscribe": {"201"},
    "fund": {"200", "201"},
    "webhook": {"200"},
}


def seed(investor_count: int) -> tuple[list[Any], dict[str, Any]]:
    offerings = [open_offering() for _ in range(2)]
    investors = [kyc_investor() for _ in range(investor_count)]
    plan = {
        "threads": THREADS,
        "offering_ids": [offering.pk for offering in offerings],
        "webhook_secret": settings.PAYMENTS_WEBHOOK_SECRET,
        "investors": [
            {"token": api_token_issue(user=i.user).token, "legal_name": i.legal_name}
            for i in investors
        ],
    }
    return offerings, plan


def run_load(plan: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    plan_path, result_path = tmp_path / "plan.json", tmp_path / "result.json"
    plan_path.write_text(json.dumps(plan))
    subprocess.run(
        [sys.executable, str(LOAD_GENERATOR), str(plan_path), str(result_path)],
        check=True,
        timeout=plan["seconds"] + 300,
    )
    return json.loads(result_path.read_text())


def print_figures(result: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """Printed past pytest's capture: the figures are the point of `make stress`."""
    with capsys.disabled():
        _print_figures(result)


def _print_figures(result: dict[str, Any]) -> None:
    print(
        f"\nmixed load: {result['requests']} requests in {result['seconds']} s = "
        f"{result['requests_per_second']} req/s, p50 {result['p50_ms']} ms, "
        f"p99 {result['p99_ms']} ms, {result['server_errors']} 5xx, "
        f"{len(result['transport_errors'])} transport errors; "
        f"{len(result['acknowledged'])} subscriptions acknowledged, "
        f"{len(result['funded'])} funded"
    )
    for kind, figures in result["per_kind"].items():
        print(f"  {kind}: {figures}")


def assert_database_matches(result: dict[str, Any], offerings: list[Any]) -> None:
    acknowledged = {ack["id"] for ack in result["acknowledged"]}
    # every acknowledged subscription is there once, and nothing else is
    assert len(acknowledged) == len(result["acknowledged"]), "two keys gave one subscription"
    stored = set(Subscription.objects.filter(offering__in=offerings).values_list("pk", flat=True))
    assert stored == acknowledged, (
        f"lost: {sorted(acknowledged - stored)[:10]}, unacknowledged: "
        f"{sorted(stored - acknowledged)[:10]}"
    )
    assert IdempotencyRecord.objects.filter(key__startswith="stress-").count() == len(acknowledged)
    # every confirmation acknowledged funded its subscription once, with one cash-in entry
    funded = set(result["funded"])
    assert len(funded) == len(result["funded"]), "a subscription was funded twice"
    assert (
        set(
            Subscription.objects.filter(offering__in=offerings, status="funded").values_list(
                "pk", flat=True
            )
        )
        == funded
    )
    cash_in = Entry.objects.filter(kind="cash_in")
    assert cash_in.count() == len(funded)
    # escrow is one account per investor and offering: what its funded subscriptions owe
    owed: dict[tuple[int, int], int] = defaultdict(int)
    for subscription in Subscription.objects.filter(pk__in=funded):
        owed[subscription.investor_id, subscription.offering_id] += (
            subscription.amount_minor + subscription.fee_minor
        )
    for subscription in Subscription.objects.filter(pk__in=funded):
        assert escrow_of(subscription) == owed[subscription.investor_id, subscription.offering_id]
    received = Payment.objects.filter(subscription__in=funded).aggregate(
        total=Sum("amount_received_minor")
    )["total"]
    assert received == sum(
        s.amount_minor + s.fee_minor for s in Subscription.objects.filter(pk__in=funded)
    )
    for offering in offerings:
        assert_reservations_consistent(offering)
    ledger_seal_all()
    report = ledger_verify()
    assert report.ok, report.summary()


def mixed_load(
    server: str, tmp_path: Path, capsys: Any, *, seconds: int, investor_count: int
) -> None:
    offerings, plan = seed(investor_count)
    result = run_load({**plan, "base": server, "seconds": seconds, "seed": 7}, tmp_path)
    print_figures(result, capsys)
    assert result["transport_errors"] == []
    assert result["server_errors"] == 0
    assert result["replay_mismatches"] == []
    for kind, figures in result["per_kind"].items():
        assert set(figures["statuses"]) <= EXPECTED_STATUSES[kind], (kind, figures)
    assert result["acknowledged"], "no subscription went through: no test"
    assert result["funded"], "no subscription was funded: no test"
    assert_database_matches(result, offerings)


def test_short_mixed_load_loses_and_duplicates_nothing(server, tmp_path, capsys):
    seconds = int(os.environ.get("STRESS_SHORT_SECONDS", "10"))
    mixed_load(server, tmp_path, capsys, seconds=seconds, investor_count=80)


@pytest.mark.stress
def test_mixed_load_soak_loses_and_duplicates_nothing(server, tmp_path, capsys):
    seconds = int(os.environ.get("STRESS_SECONDS", "60"))
    mixed_load(server, tmp_path, capsys, seconds=seconds, investor_count=240)

"""Subscriptions under concurrency on PostgreSQL: real threads, each with its own connection.

- 200 subscribers race for the last 50 units: never oversold, one subscription each, the rest
  waitlisted in a strict order, no unexpected error;
- one investor's concurrent subscriptions that fit the maximum one at a time but not together:
  exactly one succeeds;
- the same Idempotency-Key sent 20 times at once over HTTP: exactly one subscription;
- Reg D 506(b): 40 sophisticated non-accredited investors at once, exactly 35 get in;
- cancellations racing new subscriptions: the counter matches the subscriptions, the waitlist
  is served, no deadlock; a unit released while someone joins the waitlist is never left unsold.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import Client

from captable import subscriptions
from captable.models import Subscription, SubscriptionStatusChange
from captable.subscription_selectors import waitlist_position
from common.errors import DomainError
from investors.models import Investor
from offerings.exemptions import Exemption
from offerings.models import FundingModel
from tests.captable.test_subscriptions import (
    assert_reservations_consistent,
    kyc_investor,
    old_user,
    open_offering,
    reserved_quanta,
    small_offering,
    subscribe,
)
from tests.conftest import bearer

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

# Threads in flight at once: well under the test server's max_connections (200), which the
# other xdist worker shares.
IN_FLIGHT = 48


def race(calls: list[Callable[[], Any]], *, in_flight: int = IN_FLIGHT) -> list[str]:
    """Run every call on a pool of threads released together; each call's outcome is "ok", the
    `code` of the DomainError it raised, or "error: ..." for anything else (never swallowed:
    the tests assert there is none)."""
    start = threading.Event()

    def run(call: Callable[[], Any]) -> str:
        start.wait(timeout=30)
        try:
            call()
            return "ok"
        except DomainError as error:
            return error.code
        except Exception as error:
            return f"error: {error!r}"
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=min(in_flight, len(calls))) as pool:
        futures = [pool.submit(run, call) for call in calls]
        start.set()
        return [future.result(timeout=300) for future in futures]


def test_two_hundred_subscribers_race_for_the_last_fifty_units():
    # given an offering of 1,000 units with 950 already reserved
    offering = small_offering(1_000)
    subscribe(kyc_investor(), offering, 950)
    racers = [kyc_investor() for _ in range(200)]

    # when 200 investors subscribe for one unit each at once
    outcomes = race([partial(subscribe, investor, offering, 1) for investor in racers])

    # then nothing failed unexpectedly, and the supply was never exceeded
    assert Counter(outcomes) == {"ok": 200}, Counter(outcomes)
    assert reserved_quanta(offering) == 1_000 == subscriptions.supply_quanta(offering)
    raced = Subscription.objects.filter(investor__in=racers)
    by_status = Counter(raced.values_list("status", flat=True))
    assert by_status == {"reserved": 50, "waitlisted": 150}
    # every investor has exactly one subscription and one history row
    assert sorted(raced.values_list("investor_id", flat=True)) == sorted(i.pk for i in racers)
    assert SubscriptionStatusChange.objects.filter(subscription__in=raced).count() == 200
    # the waitlist is a strict order: positions 1..150, by arrival (id)
    waiting = list(raced.filter(status="waitlisted").order_by("pk"))
    assert [waitlist_position(s) for s in waiting] == list(range(1, 151))
    assert_reservations_consistent(offering)


def test_one_investor_cannot_exceed_the_maximum_with_concurrent_subscriptions():
    # given a maximum of 10 units per investor
    offering = open_offering(max_investment_units=10)
    investor = kyc_investor()

    # when the investor sends 8 subscriptions of 6 units at once
    outcomes = race([lambda: subscribe(investor, offering, 6) for _ in range(8)])

    # then exactly one went through; each of the others was refused for the maximum
    assert Counter(outcomes) == {"ok": 1, "above_maximum_investment": 7}
    assert list(
        Subscription.objects.filter(investor=investor).values_list("quanta", flat=True)
    ) == [6]
    assert reserved_quanta(offering) == 6


def test_the_same_idempotency_key_twenty_times_at_once_creates_one_subscription():
    offering = open_offering()
    investor = kyc_investor()
    headers: dict[str, Any] = {**bearer(investor.user), "HTTP_IDEMPOTENCY_KEY": "double-click"}
    path = f"/api/v1/offerings/{offering.pk}/subscriptions"
    body = json.dumps({"units": "3"})
    responses: list[Any] = []
    lock = threading.Lock()

    def send() -> None:
        response = Client().post(path, data=body, content_type="application/json", **headers)
        with lock:
            responses.append(response)

    outcomes = race([send for _ in range(20)], in_flight=20)

    assert outcomes == ["ok"] * 20
    assert Subscription.objects.filter(investor=investor).count() == 1
    assert reserved_quanta(offering) == 3
    created = [r for r in responses if r.status_code == 201]
    conflicts = [r for r in responses if r.status_code == 409]
    assert len(created) + len(conflicts) == 20, [r.status_code for r in responses]
    assert all(r.json()["code"] == "idempotency_key_in_use" for r in conflicts)
    first = [r for r in created if r.get("Idempotent-Replayed") != "true"]
    assert len(first) == 1
    assert all(r.content == first[0].content for r in created)


@pytest.mark.parametrize("rate_limited", [True, False])
def test_one_investor_cannot_exceed_the_maximum_with_concurrent_api_subscriptions(
    settings, rate_limited
):
    # Through the API the investor's row is locked in the statement that counts the call and
    # claims its key; the totals are read by the next statement, after the lock. (Without a
    # limit there is no rate counter row, which would serialize the investor's calls too.)
    if not rate_limited:
        settings.RATE_LIMITS = {}
    offering = open_offering(max_investment_units=10)
    investor = kyc_investor()
    path = f"/api/v1/offerings/{offering.pk}/subscriptions"
    codes: list[str] = []
    lock = threading.Lock()

    def send(number: int) -> None:
        headers: dict[str, Any] = {**bearer(investor.user), "HTTP_IDEMPOTENCY_KEY": f"o-{number}"}
        response = Client().post(
            path, data=json.dumps({"units": "6"}), content_type="application/json", **headers
        )
        with lock:
            codes.append("ok" if response.status_code == 201 else response.json()["code"])

    assert race([partial(send, number) for number in range(8)]) == ["ok"] * 8

    assert Counter(codes) == {"ok": 1, "above_maximum_investment": 7}
    assert list(
        Subscription.objects.filter(investor=investor).values_list("quanta", flat=True)
    ) == [6]
    assert reserved_quanta(offering) == 6


def test_the_investor_lock_waits_as_locks_do_not_as_long_as_the_key_waits(settings):
    # The investor's row is locked in the statement that claims the key, whose wait is
    # bounded (IDEMPOTENCY_WAIT_SECONDS); the row lock itself must wait as usual.
    settings.IDEMPOTENCY_WAIT_SECONDS = 0.5
    offering = open_offering()
    investor = kyc_investor()
    path = f"/api/v1/offerings/{offering.pk}/subscriptions"
    headers: dict[str, Any] = {**bearer(investor.user), "HTTP_IDEMPOTENCY_KEY": "patient"}
    client = Client()
    # (a first request loads the API, so that the one measured below is quick to start)
    assert client.post(path, data="{}", content_type="application/json").status_code == 401
    holding = threading.Event()

    def hold_the_investor_row() -> None:
        try:
            with transaction.atomic():
                Investor.objects.select_for_update().get(pk=investor.pk)
                holding.set()
                time.sleep(1.5)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_investor_row)
    holder.start()
    assert holding.wait(timeout=30)
    began = time.monotonic()
    response = client.post(
        path, data=json.dumps({"units": "2"}), content_type="application/json", **headers
    )
    waited = time.monotonic() - began
    holder.join(timeout=30)
    assert response.status_code == 201, response.content
    assert waited > 0.9, "it did not wait for the investor's row"
    assert reserved_quanta(offering) == 2


def test_at_most_35_non_accredited_purchasers_in_a_506b_offering_under_concurrency():
    offering = open_offering(
        exemption=Exemption.REG_D_506B, funding_model=FundingModel.KEEP_WHAT_YOU_RAISE
    )
    sophisticated = [kyc_investor(user=old_user(), is_sophisticated=True) for _ in range(40)]

    outcomes = race([partial(subscribe, investor, offering, 1) for investor in sophisticated])

    assert Counter(outcomes) == {"ok": 35, "non_accredited_quota_full": 5}
    assert (
        Subscription.objects.filter(offering=offering, is_non_accredited_purchaser=True).count()
        == 35
    )


def test_cancellations_racing_new_subscriptions_keep_the_counter_and_serve_the_waitlist():
    # given a sold-out offering of 20 units, one unit each for 20 holders
    offering = small_offering(20)
    holders = [kyc_investor() for _ in range(20)]
    held = [subscribe(holder, offering, 1) for holder in holders]
    newcomers = [kyc_investor() for _ in range(20)]

    # when the 20 holders cancel while 20 newcomers subscribe
    cancels = [
        partial(subscriptions.subscription_cancel, actor=holder.user, subscription_id=s.pk)
        for holder, s in zip(holders, held, strict=True)
    ]
    subscribes = [partial(subscribe, investor, offering, 1) for investor in newcomers]
    calls: list[Callable[[], Any]] = [
        call for pair in zip(cancels, subscribes, strict=True) for call in pair
    ]
    outcomes = race(calls)

    # then every call went through, and every freed unit went to a newcomer
    assert Counter(outcomes) == {"ok": 40}, Counter(outcomes)
    assert reserved_quanta(offering) == 20
    statuses = Counter(
        Subscription.objects.filter(investor__in=newcomers).values_list("status", flat=True)
    )
    assert statuses == {"reserved": 20}
    assert_reservations_consistent(offering)


ROUNDS = 30


def test_a_unit_released_while_someone_joins_the_waitlist_is_never_left_unsold():
    """The last unit is cancelled at the very moment a newcomer finds the offering sold out:
    whichever commits first, the newcomer ends up with the unit (never waitlisted beside it)."""
    for _ in range(ROUNDS):
        # given a sold-out offering of one unit
        offering = small_offering(1)
        holder, newcomer = kyc_investor(), kyc_investor()
        held = subscribe(holder, offering, 1)

        # when the holder cancels while the newcomer subscribes
        outcomes = race(
            [
                partial(
                    subscriptions.subscription_cancel, actor=holder.user, subscription_id=held.pk
                ),
                partial(subscribe, newcomer, offering, 1),
            ],
            in_flight=2,
        )

        # then the newcomer holds the unit
        assert outcomes == ["ok", "ok"]
        assert Subscription.objects.get(investor=newcomer).status == "reserved"
        assert reserved_quanta(offering) == 1
        assert_reservations_consistent(offering)

"""What the database itself enforces: check constraints, append-only history (triggers on
PostgreSQL and SQLite) and compare-and-swap under real concurrency (PostgreSQL)."""

from __future__ import annotations

import threading

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F

from common.errors import InvalidTransition
from offerings import services
from offerings.models import (
    Offering,
    OfferingStatus,
    OfferingStatusChange,
    SponsorStatusChange,
)
from tests.offerings.factories import advance, new_offering, staff


def refused_by_database(action) -> bool:
    try:
        with transaction.atomic():
            action()
    except DatabaseError:
        return True
    return False


def assert_history_is_append_only() -> None:
    offering = new_offering()
    change = OfferingStatusChange.objects.get(offering=offering)
    sponsor_change = SponsorStatusChange.objects.filter(sponsor=offering.sponsor).first()
    assert sponsor_change is not None

    # then: neither the ORM nor raw SQL can rewrite or remove history
    assert refused_by_database(
        lambda: OfferingStatusChange.objects.filter(pk=change.pk).update(reason="edited")
    )
    assert refused_by_database(lambda: OfferingStatusChange.objects.filter(pk=change.pk).delete())
    assert refused_by_database(
        lambda: SponsorStatusChange.objects.filter(pk=sponsor_change.pk).update(to_status="x")
    )
    table = OfferingStatusChange._meta.db_table
    with connection.cursor() as cursor:
        assert refused_by_database(lambda: cursor.execute(f"DELETE FROM {table}"))

    change.refresh_from_db()
    assert change.reason == ""
    assert OfferingStatusChange.objects.filter(offering=offering).count() == 1
    # appending still works
    advance(offering, to="in_review")
    assert OfferingStatusChange.objects.filter(offering=offering).count() == 2


@pytest.mark.django_db
@pytest.mark.embedded
def test_history_is_append_only():
    """Runs on both databases: PostgreSQL in the full suite, SQLite in the embedded one."""
    assert_history_is_append_only()


@pytest.mark.django_db
@pytest.mark.postgres_only
def test_postgresql_refuses_history_changes_with_its_trigger():
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE t.tgname LIKE %s ORDER BY c.relname",
            ["offerings_%_append_only"],
        )
        tables = [row[0] for row in cursor.fetchall()]
    assert tables == [
        "offerings_netassetvalue",
        "offerings_offeringdocument",
        "offerings_offeringstatuschange",
        "offerings_sponsorstatuschange",
    ]
    offering = new_offering()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        OfferingStatusChange.objects.filter(offering=offering).update(reason="rewritten")


@pytest.mark.django_db
@pytest.mark.embedded
@pytest.mark.parametrize(
    "update",
    [
        {"price_per_unit_minor": 0},
        {"quanta_per_unit": 3},
        {"price_per_unit_minor": 100_01, "quanta_per_unit": 100},
        {"min_investment_quanta": F("max_investment_quanta") + 1},
        {"target_raise_minor": F("max_raise_minor") + 1},
        {"closes_at": F("opens_at")},
        {"units_reserved_quanta": F("units_authorized_quanta") + 1},
        {"units_issued_quanta": -1},
        {"currency": "GBP"},
        {"status": "live"},  # live without went_live_at
        {"status": "bogus"},
    ],
)
def test_check_constraints_back_the_rules(update):
    offering = new_offering()
    with pytest.raises(IntegrityError), transaction.atomic():
        Offering.objects.filter(pk=offering.pk).update(**update)


@pytest.mark.django_db
@pytest.mark.embedded
def test_reservations_up_to_the_supply_are_allowed():
    offering = new_offering()
    Offering.objects.filter(pk=offering.pk).update(
        units_reserved_quanta=F("units_authorized_quanta") - 10, units_issued_quanta=10
    )
    offering.refresh_from_db()
    assert offering.units_available_quanta == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres_only
def test_two_staff_approving_at_once_give_one_approval():
    offering = advance(new_offering(), to="in_review")
    reviewers = [staff(), staff()]
    barrier = threading.Barrier(len(reviewers))
    outcomes: list[str] = []
    lock = threading.Lock()

    def approve(reviewer) -> None:
        try:
            barrier.wait(timeout=10)
            services.offering_approve(actor=reviewer, offering_id=offering.pk)
            result = "approved"
        except InvalidTransition:
            result = "conflict"
        except Exception as error:  # pragma: no cover - reported by the assertion below
            result = repr(error)
        finally:
            connection.close()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=approve, args=(r,)) for r in reviewers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["approved", "conflict"]
    offering.refresh_from_db()
    assert offering.status == OfferingStatus.APPROVED
    approvals = OfferingStatusChange.objects.filter(offering=offering, to_status="approved")
    assert approvals.count() == 1
    assert approvals.get().actor_id in {r.pk for r in reviewers}

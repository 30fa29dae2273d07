"""PostgreSQL only: the DELETE trigger on history rows and real concurrent writers."""

import threading

import pytest
from django.db import IntegrityError, connection, transaction

from common.errors import InvalidTransition
from investors.models import InvestorDecision
from investors.services import investor_kyc_decide
from tests.conftest import new_user
from tests.investors.factories import make_investor

pytestmark = [pytest.mark.django_db, pytest.mark.postgres_only]


def test_history_rows_cannot_be_deleted_on_postgres():
    investor = make_investor()
    InvestorDecision.objects.create(
        investor=investor, subject="kyc", from_status="", to_status="pending", reason="r"
    )
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM investors_investordecision")
    assert InvestorDecision.objects.filter(investor=investor).count() == 1


# --- concurrency ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_kyc_decisions_only_one_wins():
    staff = new_user(is_staff=True)
    investor = make_investor()
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def decide(decision: str) -> None:
        barrier.wait()
        try:
            investor_kyc_decide(
                investor_id=investor.pk, decided_by=staff, decision=decision, reason="race"
            )
            outcomes.append("won")
        except InvalidTransition:
            outcomes.append("lost")
        finally:
            connection.close()

    threads = [
        threading.Thread(target=decide, args=(d,))
        for d in ("approved", "rejected", "approved", "rejected")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["lost", "lost", "lost", "won"]
    assert InvestorDecision.objects.filter(investor=investor, subject="kyc").count() == 1

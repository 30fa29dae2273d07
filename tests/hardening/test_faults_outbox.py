"""A crash between a real service's commit and the relay of its outbox row loses no work.

tests/common/test_outbox.py shows it with a test task; here the service is staff starting a
distribution's pay run (`distribution_pay`: payouts computed, the run enqueued through the
outbox) in another OS process that dies right after COMMIT, before its on-commit relay. The
row is still pending; the periodic relay (Celery beat's `common.outbox_relay`) hands it to
the broker and a real worker pays every holder exactly once."""

import os
import subprocess
import sys
import textwrap

import pytest

from captable.models import Distribution, DistributionStatus, Payout
from common.models import OutboxMessage
from common.outbox import outbox_relay
from tests.captable import test_distributions_worker as distributions_worker
from tests.captable.test_closing import staff
from tests.conftest import database_url_of_test_db
from tests.reports.test_worker import wait_until, worker_logs

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

broker = distributions_worker.broker
media_root = distributions_worker.media_root
start_worker = distributions_worker.start_worker

START_PAYING_THEN_DIE = textwrap.dedent(
    """
    import os, django
    django.setup()
    from django.db import transaction
    from captable.distributions import distribution_pay
    from common.models import User
    with transaction.atomic():
        # Registered before the outbox's own on-commit relay, so it runs first: the process
        # dies after COMMIT and before the relay.
        transaction.on_commit(lambda: os._exit(17))
        distribution_pay(
            actor=User.objects.get(pk=int(os.environ["STAFF_ID"])),
            distribution_id=int(os.environ["DISTRIBUTION_ID"]),
        )
    raise SystemExit("unreachable: the on-commit crash did not happen")
    """
)


def test_a_pay_run_committed_by_a_process_that_died_before_relaying_is_still_paid(
    start_worker, tmp_path
):
    amount_minor = 12_345_67
    offering, holders, distribution = distributions_worker.funded_distribution(
        [1 + n % 4 for n in range(12)], amount_minor
    )
    # given a service process that dies right after committing the start of the pay run
    result = subprocess.run(
        [sys.executable, "-c", START_PAYING_THEN_DIE],
        env={
            **os.environ,
            "DATABASE_URL": database_url_of_test_db(),
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "STAFF_ID": str(staff().pk),
            "DISTRIBUTION_ID": str(distribution.pk),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 17, result.stderr
    # then its change committed (payouts computed) and the work waits in the outbox, unsent
    message = OutboxMessage.objects.get(kwargs={"distribution_id": distribution.pk})
    assert message.status == OutboxMessage.Status.PENDING
    assert Payout.objects.filter(distribution=distribution).count() == len(holders)
    assert not Payout.objects.filter(distribution=distribution, paid_at__isnull=False).exists()
    # when the periodic relay runs, with a worker listening
    start_worker()
    assert outbox_relay() == 1
    assert outbox_relay() == 0  # sent once
    # then the worker pays every holder exactly once
    if not wait_until(lambda: distributions_worker.is_paid(distribution), 120):
        pytest.fail(f"the relayed run never finished:\n{worker_logs(tmp_path)}")
    assert Distribution.objects.get(pk=distribution.pk).status == DistributionStatus.PAID
    distributions_worker.assert_each_holder_paid_once(offering, holders, distribution, amount_minor)

"""The project's Celery app as a test worker runs it: `celery -A tests.reports.worker_app`.

Only broker settings differ, so a killed worker's unacknowledged task comes back in seconds
instead of after Redis' default hour (`visibility_timeout`), and each test has its own queue.
Production sets the same transport options in its settings (see the reports README note).
"""

from __future__ import annotations

import os

from config.celery import app

app.conf.broker_transport_options = {
    "visibility_timeout": int(os.environ.get("BRICKBOOK_TEST_VISIBILITY_TIMEOUT", "5")),
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}
if os.environ.get("BRICKBOOK_TEST_QUEUE"):
    app.conf.task_default_queue = os.environ["BRICKBOOK_TEST_QUEUE"]

__all__ = ["app"]

"""The Celery app's worker settings (config/celery.py)."""

from __future__ import annotations

import gc
from collections.abc import Callable

from celery.signals import worker_process_init, worker_ready

import config.celery  # noqa: F401 (connects the worker signals)


def _frozen_after(send: Callable[[], object]) -> int:
    assert gc.get_freeze_count() == 0
    try:
        send()
        return gc.get_freeze_count()
    finally:
        gc.unfreeze()


def test_a_started_worker_freezes_what_starting_it_allocated() -> None:
    # when a solo worker (or a prefork parent) reports ready: then this process's objects
    # (it has loaded Django too) are out of the collector's reach
    assert _frozen_after(lambda: worker_ready.send(sender=None)) > 10_000


def test_each_prefork_child_freezes_once_initialised() -> None:
    assert _frozen_after(lambda: worker_process_init.send(sender=None)) > 10_000

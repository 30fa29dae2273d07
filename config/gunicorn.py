"""gunicorn settings every Brickbook web process runs with (`gunicorn -c python:config.gunicorn
config.wsgi`): `make serve`, the benchmarks and production. Command-line flags (workers, bind)
still apply on top.

The cyclic garbage collector walks every tracked object of a generation when it collects it;
a worker holds ~300,000 long-lived objects from loading Django, the models and the API, and
the oldest generation's collections walked them all again and again (~4 % of a subscribe
request's CPU, measured with gc.callbacks). Freezing what exists once the app is loaded moves
those objects to a permanent generation the collector no longer visits; everything a request
allocates is still collected as before (the thresholds are untouched).
"""

from __future__ import annotations

import gc
from typing import Any


def post_worker_init(worker: Any) -> None:
    """Runs in each worker once it has imported the WSGI application."""
    gc.freeze()

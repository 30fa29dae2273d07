"""The gunicorn settings every web process runs with (config/gunicorn.py)."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

from config import gunicorn as gunicorn_settings

ROOT = Path(__file__).resolve().parent.parent


def test_a_worker_freezes_what_loading_the_app_allocated() -> None:
    # given a worker's objects from loading the app (this process has loaded Django too)
    assert gc.get_freeze_count() == 0
    try:
        # when gunicorn calls the hook after loading the WSGI application
        gunicorn_settings.post_worker_init(worker=None)

        # then those objects are out of the collector's reach (the permanent generation)
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()


def test_gunicorn_accepts_the_settings_module() -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "--check-config",
            "--config",
            "python:config.gunicorn",
            "config.wsgi",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr

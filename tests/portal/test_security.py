"""Production settings: the portal's session and CSRF cookies are HTTPS-only (checked in a
fresh interpreter with the production environment, as `make check-deploy` runs it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

pytestmark = [pytest.mark.embedded]

ROOT = Path(__file__).resolve().parents[2]


def test_production_cookies_are_secure_and_http_only():
    env = {
        **os.environ,
        "BRICKBOOK_ENV": "production",
        "SECRET_KEY": "x" * 60,
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "LEDGER_HMAC_KEY": "test",
        "PAYMENTS_WEBHOOK_SECRET": "test",
        "ALLOWED_HOSTS": "brickbook.example.com",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    script = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY, "
        "'django.middleware.csrf.CsrfViewMiddleware' in s.MIDDLEWARE)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.split() == ["True", "True", "True", "True"]

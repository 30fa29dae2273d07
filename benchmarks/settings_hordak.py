"""Brickbook's settings plus django-hordak, for the ledger-transfer benchmark only.

django-hordak (a dev dependency) is the reference double-entry ledger the benchmark compares
against; it needs `mptt` (its account tree) and `hordak`. `djmoney` is already installed by
the project, and hordak reads CURRENCIES/DEFAULT_CURRENCY ("USD") from these settings.
"""

from __future__ import annotations

from config.settings import *  # noqa: F403
from config.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "mptt", "hordak"]

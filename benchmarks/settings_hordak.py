"""Brickbook's settings plus django-hordak, for the ledger-transfer benchmark only.

django-hordak (a dev dependency) is the reference double-entry ledger the benchmark compares
against; it needs `mptt` (its account tree) and `hordak`. `djmoney` is already installed by
the project, and hordak reads CURRENCIES/DEFAULT_CURRENCY ("USD") from these settings.
"""

from __future__ import annotations

from config.settings import *  # noqa: F403
from config.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "mptt", "hordak"]

# As production runs with a broker: commits do not seal; beat seals in batches. The ledger
# benchmark does that batch sealing itself, inside Brickbook's timed figure.
LEDGER_SEAL_ON_COMMIT = False

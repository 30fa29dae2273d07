from __future__ import annotations

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _empty_cache():
    """The public list page is cached per process; each test starts without it."""
    cache.clear()
    yield
    cache.clear()

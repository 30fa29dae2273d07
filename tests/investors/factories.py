"""Small factories for investor tests."""

from __future__ import annotations

import itertools
import json
from typing import Any

from django.test import Client

from common.models import User
from investors.models import Investor
from tests.conftest import new_user

_sequence = itertools.count(1)

STRONG_PASSWORD = "plum-orchard-velvet-42"


def make_investor(*, user: User | None = None, **fields: Any) -> Investor:
    """An investor profile (KYC pending) with sensible US defaults; override any field."""
    user = user or new_user(email=f"investor{next(_sequence)}@example.com")
    values: dict[str, Any] = {
        "legal_name": f"Investor {user.pk}",
        "kind": "individual",
        "country": "US",
        "us_state": "NY",
        "financials_currency": "USD",
    }
    values.update(fields)
    return Investor.objects.create(user=user, **values)


def post_json(client: Client, path: str, body: Any, **headers: Any) -> Any:
    return client.post(path, data=json.dumps(body), content_type="application/json", **headers)


def patch_json(client: Client, path: str, body: Any, **headers: Any) -> Any:
    return client.patch(path, data=json.dumps(body), content_type="application/json", **headers)


def usd(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "USD"}

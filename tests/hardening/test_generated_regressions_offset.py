"""What the stress run of the generated API tests found, kept as the failing example: an
offset no database can hold was a 500 (PostgreSQL: bigint out of range; SQLite: "datatype
mismatch", reported as an IntegrityError). The pagination schema bounds the offset
(common/pagination.py), so it is refused by validation on both databases."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.conftest import bearer, new_user

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


@pytest.mark.parametrize("path", ["/api/v1/sponsors", "/api/v1/ledger/reversal-requests"])
def test_an_offset_beyond_64_bits_is_a_422(api_client: Client, path: str) -> None:
    # found by the stress run of schemathesis: GET /sponsors?offset=10599510212877574209536
    response = api_client.get(
        f"{path}?offset=10599510212877574209536",
        **bearer(new_user(is_staff=True)),  # type: ignore[arg-type]
    )
    assert response.status_code == 422, response.content
    body = response.json()
    assert body["code"] == "invalid_request"
    assert body["errors"][0]["loc"] == ["query", "offset"]


def test_an_offset_inside_the_bound_still_pages(api_client: Client) -> None:
    response = api_client.get(
        "/api/v1/sponsors?offset=4611686018427387904",
        **bearer(new_user(is_staff=True)),  # type: ignore[arg-type]
    )
    assert response.status_code == 200, response.content
    assert response.json()["items"] == []

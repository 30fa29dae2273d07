"""What the generated API tests found, each kept as the exact failing example (the request
schemathesis printed), so it stays fixed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from tests.conftest import bearer, new_user
from tests.hardening.harness import openapi_document

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def test_an_unparsable_body_is_a_422_in_the_common_shape(api_client: Client) -> None:
    # found: POST /auth/token with the body b"\x00" was a 400 {"code": "http_error"},
    # a status the operation does not document
    response = api_client.post("/api/v1/auth/token", data=b"\x00", content_type="application/json")
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "malformed_body"
    assert body["detail"].startswith("The request body is not valid JSON")
    assert "422" in openapi_document()["paths"]["/api/v1/auth/token"]["post"]["responses"]


def test_a_path_id_that_is_not_a_number_is_a_json_404(api_client: Client) -> None:
    # found: POST /investors/§#Â…/kyc answered Django's HTML 404 page
    staff = new_user(is_staff=True)
    response = api_client.post(
        "/api/v1/investors/%C2%A7%23%C3%82%1B%3B/kyc",
        data={"decision": "approved", "reason": "x"},
        content_type="application/json",
        **bearer(staff),  # type: ignore[arg-type]
    )
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found.", "code": "not_found"}


def test_outside_the_api_a_missing_page_is_still_html(api_client: Client) -> None:
    response = api_client.get("/no-such-page-anywhere/")
    assert response.status_code == 404
    assert "application/json" not in response["Content-Type"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/offerings/2021/close", {"reason": "slug_taken"}),
        (
            "/api/v1/offerings/2021/early-close",
            {"closes_at": "2000-01-01T00:00:00Z", "reason": "slug_taken"},
        ),
    ],
)
def test_closing_an_offering_that_does_not_exist_is_a_404(
    api_client: Client, path: str, body: dict[str, Any]
) -> None:
    # found: both were a 500 (Offering.DoesNotExist escaped the closing service)
    staff = new_user(is_staff=True)
    response = api_client.post(
        path,
        data=body,
        content_type="application/json",
        **bearer(staff),  # type: ignore[arg-type]
    )
    assert response.status_code == 404, response.content
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize(
    "operation",
    [
        ("/api/v1/offerings", "get"),
        ("/api/v1/offerings/{offering_id}", "get"),
        ("/api/v1/sponsors/{sponsor_id}", "get"),
    ],
)
def test_public_reads_say_a_token_is_optional(api_client: Client, operation: Any) -> None:
    # found: the document required a token for GET /offerings, which answers anonymous
    # callers with 200 (schemathesis: "schema-violating request accepted")
    path, method = operation
    security = openapi_document()["paths"][path][method]["security"]
    assert {} in security
    assert any(requirement for requirement in security)  # a token is still understood
    concrete = path.replace("{offering_id}", "1").replace("{sponsor_id}", "1")
    assert api_client.get(concrete).status_code in (200, 404)


@pytest.mark.parametrize("reason", ["\x00nul", "\ud800", ["ok", "\x00"]])
def test_text_the_database_cannot_store_is_a_422(api_client: Client, reason: Any) -> None:
    # found by test_bad_input: POST /sponsors/{id}/reject {"reason": "\x00nul"} was a 500
    # on PostgreSQL ("text fields cannot contain NUL (0x00) bytes")
    from offerings.models import Sponsor
    from offerings.services import sponsor_apply

    sponsor = sponsor_apply(actor=new_user(), name="Pending Realty")
    response = api_client.post(
        f"/api/v1/sponsors/{sponsor.pk}/reject",
        data=json.dumps({"reason": reason}),
        content_type="application/json",
        **bearer(new_user(is_staff=True)),  # type: ignore[arg-type]
    )
    assert response.status_code == 422, response.content
    assert "NUL" in response.json()["detail"]
    assert Sponsor.objects.get(pk=sponsor.pk).status == "pending"


def test_an_integer_beyond_64_bits_is_a_422(api_client: Client) -> None:
    # found by test_bad_input on SQLite: POST /transfers/forced with an offering_id of 10**40
    # was a 500 (OverflowError: Python int too large to convert to SQLite INTEGER)
    response = api_client.post(
        "/api/v1/transfers/forced",
        data=json.dumps(
            {
                "offering_id": 10**40,
                "seller_investor_id": 1,
                "buyer_investor_id": 2,
                "units": "1",
                "legal_basis": "court_order",
                "reason": "x",
                "document_reference": "x",
            }
        ),
        content_type="application/json",
        **bearer(new_user(is_staff=True)),  # type: ignore[arg-type]
    )
    assert response.status_code == 422, response.content
    assert "64 bits" in response.json()["detail"]


def test_the_waterfall_read_documents_its_409() -> None:
    # found: schemathesis ST103 "undocumented status code" as every signed-in role — the
    # read answers 409 while an offering has no waterfall terms
    responses = openapi_document()["paths"]["/api/v1/offerings/{offering_id}/waterfall"]["get"]
    assert "409" in responses["responses"]


def test_the_cap_table_documents_json_beside_its_files() -> None:
    # found by the schemathesis stress profile: GET /offerings/{id}/captable answered JSON
    # (its default) while the document listed only CSV and XLSX for the 200
    document = openapi_document()
    content = document["paths"]["/api/v1/offerings/{offering_id}/captable"]["get"]["responses"][
        "200"
    ]["content"]
    assert {"application/json", "text/csv"} <= set(content)
    reference = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert reference in document["components"]["schemas"]


@pytest.mark.parametrize("sent", [False, True, "1200", 12.5])
def test_an_integer_field_refuses_booleans_and_strings(api_client: Client, sent: Any) -> None:
    # found by the schemathesis stress profile as a sponsor (ST201, "schema-violating request
    # accepted"): POST /properties with "projected_cash_yield_bps": false was a 201, stored as 0
    from offerings.models import Property
    from tests.offerings.factories import approved_sponsor, member_of

    headers = bearer(member_of(approved_sponsor(name="Harbor Realty")))
    body = {
        "name": "Harbor Point",
        "address_line1": "9 Dock Rd",
        "city": "Boston",
        "country": "US",
        "property_type": "office",
        "projected_cash_yield_bps": sent,
    }
    response = api_client.post(
        "/api/v1/properties",
        data=json.dumps(body),
        content_type="application/json",
        **headers,  # type: ignore[arg-type]
    )
    assert response.status_code == 422, response.content
    assert response.json()["errors"][0]["loc"][-1] == "projected_cash_yield_bps"
    assert not Property.objects.exists()

    body["projected_cash_yield_bps"] = 650  # the same request with a JSON integer is taken
    accepted = api_client.post(
        "/api/v1/properties",
        data=json.dumps(body),
        content_type="application/json",
        **headers,  # type: ignore[arg-type]
    )
    assert accepted.status_code == 201, accepted.content
    assert Property.objects.get().projected_cash_yield_bps == 650

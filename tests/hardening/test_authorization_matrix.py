"""Object-level authorization, for every operation of the OpenAPI document that takes an
object id in its path: investor A and sponsor A, each holding side B's ids, get a 404 (or a
403) in the common error shape, nothing of side B in the body, and the database unchanged.
A read of side A's own object by its owner answers 200, so the ids used are real ones.

Lists answer only the caller's rows: side B's ids never appear in side A's lists.

`FOREIGN_IDS` is the explicit table: operation id → where side B's id for each path parameter
comes from (a key of `Side.ids`), and who owns side A's object (for the 200 check on reads). A
new operation with an id in its path and no row here fails the suite until someone adds one."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from tests.hardening.harness import (
    changed,
    database_picture,
    django_request_log_quiet,
    leaks,
    openapi_document,
    operations,
    other_side_markers,
    path_parameters,
    rolled_back,
)
from tests.hardening.world import Side, World, world_build

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

Row = tuple[dict[str, str], str | None]  # (path parameter → Side.ids key, owner of A's object)

INVESTOR, SPONSOR, STAFF = "investor", "sponsor", "staff"
DRAFT = {"offering_id": "draft_offering_id"}
LIVE = {"offering_id": "live_offering_id"}
CLOSED = {"offering_id": "offering_id"}
SUBSCRIPTION = {"subscription_id": "subscription_id"}
DISTRIBUTION = {"distribution_id": "distribution_id"}
PENDING_SPONSOR = {"sponsor_id": "pending_sponsor_id"}

FOREIGN_IDS: dict[str, list[Row]] = {
    # Approved sponsors are public; an application under review is its applicant's only.
    "offerings_api_sponsor_detail": [(PENDING_SPONSOR, SPONSOR)],
    "offerings_api_sponsor_approve": [(PENDING_SPONSOR, None)],
    "offerings_api_sponsor_reject": [(PENDING_SPONSOR, None)],
    # Live offerings are public; a draft is its sponsor's (and staff's) only.
    "offerings_api_offering_detail": [(DRAFT, SPONSOR)],
    "offerings_api_offering_update": [(DRAFT, None)],
    "offerings_api_offering_submit": [(DRAFT, None)],
    "offerings_api_offering_approve": [(DRAFT, None)],
    "offerings_api_offering_reject": [(DRAFT, None)],
    "offerings_api_offering_launch": [(DRAFT, None)],
    "offerings_api_offering_cancel": [(DRAFT, None)],
    "offerings_api_offering_history": [(DRAFT, SPONSOR)],
    "offerings_api_offering_document_upload": [(DRAFT, None)],
    "offerings_api_offering_document_list": [(DRAFT, SPONSOR)],
    "captable_captable_api_offering_captable": [(CLOSED, SPONSOR)],
    "investors_api_investor_detail": [({"investor_id": "investor_id"}, STAFF)],
    "investors_api_investor_kyc_decide": [({"investor_id": "investor_id"}, None)],
    "investors_api_investor_accreditation_verify": [({"investor_id": "investor_id"}, None)],
    "captable_api_transfer_detail": [({"transfer_id": "transfer_id"}, INVESTOR)],
    "captable_api_transfer_approve": [({"transfer_id": "transfer_id"}, None)],
    "captable_api_transfer_reject": [({"transfer_id": "transfer_id"}, None)],
    "captable_api_transfer_cancel": [({"transfer_id": "transfer_id"}, None)],
    "captable_api_forced_transfer_approve": [({"transfer_id": "transfer_id"}, None)],
    "captable_api_reversal_prepare": [({"entry_id": "entry_id"}, None)],
    "captable_api_reversal_detail": [({"reversal_id": "reversal_id"}, STAFF)],
    "captable_api_reversal_approve": [({"reversal_id": "reversal_id"}, None)],
    "captable_api_reversal_reject": [({"reversal_id": "reversal_id"}, None)],
    # Subscribing to side B's live offering is allowed (it is public): its draft is not.
    "captable_subscriptions_api_subscription_create": [(DRAFT, None)],
    "captable_subscriptions_api_subscription_detail": [(SUBSCRIPTION, INVESTOR)],
    "captable_subscriptions_api_subscription_agreement": [(SUBSCRIPTION, INVESTOR)],
    "captable_subscriptions_api_subscription_sign": [(SUBSCRIPTION, None)],
    "captable_subscriptions_api_subscription_cancel": [(SUBSCRIPTION, None)],
    "captable_subscriptions_api_subscription_reconfirm": [(SUBSCRIPTION, None)],
    "captable_subscriptions_api_subscription_reconfirmations": [(SUBSCRIPTION, INVESTOR)],
    "captable_payments_api_subscription_fund": [(SUBSCRIPTION, None)],
    "captable_payments_api_subscription_payments": [(SUBSCRIPTION, INVESTOR)],
    "captable_closing_api_close_request_prepare": [(LIVE, None)],
    "captable_closing_api_offering_close_detail": [(LIVE, STAFF)],
    "captable_closing_api_close_request_list": [(LIVE, STAFF)],
    "captable_closing_api_close_request_approve": [
        ({**LIVE, "close_request_id": "close_request_id"}, None)
    ],
    "captable_closing_api_close_request_reject": [
        ({**LIVE, "close_request_id": "close_request_id"}, None)
    ],
    "captable_closing_api_early_close_schedule": [(LIVE, None)],
    "captable_closing_api_offering_stats_detail": [(DRAFT, SPONSOR)],
    "captable_distributions_api_distribution_declare": [(CLOSED, None)],
    "captable_distributions_api_distribution_detail": [
        ({"distribution_id": "distribution_id"}, SPONSOR)
    ],
    "captable_distributions_api_distribution_approve": [
        ({"distribution_id": "distribution_id"}, None)
    ],
    "captable_distributions_api_distribution_fund": [
        ({"distribution_id": "distribution_id"}, None)
    ],
    "captable_distributions_api_distribution_pay": [({"distribution_id": "distribution_id"}, None)],
    "captable_distributions_api_distribution_cancel": [
        ({"distribution_id": "distribution_id"}, None)
    ],
    "captable_distributions_api_waterfall_terms_put": [(CLOSED, None)],
    # (no terms are set in the world: the owner's read is a 409, so no 200 check)
    "captable_distributions_api_waterfall_terms_detail": [(CLOSED, None)],
    "offerings_nav_api_nav_post": [(CLOSED, None)],
    "offerings_nav_api_nav_list": [(DRAFT, SPONSOR)],
    "offerings_nav_api_nav_as_of": [(DRAFT, None)],
    "captable_distributions_api_reinvestment_elect": [(CLOSED, None)],
    "captable_distributions_api_distribution_reversal_prepare": [(DISTRIBUTION, None)],
    "captable_distributions_api_distribution_reversal_approve": [(DISTRIBUTION, None)],
    "captable_withdrawals_api_withdrawal_detail": [({"withdrawal_id": "withdrawal_id"}, INVESTOR)],
    "reports_api_task_detail": [({"task_id": "task_id"}, STAFF)],
    "reports_api_statement_detail": [
        ({"statement_id": "statement_id"}, INVESTOR),
        ({"statement_id": "report_statement_id"}, SPONSOR),
    ],
    "reports_api_statement_pdf": [
        ({"statement_id": "statement_id"}, INVESTOR),
        ({"statement_id": "report_statement_id"}, SPONSOR),
    ],
}

# Lists: operation id → (Side.ids key of the rows listed, the role that owns side A's rows).
LISTS: dict[str, tuple[str, str]] = {
    "offerings_api_sponsor_list": ("sponsor_id", SPONSOR),
    "offerings_api_offering_list": ("draft_offering_id", SPONSOR),
    "offerings_api_issuer_list": ("issuer_id", SPONSOR),
    "offerings_api_property_list": ("property_id", SPONSOR),
    "captable_api_transfer_list": ("transfer_id", INVESTOR),
    "captable_subscriptions_api_subscription_list": ("subscription_id", INVESTOR),
    "captable_distributions_api_distribution_list": ("distribution_id", SPONSOR),
    "reports_api_statement_list": ("statement_id", INVESTOR),
    "captable_withdrawals_api_withdrawal_list": ("withdrawal_id", INVESTOR),
}

ERROR_KEYS = {"detail", "code", "errors"}


@pytest.fixture
def world(settings: Any, tmp_path: Any) -> World:
    settings.MEDIA_ROOT = tmp_path
    return world_build()


def id_operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for method, path, operation in operations(document)
        if path_parameters(path)
    ]


def test_every_operation_with_an_id_in_its_path_has_a_row() -> None:
    document = openapi_document()
    missing = [
        f"{method} {path} ({operation['operationId']})"
        for method, path, operation in id_operations(document)
        if operation["operationId"] not in FOREIGN_IDS
    ]
    assert not missing, "add these to FOREIGN_IDS (how to get side B's id):\n" + "\n".join(missing)
    stale = set(FOREIGN_IDS) - {op["operationId"] for _, _, op in id_operations(document)}
    assert not stale, f"rows for operations that no longer exist: {sorted(stale)}"
    for method, path, operation in id_operations(document):
        for parameters, _ in FOREIGN_IDS[operation["operationId"]]:
            assert set(parameters) == set(path_parameters(path)), f"{method} {path}"


# Bodies the schema alone cannot describe well enough for a generator (money with a known
# currency, decimals as strings, a file, a header): without them the request would stop at
# input validation (a 422) and prove nothing about authorization.
TODAY = "2026-01-02"
OVERRIDES: dict[str, dict[str, Any]] = {
    "offerings_api_offering_document_upload": {"multipart": {"kind": "other"}},
    "captable_subscriptions_api_subscription_create": {
        "body": {"units": "1"},
        "headers": {"HTTP_IDEMPOTENCY_KEY": "matrix-1"},
    },
    "captable_distributions_api_distribution_declare": {
        "body": {
            "amount": {"amount": "10.00", "currency": "USD"},
            "kind": "income",
            "record_date": TODAY,
            "payment_date": TODAY,
        }
    },
    "captable_distributions_api_waterfall_terms_put": {
        "body": {"preferred_return_rate": "0.08", "promote_tiers": [{"sponsor_share": "0.2"}]}
    },
    "offerings_nav_api_nav_post": {
        "body": {"nav_per_unit": {"amount": "100.00", "currency": "USD"}, "effective_date": TODAY}
    },
    "offerings_nav_api_nav_as_of": {"query": f"?on={TODAY}"},
}


def call_for(operation: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    """How to call the operation: its override, else the simplest JSON body its schema
    accepts (built from the schema, so a new operation needs no new code)."""
    override = OVERRIDES.get(operation["operationId"])
    if override is not None:
        return override
    content = operation.get("requestBody", {}).get("content", {})
    if not content:
        return {}
    body = simplest(next(iter(content.values())).get("schema", {}), document)
    return {"body": body if isinstance(body, dict) else {}}


SIMPLE_FORMATS = {
    "date": TODAY,
    "date-time": f"{TODAY}T00:00:00Z",
    "email": "someone@example.com",
    "uri": "https://example.com/",
}


def simplest(schema: dict[str, Any], document: dict[str, Any]) -> Any:
    """A value the JSON schema accepts: required properties only, the first enum value, the
    documented example, the lower bound."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return simplest(document["components"]["schemas"][name], document)
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            options = [each for each in schema[key] if each.get("type") != "null"]
            return simplest(options[0] if options else schema[key][0], document)
    if "enum" in schema or "const" in schema:
        return schema.get("enum", [schema.get("const")])[0]
    if schema.get("examples"):
        return schema["examples"][0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {
            name: simplest(schema["properties"][name], document)
            for name in schema.get("required", [])
        }
    if kind == "array":
        return [simplest(schema.get("items", {}), document)] * schema.get("minItems", 0)
    if kind in ("integer", "number"):
        return max(schema.get("minimum", 1), schema.get("exclusiveMinimum", 0) + 1)
    if kind == "boolean":
        return False
    if kind == "string":
        return SIMPLE_FORMATS.get(
            schema.get("format", ""), "x" * max(schema.get("minLength", 1), 1)
        )
    return None


def request(
    client: Client, world: World, role: str, method: str, path: str, call: dict[str, Any]
) -> Any:
    headers: dict[str, Any] = {
        "HTTP_AUTHORIZATION": f"Bearer {world.tokens[role]}",
        **call.get("headers", {}),
    }
    path += call.get("query", "")
    if method == "GET":
        return client.get(path, **headers)
    if "multipart" in call:
        upload = SimpleUploadedFile("memo.pdf", b"%PDF-1.4 x", content_type="application/pdf")
        return client.post(path, data={**call["multipart"], "file": upload}, **headers)
    data = json.dumps(call["body"]) if "body" in call else ""
    return client.generic(method, path, data, content_type="application/json", **headers)


def filled(path: str, parameters: dict[str, str], side: Side) -> str:
    for name, key in parameters.items():
        path = path.replace("{" + name + "}", str(side.ids[key]))
    return path


def test_side_a_never_reaches_side_b_objects(world: World) -> None:
    client, document = Client(), openapi_document()
    problems: list[str] = []
    tried = owned_reads = 0
    with django_request_log_quiet():
        for method, path, operation in id_operations(document):
            body = call_for(operation, document)
            # (an operation without a row fails the test above)
            for parameters, owner in FOREIGN_IDS.get(operation["operationId"], []):
                for role in (INVESTOR, SPONSOR):
                    foreign = filled(path, parameters, world.b)
                    problems += refused_without_trace(client, world, role, method, foreign, body)
                    tried += 1
                if method == "GET" and owner is not None:
                    own = filled(path, parameters, world.a)
                    answer = request(client, world, owner, method, own, body)
                    owned_reads += 1
                    if answer.status_code != 200:
                        problems.append(f"{owner} reading its own {own}: {answer.status_code}")
    print(
        f"\nauthorization matrix: {len(id_operations(document))} operations with ids, "
        f"{tried} foreign-id requests refused, {owned_reads} own reads answered 200"
    )
    assert not problems, "\n".join(problems)


def refused_without_trace(
    client: Client, world: World, role: str, method: str, path: str, body: dict[str, Any]
) -> list[str]:
    with rolled_back():
        before = database_picture()
        response = request(client, world, role, method, path, body)
        after = database_picture()
    label = f"{role} A {method} {path}"
    problems: list[str] = []
    if response.status_code not in (403, 404):
        problems.append(f"{label}: {response.status_code} {response.content[:300]!r}")
        return problems
    payload = response.json()
    if set(payload) - ERROR_KEYS:
        problems.append(f"{label}: body carries more than an error: {payload}")
    if leaked := leaks(response.content, other_side_markers(world)):
        problems.append(f"{label}: leaks {leaked}")
    if difference := changed(before, after):
        problems.append(f"{label}: changed {difference}")
    return problems


def listed_ids(payload: Any) -> set[int]:
    rows = payload["items"] if isinstance(payload, dict) else payload
    return {row["id"] for row in rows}


@pytest.mark.parametrize("operation_id", sorted(LISTS))
def test_lists_hold_only_the_callers_rows(world: World, operation_id: str) -> None:
    key, owner = LISTS[operation_id]
    path = next(
        path
        for method, path, operation in operations(openapi_document())
        if operation["operationId"] == operation_id and method == "GET"
    )
    client = Client()
    for role in (INVESTOR, SPONSOR):
        response = request(client, world, role, "GET", path, {"query": "?limit=100"})
        if response.status_code in (403, 404):
            continue  # not this role's list at all
        assert response.status_code == 200, response.content
        ids = listed_ids(response.json())
        assert world.b.ids[key] not in ids, f"{role} A sees side B's row in {path}"
        assert not leaks(response.content, other_side_markers(world))
        if role == owner:
            assert world.a.ids[key] in ids, f"{role} A misses its own row in {path}"


def test_every_list_operation_has_a_row() -> None:
    listing = {
        operation["operationId"]
        for method, path, operation in operations(openapi_document())
        if method == "GET" and not path_parameters(path) and "list" in operation["operationId"]
    }
    staff_only = {"captable_api_reversal_list"}
    assert listing - staff_only <= set(LISTS), sorted(listing - staff_only - set(LISTS))

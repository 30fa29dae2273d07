"""Property-level authorization: a caller cannot set what only the platform sets. Every write
operation of the OpenAPI document that takes a JSON body refuses each privileged field it
does not declare (`status`, `units_issued`, `investor_id`, `amount_paid`, `is_staff`, …) with
a 422 naming the field, and the database is unchanged afterwards. An operation that takes no
body at all ignores one: answering and changing exactly what it does without it.

(What responses may show is checked on every response of the generated run and of the
authorization matrix: no password, token hash or clear tax id, nothing of the other side.)"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from tests.hardening.harness import (
    changed,
    database_picture,
    django_request_log_quiet,
    openapi_document,
    operations,
    path_parameters,
    rolled_back,
)
from tests.hardening.test_authorization_matrix import FOREIGN_IDS, call_for, filled, request
from tests.hardening.world import World, world_build

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

PRIVILEGED_FIELDS = {
    "id": 1,
    "status": "live",
    "units_issued": "1000000",
    "units_reserved": "0",
    "quanta_issued": 1_000_000,
    "investor_id": 1,
    "user_id": 1,
    "amount_paid": {"amount": "1000000.00", "currency": "USD"},
    "amount_paid_minor": 100_000_000,
    "is_staff": True,
    "is_superuser": True,
    "is_accredited": True,
    "kyc_status": "approved",
    "accreditation_status": "verified",
    "approved_by_id": 1,
    "requested_by_id": 1,
    "decided_by_id": 1,
    "entry_id": 1,
    "created_at": "2020-01-01T00:00:00Z",
    "platform_fee_bps": 0,
    # A property's photo is checked and re-encoded by the portal's upload only.
    "photo": "properties/1/photo.svg",
    "photo_url": "https://attacker.example/photo.svg",
    "photo_alt_text": "set through the API",
}

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


@pytest.fixture
def world(settings: Any, tmp_path: Any) -> World:
    settings.MEDIA_ROOT = tmp_path
    return world_build()


def write_operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [row for row in operations(document) if row[0] in WRITE_METHODS]


def declared_fields(operation: dict[str, Any], document: dict[str, Any]) -> set[str]:
    content: dict[str, Any] = operation.get("requestBody", {}).get("content", {})
    media: dict[str, Any] = next(iter(content.values()), {})
    schema: dict[str, Any] = media.get("schema", {})
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return set(schema.get("properties", {}))


def own_path(path: str, operation: dict[str, Any], world: World) -> str:
    """The path filled with side A's ids, so an accepted field would land on a real row."""
    rows = FOREIGN_IDS.get(operation["operationId"])
    if not path_parameters(path) or not rows:  # (no row: the matrix's own test fails)
        return path
    parameters, _ = rows[0]
    return filled(path, parameters, world.a)


def takes_json(operation: dict[str, Any]) -> bool:
    content = operation.get("requestBody", {}).get("content", {})
    return any("json" in media_type for media_type in content)


def refusals(
    client: Client, world: World, method: str, path: str, call: dict[str, Any], extra: set[str]
) -> list[str]:
    """Every extra field at once, as staff (the role most likely to be allowed anything): the
    422 must name each one as forbidden (pydantic reports every extra field, not the first)."""
    body = {**call.get("body", {}), **{name: PRIVILEGED_FIELDS[name] for name in extra}}
    response = request(client, world, "staff", method, path, {**call, "body": body})
    if response.status_code != 422:
        return [f"{method} {path}: {response.status_code} {response.content[:200]!r}"]
    named = {
        error["loc"][-1]
        for error in response.json().get("errors", [])
        if error.get("type") == "extra_forbidden" and error.get("loc")
    }
    return [f"{method} {path}: {name} not refused" for name in sorted(extra - named)]


def test_privileged_fields_are_refused_and_change_nothing(world: World) -> None:
    client, document = Client(), openapi_document()
    problems: list[str] = []
    fields_tried = operations_tried = 0
    with django_request_log_quiet():
        for method, path, operation in write_operations(document):
            if not takes_json(operation):
                continue
            call = call_for(operation, document)
            if not isinstance(call.get("body", {}), dict):
                continue
            extra = set(PRIVILEGED_FIELDS) - declared_fields(operation, document)
            target = own_path(path, operation, world)
            with rolled_back():
                before = database_picture()
                problems += refusals(client, world, method, target, call, extra)
                if difference := changed(before, database_picture()):
                    problems.append(f"{method} {target}: changed {difference}")
            fields_tried += len(extra)
            operations_tried += 1
    print(
        f"\nproperty authorization: {operations_tried} write operations with a JSON body, "
        f"{fields_tried} privileged fields sent, each named in the 422 that refused it"
    )
    assert operations_tried >= 20
    assert not problems, "\n".join(problems)


def outcome(client: Client, world: World, method: str, path: str, body: Any) -> tuple[Any, ...]:
    with rolled_back():
        headers = {"HTTP_AUTHORIZATION": f"Bearer {world.tokens['staff']}"}
        data = json.dumps(body) if body is not None else ""
        response = client.generic(method, path, data, content_type="application/json", **headers)  # type: ignore[arg-type]
        picture = database_picture()
    return response.status_code, picture["rows"], picture["ledger"]


def test_a_body_sent_to_an_operation_that_takes_none_has_no_effect(world: World) -> None:
    client, document = Client(), openapi_document()
    problems: list[str] = []
    with django_request_log_quiet():
        for method, path, operation in write_operations(document):
            if operation.get("requestBody"):
                continue
            target = own_path(path, operation, world)
            plain = outcome(client, world, method, target, None)
            stuffed = outcome(client, world, method, target, PRIVILEGED_FIELDS)
            if plain != stuffed:
                problems.append(f"{method} {target}: {plain[0]} without a body, {stuffed[0]} with")
    assert not problems, "\n".join(problems)

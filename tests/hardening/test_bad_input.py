"""Bad input to every write operation of the OpenAPI document that takes a JSON body: a
hypothesis test starts from a body the operation accepts and breaks it — malformed JSON,
huge numbers, negative and zero amounts, wrong currencies, a float where money is a string,
dates out of order, unicode oddities (right-to-left override, lone surrogates, NUL, astral
planes) and over-long strings, in every declared field.

Each answer is a 4xx in the common error shape (`detail` says what is wrong, `code` says which
rule), and the database is exactly as before (row counts of every table and the head of every
ledger chain). Only a unicode string or a zero may be accepted (a name in Chinese, a net
worth of zero are fine); never a 5xx. The operations fuzzed and the cases tried are printed."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.hardening.harness import (
    changed,
    database_picture,
    django_request_log_quiet,
    openapi_document,
    operations,
    rolled_back,
)
from tests.hardening.test_authorization_matrix import call_for
from tests.hardening.test_property_authorization import declared_fields, own_path, takes_json
from tests.hardening.world import World, world_build

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

MALFORMED_BODIES = [
    b"{",
    b'{"units": ',
    b"\x00",
    b"[1, 2",
    b"\xff\xfe\x00",
    b"{'single': 'quotes'}",
    b'{"units": NaN}',
    b'{"units": Infinity}',
    b"[" * 5_000 + b"]" * 5_000,
    b'{"a": 1}{"b": 2}',
    b"123",  # (not `null`: to an operation whose body is optional, that is no body at all)
]

MUST_REFUSE: dict[str, list[Any]] = {
    "huge": [10**40, "1" + "0" * 40, "1e400", 1e308, "99999999999999999999999999.99"],
    "long": ["x" * 100_000, "€" * 20_000],
    "money": [
        {"amount": "-1.00", "currency": "USD"},
        {"amount": "10.00", "currency": "XXX"},
        {"amount": "10.00", "currency": "usd"},
        {"amount": "10.00", "currency": "BTC"},
        {"amount": "1e400", "currency": "USD"},
        {"amount": "NaN", "currency": "USD"},
        {"amount": "Infinity", "currency": "USD"},
        {"amount": "10.001", "currency": "USD"},
        {"amount": 10.5, "currency": "USD"},  # a float: money is a string, always
        {"amount": "99999999999999999999999.00", "currency": "USD"},
    ],
}
MAY_PASS_KINDS = {"zero", "unicode", "huge_as_text", "negative_as_text"}
MAY_PASS: dict[str, list[Any]] = {
    "zero": [0, "0", "0.00", {"amount": "0.00", "currency": "USD"}],
    # (refused where the field is a quantity: see QUANTITY below)
    "negative": [-1, "-1", "-0.01"],
    "unicode": [
        "\u202egnp.exe",
        "\U0001d518\U0001d52b\U0001d526 \U0001f3e0",
        "\x00nul",
        "\ud800",
        "名前",
        "e\u0301",
    ],
}
# Fields that hold a quantity or money: there a huge or negative number is always refused.
QUANTITY = re.compile(
    r"amount|units|quanta|price|_minor|fee_bps|basis_points|raise|nav_per|net_worth"
)
DATE_PAIRS = [
    ("record_date", "payment_date"),
    ("opens_at", "closes_at"),
    ("period_start", "period_end"),
    ("start", "end"),
]

EXAMPLES = int(os.environ.get("BRICKBOOK_BAD_INPUT_EXAMPLES", "20"))


@dataclass
class Tally:
    operations: set[str] = field(default_factory=set)
    cases: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


@pytest.fixture
def world(settings: Any, tmp_path: Any) -> World:
    settings.MEDIA_ROOT = tmp_path
    return world_build()


def attacks(fields: list[str], body: dict[str, Any]) -> st.SearchStrategy[tuple[str, Any]]:
    """(kind, raw bytes to send)."""
    malformed = st.sampled_from(MALFORMED_BODIES).map(lambda raw: ("malformed", raw))
    if not fields:
        return malformed
    kinds = {**MUST_REFUSE, **MAY_PASS}
    field_attacks = st.tuples(st.sampled_from(sorted(kinds)), st.sampled_from(fields)).flatmap(
        lambda pair: st.sampled_from(kinds[pair[0]]).map(
            lambda value: (_kind(pair[0], pair[1]), json.dumps({**body, pair[1]: value}).encode())
        )
    )
    swaps = [pair for pair in DATE_PAIRS if pair[0] in body and pair[1] in body]
    strategies = [malformed, field_attacks]
    if swaps:
        strategies.append(
            st.sampled_from(swaps).map(lambda pair: ("dates_out_of_order", _swapped(body, *pair)))
        )
    return st.one_of(*strategies)


def _kind(kind: str, name: str) -> str:
    """Huge and negative numbers must be refused where the field is a quantity; in a text
    field ("1e400" as a name or a memo) they are just text."""
    if kind in ("huge", "negative"):
        return f"{kind}_quantity" if QUANTITY.search(name) else f"{kind}_as_text"
    return kind


def _swapped(body: dict[str, Any], earlier: str, later: str) -> bytes:
    return json.dumps({**body, earlier: body[later], later: body[earlier]}).encode()


def caller_for(client: Client, world: World, method: str, path: str, call: dict[str, Any]) -> str:
    """The role the operation is meant for: the first whose well-formed call is not refused
    for who they are (so bad input meets the validation, not the door)."""
    for role in ("investor", "sponsor", "staff"):
        with rolled_back():
            status = send(client, world, role, method, path, call, None).status_code
        if status not in (401, 403, 404):
            return role
    return "staff"


def send(
    client: Client,
    world: World,
    role: str,
    method: str,
    path: str,
    call: dict[str, Any],
    raw: bytes | None,
) -> Any:
    headers: dict[str, Any] = {
        "HTTP_AUTHORIZATION": f"Bearer {world.tokens[role]}",
        **call.get("headers", {}),
    }
    data = raw if raw is not None else json.dumps(call.get("body", {})).encode()
    return client.generic(method, path + call.get("query", ""), data, "application/json", **headers)


def judge(kind: str, response: Any, before: dict[str, Any], after: dict[str, Any]) -> str | None:
    status = response.status_code
    if status >= 500:
        return f"{status} server error"
    if 200 <= status < 300:
        return None if kind in MAY_PASS_KINDS else f"{status}: accepted"
    if not 400 <= status < 500:
        return f"{status}: not a 4xx"
    try:
        body = response.json()
    except ValueError:
        return f"{status} without a JSON body: {response.content[:100]!r}"
    if not (isinstance(body.get("detail"), str) and body["detail"].strip() and body.get("code")):
        return f"{status} not in the common error shape: {body}"
    if difference := changed(before, after):
        return f"{status} but changed {difference}"
    return None


def fuzz_operation(
    client: Client,
    world: World,
    tally: Tally,
    row: tuple[str, str, dict[str, Any]],
    examples: int,
) -> None:
    method, path, operation = row
    document = openapi_document()
    call = call_for(operation, document)
    body = call.get("body", {})
    if not isinstance(body, dict):
        tally.problems.append(f"{method} {path}: no object body to start from ({body!r})")
        return
    target = own_path(path, operation, world)
    role = caller_for(client, world, method, target, call)
    fields = sorted(declared_fields(operation, document) | set(body))
    label = f"{role} {method} {path}"
    with rolled_back():
        before = database_picture()

    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(attack=attacks(fields, body))
    def one(attack: tuple[str, bytes]) -> None:
        kind, raw = attack
        with rolled_back():
            response = send(client, world, role, method, target, call, raw)
            after = database_picture()
        tally.cases += 1
        tally.kinds[kind] += 1
        if 200 <= response.status_code < 300:
            tally.accepted[kind] += 1
        if problem := judge(kind, response, before, after):
            tally.problems.append(f"{label} [{kind}] {raw[:160]!r}: {problem}")

    one()
    tally.operations.add(f"{method} {path}")


def bad_input_run(world: World, examples: int) -> None:
    client, tally = Client(), Tally()
    rows = [
        row
        for row in operations(openapi_document())
        if row[0] in {"POST", "PUT", "PATCH"} and takes_json(row[2])
    ]
    with django_request_log_quiet():
        for row in rows:
            fuzz_operation(client, world, tally, row, examples)
    print(
        f"\nbad input: {len(tally.operations)} write operations fuzzed, {tally.cases} cases "
        f"({dict(sorted(tally.kinds.items()))}); accepted (allowed kinds only): "
        f"{dict(tally.accepted)}; {len(tally.problems)} problems"
    )
    assert not tally.problems, "\n".join(tally.problems[:60])
    assert len(tally.operations) == len(rows)


def test_bad_input_to_every_write_operation_is_a_clear_4xx_and_changes_nothing(
    world: World,
) -> None:
    bad_input_run(world, EXAMPLES)


@pytest.mark.stress
def test_bad_input_many_cases(world: World) -> None:
    bad_input_run(world, 150)

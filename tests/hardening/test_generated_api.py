"""Generated API testing: schemathesis reads the API's own OpenAPI document and sends every
operation, as an anonymous caller, an investor, a sponsor member and staff, requests made
from the schema (valid ones, and invalid ones that must be refused with a 4xx). Path ids are
drawn half the time from a seeded world (both sides' real objects), so the requests reach
real rows and not only 404s. Each request runs in a savepoint rolled back afterwards: every
case meets the same world.

Checked on every response: no 5xx; status code, content type and body conform to the
document; invalid input is refused; no forbidden key (password, token hash, clear tax id, …)
and, for side A's callers, nothing naming side B's investors.

Bounded for `make test` (few examples per operation, derandomized, no deadline); the
`stress` variant tries many more. Figures (operations, cases) are printed."""

from __future__ import annotations

import copy
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.hardening.harness import (
    InTransactionApp,
    django_request_log_quiet,
    django_signals_quiet,
    forbidden_keys_in,
    leaks,
    openapi_document,
    other_side_markers,
    rolled_back,
    secrets_in,
)
from tests.hardening.world import World, world_build

pytestmark = [pytest.mark.django_db, pytest.mark.postgres_only]

ROLES = ["anonymous", "investor", "sponsor", "staff"]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Found by this run in code another engineer is changing at the time: tolerated here, each
# kept as a strict xfail in test_generated_regressions.py until it is fixed. (None now.)
KNOWN_UNDOCUMENTED_STATUSES: set[tuple[str, int]] = set()
MODES = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]


@dataclass
class Run:
    operations: set[str] = field(default_factory=set)
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)

    def fail(self, label: str, message: str) -> None:
        self.failures.setdefault(label, message[:3000])


def id_pools(world: World) -> dict[str, list[int]]:
    pools: dict[str, list[int]] = {}
    for side in (world.a, world.b):
        for name, value in side.ids.items():
            parameter = "offering_id" if name.endswith("offering_id") else name
            parameter = "statement_id" if name == "report_statement_id" else parameter
            pools.setdefault(parameter, []).append(value)
    return pools


def _with_real_ids(case: Any, data: st.DataObject, pools: dict[str, list[int]]) -> None:
    for name in list(case.path_parameters or {}):
        pool = pools.get(name)
        if pool and data.draw(st.booleans(), label=f"real {name}"):
            case.path_parameters[name] = data.draw(st.sampled_from(pool), label=name)


def _check_case(case: Any, run: Run, world: World, role: str, mode: Any) -> None:
    label = f"{role} {case.operation.label} ({mode.value})"
    headers = world.headers(role)
    with rolled_back():
        response = case.call(headers=headers)
    run.cases += 1
    run.statuses[response.status_code] += 1
    checks = [*CHECKS, negative_data_rejection] if mode.is_negative else CHECKS
    if (case.operation.label, response.status_code) in KNOWN_UNDOCUMENTED_STATUSES:
        checks = [check for check in checks if check is not status_code_conformance]
    try:
        case.validate_response(response, checks=checks, headers=headers)
    except FailureGroup as failure:
        run.fail(label, f"{failure}\n{case.as_curl_command(headers=headers)}")
        return
    _check_privacy(response, run, world, role, label)


def _check_privacy(response: Any, run: Run, world: World, role: str, label: str) -> None:
    if "json" not in response.headers.get("content-type", [""])[0] or not response.content:
        return
    forbidden = forbidden_keys_in(response.json()) + secrets_in(response.content)
    if forbidden:
        run.fail(label, f"forbidden keys or values {forbidden}")
    if role != "staff" and (leaked := leaks(response.content, other_side_markers(world))):
        run.fail(label, f"side B's data {leaked} in {response.content[:500]!r}")


def _fuzz_operation(operation: Any, run: Run, world: World, role: str, examples: int) -> None:
    pools = id_pools(world)
    headers = world.headers(role)
    for mode in MODES:

        def one_case(case: Any, data: st.DataObject, mode: Any = mode) -> None:
            if not mode.is_negative:  # a negative case must stay invalid: its ids too
                _with_real_ids(case, data, pools)
            _check_case(case, run, world, role, mode)

        try:
            _fuzzer(operation, mode, examples, headers, one_case)()
        except Unsatisfiable:
            continue  # nothing to make invalid (no parameters, no body): no negative case
        except Exception as error:  # generation itself failed: report it, go on
            run.fail(f"{role} {operation.label} ({mode.value})", f"generation: {error!r}")
    run.operations.add(operation.label)


def _fuzzer(operation: Any, mode: Any, examples: int, headers: dict[str, str], body: Any) -> Any:
    # The role's token is a fixed header: negative cases then vary what the caller sends,
    # not who the caller is (part B's suite covers missing and bad tokens).
    strategy = operation.as_strategy(generation_mode=mode, headers=headers or None)

    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy, data=st.data())
    def fuzz(case: Any, data: st.DataObject) -> None:
        body(case, data)

    return fuzz


def generated_run(role: str, examples: int, settings_: Any, tmp_path: Any) -> Run:
    settings_.MEDIA_ROOT = tmp_path
    settings_.ALLOWED_HOSTS = ["*"]
    world = world_build()
    schema = schemathesis.openapi.from_dict(copy.deepcopy(openapi_document()))
    schema.app = InTransactionApp()
    run = Run()
    with django_signals_quiet(), django_request_log_quiet():
        for result in schema.get_all_operations():
            _fuzz_operation(result.ok(), run, world, role, examples)  # type: ignore[union-attr]
    print(
        f"\nschemathesis as {role}: {len(run.operations)} operations, {run.cases} cases, "
        f"statuses {dict(sorted(run.statuses.items()))}, {len(run.failures)} failing"
    )
    return run


def assert_clean(run: Run) -> None:
    report = "\n\n".join(f"== {label}\n{message}" for label, message in run.failures.items())
    assert not run.failures, f"{len(run.failures)} failing operation(s):\n{report}"


EXAMPLES = int(os.environ.get("BRICKBOOK_SCHEMATHESIS_EXAMPLES", "3"))


@pytest.mark.parametrize("role", ROLES)
def test_every_operation_as_each_role_has_no_server_error_and_keeps_its_schema(
    role: str, settings: Any, tmp_path: Any
) -> None:
    run = generated_run(role, EXAMPLES, settings, tmp_path)
    assert len(run.operations) == len(list(schemathesis_operations()))
    assert_clean(run)


@pytest.mark.stress
@pytest.mark.parametrize("role", ROLES)
def test_every_operation_as_each_role_many_examples(
    role: str, settings: Any, tmp_path: Any
) -> None:
    assert_clean(generated_run(role, 60, settings, tmp_path))


def schemathesis_operations() -> list[str]:
    from tests.hardening.harness import operations

    return [f"{method} {path}" for method, path, _ in operations(openapi_document())]

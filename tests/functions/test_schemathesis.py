"""Property-based tests of every function against its own OpenAPI document (schemathesis): valid and
invalid requests generated from the schema, sent over HTTP to the local functions server (uvicorn, the
apps routed as vercel.json routes them), with a private Redis behind the gateway (so generated keys
and admin resets never touch another test's counters) and the QStash emulator.

Whatever comes in: no 5xx, no stack trace in any body, every 4xx an RFC 9457 problem, and responses
that match the document (status codes, content types, schemas).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from shared.config import ALL_VARIABLES
from tests.conftest import ADMIN_TOKEN, TEST_POLICIES, function_environment, start_functions, start_gateway
from tests.emulators.qstash_fixtures import EmulatorProcess
from tests.functions.toolchain import describe_functions
from tests.servers import redis_server

EXAMPLES_PER_OPERATION = 60  # per generation mode; the whole file stays well under a minute
PROBLEM_JSON = "application/problem+json"
STACK_TRACE = re.compile(r'Traceback \(most recent call last\)|File "[^"]+", line \d+')
# Values the schema cannot know (they are configuration): without them nearly every generated request
# would stop at "no such policy" and never reach Redis. Valid cases use one half of the time.
# Keys: the deny list's, a tier prefix's, and an ordinary one (TEST_POLICIES' "api" policy).
KNOWN_VALUES = {"policy": sorted(TEST_POLICIES), "key": ["banned", "pk_pro_1", "user-1"], "board": ["arena"]}
# A board for the leaderboards function (reads reach Redis; submissions stop at its signature check).
LEADERBOARDS = {"arena": {"periods": ["daily", "weekly", "monthly"], "signing_secrets": ["schemathesis-secret-0"]}}


def operations() -> list[Any]:
    """(function, method, path, mode) for every operation of every function, read from its OpenAPI
    document; invalid input only where the operation takes some."""
    found = []
    for name, facts in describe_functions().items():
        for path, methods in facts["openapi"]["paths"].items():
            for method, operation in methods.items():
                modes = [GenerationMode.POSITIVE]
                if operation["parameters"] or "requestBody" in operation:
                    modes.append(GenerationMode.NEGATIVE)
                found += [
                    pytest.param(name, method.upper(), path, mode, id=f"{method.upper()} {path} {mode}")
                    for mode in modes
                ]
    return found


@pytest.fixture(scope="module")
def functions_server(qstash_server: EmulatorProcess) -> Iterator[str]:
    redis = redis_server().start()
    gateway = start_gateway(f"redis://127.0.0.1:{redis.port}")
    env = {name: "" for name in ALL_VARIABLES} | function_environment(gateway, qstash_server)
    env["STASHKIT_LEADERBOARDS"] = json.dumps(LEADERBOARDS)
    functions = start_functions(env)
    yield functions.url
    functions.process.stop()
    gateway.process.stop()
    redis.stop()


def steer(case: Any, data: st.DataObject) -> None:
    """Put known values into a valid case, wherever the parameter sits (path, query or JSON body)."""
    for container in (case.path_parameters, case.query, case.body):
        if not isinstance(container, dict):
            continue
        for key, values in KNOWN_VALUES.items():
            if key in container and data.draw(st.booleans()):
                container[key] = data.draw(st.sampled_from(values))


def assert_contract(case: Any, response: Any) -> None:
    """The promises shared/http.py makes for any input."""
    status, text = response.status_code, response.text
    request = f"{case.method} {case.formatted_path[:200]} -> {status}: {text[:500]}"
    assert status < 500, f"server error: {request}"
    assert not STACK_TRACE.search(text), f"stack trace in the body: {request}"
    if 400 <= status < 500:
        assert response.headers.get("content-type") == [PROBLEM_JSON], f"not problem+json: {request}"
        body = json.loads(text)
        assert isinstance(body, dict), request
        assert all(isinstance(body.get(key), str) for key in ("type", "title", "detail")), request
        assert body.get("status") == status, request


@pytest.mark.slow
@pytest.mark.parametrize(("name", "method", "path", "mode"), operations())
def test_operation_keeps_its_contract_for_any_input(
    functions_server: str, name: str, method: str, path: str, mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_url(f"{functions_server}/api/{name}/openapi.json")
    operation = schema[path][method]
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"} if operation.definition.raw.get("security") else {}
    checks = [response_schema_conformance, content_type_conformance, status_code_conformance]
    if mode is GenerationMode.NEGATIVE:
        checks.append(negative_data_rejection)

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,  # the same cases on every run
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    def exercise(case: Any, data: st.DataObject) -> None:
        if mode is GenerationMode.POSITIVE:
            steer(case, data)
        response = case.call(headers=headers, timeout=10)
        assert_contract(case, response)
        case.validate_response(response, checks=checks, headers=headers)

    exercise()

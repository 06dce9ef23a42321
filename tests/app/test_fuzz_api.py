"""Schemathesis over every operation of the API, as a logged-in user.

The app runs in its own process (a real uvicorn on loopback, on the test database);
schemathesis reads /api/openapi.json and sends generated requests, schema-valid and
schema-invalid, to each operation, then a stateful run follows the links between
operations (create a project, then read, rename, search and delete it ...). Every
response must be a documented status code with a body that matches its own schema,
no 5xx; schema-valid requests must be accepted and schema-invalid ones refused.

The number of examples is bounded (``FUZZ_EXAMPLES`` per operation) so the whole
module stays within a couple of minutes; raise it locally with KT_FUZZ_EXAMPLES.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode

from app.core.config import Settings, load_settings
from app.main import create_app
from tests.app.utils.users import TEST_PASSWORD, TEST_SECRET_KEY

FUZZ_EXAMPLES = int(os.environ.get("KT_FUZZ_EXAMPLES", "10"))
STATEFUL_SCENARIOS = int(os.environ.get("KT_FUZZ_SCENARIOS", "10"))
FUZZ_SETTINGS = hypothesis.settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure is reproducible
    database=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)


@pytest.fixture(scope="module")
def live_api(settings: Settings) -> Iterator[str]:
    """The app in a child process on a free loopback port, on the test database."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "uvicorn", "--factory", "app.main:create_app"]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--log-level", "warning", "--no-access-log"],
        # The largest plan, so the fuzzer's many projects are not refused by a quota.
        env={**os.environ, "QUERY_EMBEDDING_BACKEND": "torch", "DEFAULT_PLAN": "enterprise"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline, answer = time.monotonic() + 300, "no answer"
    while True:
        assert process.poll() is None, "the app exited at start-up"
        try:
            response = httpx.get(f"{url}/readyz", timeout=2)
            if response.status_code == 200:
                break
            answer = response.text
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"the app did not become ready in 300 s: {answer}"
        time.sleep(0.3)
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def api_schema(live_api: str):
    schema = schemathesis.openapi.from_url(f"{live_api}/api/openapi.json")
    # Unknown query parameters are ignored, as HTTP APIs do; and the token is the test
    # user's (fuzz_headers), not something to generate or leave out.
    schema.config.generation.update(allow_extra_parameters=False, with_security_parameters=False)
    # A body over the size limit is refused before it is read: a rejection too.
    schema.config.checks.negative_data_rejection.expected_statuses.append("413")
    # Uploads are typed from their content, which no schema can describe: generated
    # bytes are refused as an unsupported type, a valid answer to a valid request.
    schema.config.checks.positive_data_acceptance.expected_statuses.append("415")
    return schema


@pytest.fixture
def fuzz_headers(live_api: str) -> dict[str, str]:
    """A normal user (registered and logged in through the API) with a project."""
    credentials = {"email": f"fuzz-{uuid.uuid4().hex[:8]}@example.com", "password": TEST_PASSWORD}
    with httpx.Client(base_url=live_api, timeout=30) as client:
        client.post("/api/auth/register", json=credentials).raise_for_status()
        tokens = client.post("/api/auth/login", json=credentials).raise_for_status().json()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        client.post("/api/projects", json={"name": "Fuzzed"}, headers=headers).raise_for_status()
    return headers


def _operations() -> list[tuple[str, str]]:
    """(method, path) of every operation, read from the app's schema at collection time."""
    app = create_app(
        load_settings(secret_key=TEST_SECRET_KEY, database_url="postgresql://fuzz@/collection")
    )
    return [
        (method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item
    ]


def no_undocumented_server_error(ctx, response, case) -> None:
    """Never a 500; another 5xx only where the operation documents it (503 "billing is not
    enabled", 502/503 "the model failed"): those are answers, not crashes."""
    status = response.status_code
    if status < 500:
        return
    documented = case.operation.schema.raw_schema["paths"][case.operation.path][
        case.operation.method.lower()
    ]["responses"]
    assert status != 500 and str(status) in documented, (
        f"{case.operation.label} answered {status}: {response.text[:300]}"
    )


CHECKS = {
    "excluded_checks": [not_a_server_error],
    "additional_checks": [no_undocumented_server_error],
}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize(("method", "path"), _operations(), ids=lambda value: value)
def test_every_operation(api_schema, fuzz_headers, method, path, mode):
    operation = api_schema.find_operation_by_path(method, path)

    @FUZZ_SETTINGS
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def call(case):
        case.call_and_validate(headers=fuzz_headers, **CHECKS)

    try:
        call()
    except hypothesis.errors.Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        pytest.skip("nothing in this operation's schema can be made invalid")


def test_stateful_links(api_schema, fuzz_headers):
    """Sequences of calls along the links between operations (ids from earlier answers)."""

    class Workflow(api_schema.as_state_machine()):
        def get_call_kwargs(self, case):
            return {"headers": fuzz_headers}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(
                response, transport_kwargs=kwargs or None, recorder=self.recorder, **CHECKS
            )

    Workflow.run(
        settings=hypothesis.settings(
            FUZZ_SETTINGS, max_examples=STATEFUL_SCENARIOS, stateful_step_count=6
        )
    )

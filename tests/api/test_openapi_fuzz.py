"""schemathesis against the gateway's own OpenAPI document: no request it can generate makes a
server error, and every response matches the schema the document gives it.

Bounded: a few examples per operation (about 30 s in all). Streaming endpoints are left out
(they hold the connection open by design).
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance  # noqa: E402

from kailash.nodes.code.python import PythonCodeNode  # noqa: E402
from kailash.workflow import Workflow  # noqa: E402

KEY = "schemathesis-key-0123456789abcdef"
EXAMPLES = 8  # per operation: about 30 s in all


@pytest.fixture(scope="module")
def gateway_url():
    """The gateway served by a real uvicorn (lifespan on) on an ephemeral port."""
    import uvicorn

    from kailash.api.gateway import WorkflowGateway
    from tests.servers.fixtures import _bind, _serve

    gw = WorkflowGateway(port=0, api_keys=[KEY])
    wf = Workflow("double")
    wf.add_node("d", PythonCodeNode(code="result = 2 * (x if isinstance(x, int) else 0)", x=0))
    gw.register_workflow("double", wf)
    broken = Workflow("broken")  # a node that always fails: its documented 500 answer must match the schema
    broken.add_node("b", PythonCodeNode(code="raise ValueError('always')"))
    gw.register_workflow("broken", broken)
    sock = _bind()
    config = uvicorn.Config(gw.app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
    stop = _serve(config, sock, "schemathesis-gateway")
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop()


def test_the_gateway_answers_its_own_schema(gateway_url):
    from hypothesis import given

    schema = schemathesis.openapi.from_url(f"{gateway_url}/openapi.json").exclude(path_regex=r"/events$")
    failures: dict[str, str] = {}
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        tested += 1

        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        @given(case=operation.as_strategy())
        def check(case):
            # a failing node is answered 500 by design: there, the answer must still match its schema
            checks = [response_schema_conformance] if "broken" in case.path else [not_a_server_error,
                                                                                   response_schema_conformance]
            case.call_and_validate(headers={"X-API-Key": KEY}, checks=checks, timeout=10)

        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # gather every operation's failure, then report them all
            failures[operation.label] = str(exc)[:1500]
    assert tested >= 10, f"only {tested} operations in the OpenAPI document"
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())

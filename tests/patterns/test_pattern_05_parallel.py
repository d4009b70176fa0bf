"""Seed pattern 5 (Parallel Processing), run against three slow local HTTP endpoints.

The sample's three ``https://apiN.example.com/data`` URLs are replaced by three endpoints
of a uvicorn server on 127.0.0.1 that each answer after a delay and count how many
requests are in flight at once: under ParallelRuntime all three are.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass, field

import pytest

pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from kailash.errors import NodeExecutionError  # noqa: E402
from kailash.nodes.api import AsyncHTTPRequestNode  # noqa: E402
from kailash.runtime import LocalRuntime  # noqa: E402
from kailash.workflow import Workflow  # noqa: E402

DELAY = 0.3
PAYLOADS = {
    "api1": {"customers": [{"id": 1, "name": "Ada"}]},
    "api2": {"orders": [{"id": 10, "customer": 1, "total": 99.5}]},
    "api3": {"inventory": {"widgets": 7}},
}


@dataclass
class Traffic:
    live: int = 0
    peak: int = 0
    paths: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def slow_apis():
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    traffic = Traffic()

    def endpoint(name: str):
        async def handler(request):
            traffic.live += 1
            traffic.peak = max(traffic.peak, traffic.live)
            traffic.paths.append(request.url.path)
            try:
                await asyncio.sleep(DELAY)
                return JSONResponse(PAYLOADS[name])
            finally:
                traffic.live -= 1
        return handler

    app = Starlette(routes=[Route(f"/{name}/data", endpoint(name)) for name in PAYLOADS])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        threading.Event().wait(0.02)
    assert server.started, "the test server did not start within 10 s"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", traffic
    server.should_exit = True
    thread.join(timeout=5)
    sock.close()


def build(base: str) -> Workflow:
    from kailash.nodes.logic.async_operations import AsyncMergeNode

    # --- the sample, as written (URLs filled in) --------------------------------------------
    workflow = Workflow()

    # Multiple async data sources
    source1 = AsyncHTTPRequestNode(
        config={"url": f"{base}/api1/data"}
    )
    source2 = AsyncHTTPRequestNode(
        config={"url": f"{base}/api2/data"}
    )
    source3 = AsyncHTTPRequestNode(
        config={"url": f"{base}/api3/data"}
    )

    # Async merge
    merger = AsyncMergeNode(
        config={
            "merge_strategy": "dict_merge",
            "wait_for_all": True
        }
    )

    # Add nodes
    workflow.add_node("source1", source1)
    workflow.add_node("source2", source2)
    workflow.add_node("source3", source3)
    workflow.add_node("merger", merger)

    # Connect all sources to merger
    workflow.connect("source1", "merger")
    workflow.connect("source2", "merger")
    workflow.connect("source3", "merger")
    # -------------------------------------------------------------------------------------------
    return workflow


async def test_pattern_05_sources_are_fetched_concurrently_and_merged(slow_apis):
    from kailash.runtime import ParallelRuntime

    base, traffic = slow_apis
    traffic.peak = 0
    workflow = build(base)

    # Execute with parallel runtime
    runtime = ParallelRuntime()
    result = await runtime.execute(workflow)

    results, run_id = result
    assert results["merger"]["merged_data"] == {**PAYLOADS["api1"], **PAYLOADS["api2"], **PAYLOADS["api3"]}
    assert all(results[f"source{i}"]["status_code"] == 200 for i in (1, 2, 3))
    assert traffic.peak == 3  # all three requests were in flight together
    record = runtime.get_run(run_id)
    assert record.status == "completed" and record.runtime == "parallel"
    assert [n.node_id for n in record.nodes] == ["source1", "source2", "source3", "merger"]


def test_pattern_05_same_workflow_runs_one_request_at_a_time_under_local_runtime(slow_apis):
    base, traffic = slow_apis
    traffic.peak = 0
    results, _ = LocalRuntime().execute(build(base))
    assert set(results["merger"]["merged_data"]) == {"customers", "orders", "inventory"}
    assert traffic.peak == 1


async def test_pattern_05_a_failing_source_is_named(slow_apis):
    from kailash.runtime import ParallelRuntime

    base, _ = slow_apis
    workflow = build(base)
    workflow.nodes["source2"].config.update(url="http://127.0.0.1:9/api2/data", timeout=2.0)
    with pytest.raises(NodeExecutionError) as info:
        await ParallelRuntime().execute(workflow)
    assert info.value.node_id == "source2"
    assert "127.0.0.1:9" in str(info.value)
    assert set(info.value.results) == {"source1", "source3"}  # in flight when source2 failed: they finished

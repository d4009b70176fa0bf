"""Serving workflows as MCP tools, reached by a real MCP client over stdio."""

from __future__ import annotations

import os
import sys

import anyio
import pytest

from kailash.api.mcp_server import build_workflow_mcp_server
from kailash.errors import NodeConfigurationError
from kailash.nodes.code.python import PythonCodeNode
from kailash.nodes.mcp import MCPClientNode, MCPToolError, call_tool, close_sessions
from kailash.workflow import Workflow


@pytest.fixture(scope="module", autouse=True)
def _close_mcp_sessions():
    yield
    close_sessions()


def _doubler() -> Workflow:
    wf = Workflow("doubler", description="Double a number")
    wf.add_node("double", PythonCodeNode(code="result = x * 2"))
    return wf


def _pipeline() -> Workflow:
    wf = Workflow("stats")
    wf.add_node("make", PythonCodeNode(code="result = list(range(n))"))
    wf.add_node("total", PythonCodeNode(code="result = {'sum': sum(data), 'count': len(data)}"))
    wf.connect("make", "total")
    return wf


def test_each_workflow_is_a_tool_with_a_definition_resource():
    server = build_workflow_mcp_server([_doubler(), _pipeline()])

    async def inspect():
        tools = {t.name: t for t in await server.list_tools()}
        resources = [str(r.uri) for r in await server.list_resources()]
        return tools, resources

    tools, resources = anyio.run(inspect)
    assert set(tools) == {"doubler", "stats"}
    assert tools["doubler"].description == "Double a number"
    assert "parameters" in tools["stats"].input_schema["properties"]
    assert sorted(resources) == ["kailash://workflows/doubler", "kailash://workflows/stats"]


def test_duplicate_tool_names_are_refused():
    with pytest.raises(NodeConfigurationError, match="both be served as tool 'doubler'"):
        build_workflow_mcp_server([_doubler(), _doubler()])
    server = build_workflow_mcp_server({"one": _doubler(), "two": _doubler()})
    assert {t.name for t in anyio.run(server.list_tools)} == {"one", "two"}


def test_saved_workflows_served_over_stdio_run_for_a_client(tmp_path):
    _doubler().save(tmp_path / "doubler.yaml")
    _pipeline().save(tmp_path / "stats.json")
    code = ("import sys; from kailash.api.mcp_server import serve_workflows_mcp; "
            "serve_workflows_mcp(sys.argv[1:])")
    cfg = {"name": "workflows", "command": sys.executable,
           "args": ["-c", code, str(tmp_path / "doubler.yaml"), str(tmp_path / "stats.json")],
           "env": {"KAILASH_HOME": str(tmp_path / "home")}}
    node = MCPClientNode(name="client")
    assert {t["name"] for t in node.execute(server_config=cfg)["tools"]} == {"doubler", "stats"}
    out = call_tool(cfg, "doubler", {"parameters": {"double": {"x": 21}}})
    assert out["result"]["results"] == {"double": {"result": 42}}
    assert len(out["result"]["run_id"]) == 32
    stats = call_tool(cfg, "stats", {"parameters": {"make": {"n": 5}}})["result"]["results"]
    assert stats["total"]["result"] == {"sum": 10, "count": 5}
    definition = node.execute(server_config=cfg, operation="read_resource", resource_uri="kailash://workflows/stats")
    assert '"name": "stats"' in definition["result"]


def test_a_failing_workflow_is_a_tool_error(tmp_path):
    wf = Workflow("broken")
    wf.add_node("boom", PythonCodeNode(code="result = 1 / 0"))
    wf.save(tmp_path / "broken.yaml")
    code = "import sys; from kailash.api.mcp_server import serve_workflows_mcp; serve_workflows_mcp(sys.argv[1:])"
    cfg = {"name": "wf", "command": sys.executable, "args": ["-c", code, str(tmp_path / "broken.yaml")],
           "env": {"KAILASH_HOME": str(tmp_path / "home")}}
    with pytest.raises(MCPToolError, match=r"MCP tool 'broken' on server 'wf'.*'boom'.*ZeroDivisionError"):
        call_tool(cfg, "broken", {}, owner="node 'x'")


def test_workflows_served_over_streamable_http(tmp_path):
    import socket
    import subprocess
    import time

    _doubler().save(tmp_path / "doubler.yaml")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = ("import sys; from kailash.api.mcp_server import serve_workflows_mcp; "
            "serve_workflows_mcp([sys.argv[1]], transport='http', port=int(sys.argv[2]))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "doubler.yaml"), str(port)],
                            env={**os.environ, "KAILASH_HOME": str(tmp_path / "home")},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "HTTP server did not start"
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/mcp"
        out = call_tool(url, "doubler", {"parameters": {"double": {"x": 5}}})
        assert out["result"]["results"] == {"double": {"result": 10}}
        close_sessions(url)
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_kailash_mcp_serve_command_serves_saved_workflows(tmp_path):
    _doubler().save(tmp_path / "doubler.yaml")
    cfg = {"name": "cli", "command": sys.executable,
           "args": ["-m", "kailash.cli", "mcp", "serve", str(tmp_path / "doubler.yaml")],
           "env": {"KAILASH_HOME": str(tmp_path / "home")}}
    tools = MCPClientNode(name="client").execute(server_config=cfg)["tools"]
    assert [t["name"] for t in tools] == ["doubler"]
    out = call_tool(cfg, "doubler", {"parameters": {"double": {"x": 4}}})
    assert out["result"]["results"] == {"double": {"result": 8}}


def test_the_node_package_points_at_the_new_home_instead_of_importing_it():
    import kailash.nodes.mcp as nodes_mcp

    with pytest.raises(AttributeError, match=r"from kailash.api.mcp_server import serve_workflows_mcp"):
        nodes_mcp.serve_workflows_mcp  # noqa: B018


def test_code_node_tools_offer_the_variables_their_code_reads():
    from kailash.api.mcp_server import code_inputs, workflow_tool_schema

    wf = Workflow("summarise", description="Sum and count")
    wf.add_node("total", PythonCodeNode(code="import math\nk = 2\nresult = {'sum': sum(data) * k, "
                                             "'top': max(v for v in data if v > floor), 'pi': math.pi}"))
    assert code_inputs(wf.nodes["total"]) == [("data", True), ("floor", True)]
    assert [a[0] for a in workflow_tool_schema(wf)] == ["data", "floor"]  # not code/imports

    def scale(values, factor=2):
        return [v * factor for v in values]

    assert code_inputs(PythonCodeNode.from_function(scale)) == [("values", True), ("factor", False)]
    server = build_workflow_mcp_server([wf])

    async def inspect_and_call():
        (tool,) = await server.list_tools()
        out = await server.call_tool("summarise", {"data": [1, 5, 3], "floor": 2})
        return tool, out

    tool, out = anyio.run(inspect_and_call)
    props = tool.input_schema["properties"]
    assert {"data", "floor", "parameters"} == set(props) and "imports" not in props and "code" not in props
    assert not tool.input_schema.get("required")  # values may also come by node id through "parameters"
    assert "needed" in props["data"]["description"]
    text = str(out)
    assert "'sum': 18" in text or '"sum": 18' in text

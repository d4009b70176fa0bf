"""MCPClientNode against real MCP servers: our SDK server, mcp-server-time, and HTTP."""

from __future__ import annotations

import sys

import pytest

from kailash.errors import NodeConfigurationError, NodeExecutionError
from kailash.nodes.mcp import (
    MCPClientNode,
    MCPServerConfig,
    MCPServerError,
    MCPToolError,
    call_tool,
    close_sessions,
    list_tools,
    register_mcp_server,
    unregister_mcp_server,
)


def test_list_tools_reports_names_descriptions_and_schemas(demo_server):
    out = MCPClientNode(name="mcp").execute(server_config=demo_server, operation="list_tools")
    tools = {t["name"]: t for t in out["tools"]}
    assert {"echo", "add", "fail", "sleep", "counter"} <= set(tools)
    assert tools["add"]["description"] == "Add two integers and return their sum"
    assert tools["add"]["input_schema"]["required"] == ["a", "b"]
    assert out["server"] == "demo"


def test_call_tool_returns_structured_result(demo_server):
    out = MCPClientNode(name="mcp").execute(server_config=demo_server, operation="call_tool", tool_name="add",
                                            tool_arguments={"a": 2, "b": 40})
    assert out["result"] == 42
    assert out["is_error"] is False
    assert out["tool_name"] == "add"
    assert out["content"][0]["type"] == "text"


def test_session_is_reused_across_executions(demo_server):
    node = MCPClientNode(name="mcp")
    counts = [node.execute(server_config=demo_server, operation="call_tool", tool_name="counter")["result"]
              for _ in range(3)]
    # one server process answered all three calls: its counter kept counting
    assert counts == [counts[0], counts[0] + 1, counts[0] + 2]
    close_sessions(demo_server)
    again = node.execute(server_config=demo_server, operation="call_tool", tool_name="counter")["result"]
    assert again == 1  # a fresh process after the session was closed


def test_resources_can_be_listed_and_read(demo_server):
    node = MCPClientNode(name="mcp")
    listed = node.execute(server_config=demo_server, operation="list_resources")["resources"]
    assert [r["uri"] for r in listed] == ["demo://readme"]
    read = node.execute(server_config=demo_server, operation="read_resource", resource_uri="demo://readme")
    assert read["result"].startswith("kailash demo MCP server")
    assert read["contents"][0]["mime_type"] == "text/plain"


def test_third_party_time_server(time_server):
    node = MCPClientNode(name="clock")
    names = {t["name"] for t in node.execute(server_config=time_server)["tools"]}
    assert names == {"get_current_time", "convert_time"}
    now = node.execute(server_config=time_server, operation="call_tool", tool_name="get_current_time",
                       tool_arguments={"timezone": "Asia/Tokyo"})["result"]
    assert now["timezone"] == "Asia/Tokyo" and now["datetime"].endswith("+09:00")
    conv = node.execute(server_config=time_server, operation="call_tool", tool_name="convert_time",
                        tool_arguments={"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Kolkata"})
    assert conv["result"]["target"]["datetime"].endswith("17:30:00+05:30")


def test_streamable_http_server(http_demo_server):
    node = MCPClientNode(name="remote")
    assert "echo" in {t["name"] for t in node.execute(server_config=http_demo_server)["tools"]}
    out = node.execute(server_config={"name": "remote-demo", "url": http_demo_server}, operation="call_tool",
                       tool_name="echo", tool_arguments={"text": "over http"})
    assert out["result"] == "over http"


def test_registered_server_name(demo_server):
    register_mcp_server("demo_tools", demo_server)
    try:
        assert call_tool("demo_tools", "echo", {"text": "hi"})["result"] == "hi"
        assert MCPServerConfig.from_any("demo_tools").name == "demo_tools"
    finally:
        unregister_mcp_server("demo_tools")
    with pytest.raises(NodeConfigurationError, match="MCP server 'demo_tools', which is not registered"):
        MCPClientNode(name="n").execute(server_config="demo_tools")


def test_tool_that_raises_names_node_server_and_tool(demo_server):
    node = MCPClientNode(name="caller")
    with pytest.raises(MCPToolError, match=r"node 'caller'.*MCP tool 'fail' on server 'demo'.*kaboom") as info:
        node.execute(server_config=demo_server, operation="call_tool", tool_name="fail",
                     tool_arguments={"message": "kaboom"})
    assert info.value.server == "demo" and info.value.tool == "fail" and info.value.node_id == "caller"
    quiet = node.execute(server_config=demo_server, operation="call_tool", tool_name="fail",
                         tool_arguments={"message": "kaboom"}, raise_on_error=False)
    assert quiet["is_error"] is True and "kaboom" in quiet["text"]
    with pytest.raises(MCPToolError, match=r"node 'caller'.*MCP tool 'crash' on server 'demo'.*failed"):
        node.execute(server_config=demo_server, operation="call_tool", tool_name="crash")


def test_wrong_arguments_and_unknown_tool(demo_server, time_server):
    node = MCPClientNode(name="caller")
    with pytest.raises(MCPToolError, match=r"MCP tool 'add' on server 'demo'.*validation error"):
        node.execute(server_config=demo_server, operation="call_tool", tool_name="add", tool_arguments={"a": 1})
    with pytest.raises(MCPToolError, match=r"server 'time'.*refused tool 'nope'.*Unknown tool"):
        node.execute(server_config=time_server, operation="call_tool", tool_name="nope")


def test_missing_command_is_a_clear_error():
    with pytest.raises(MCPServerError, match=r"node 'c'.*cannot start MCP server 'ghost'.*'no-such-mcp-server' not found"):
        MCPClientNode(name="c").execute(server_config={"name": "ghost", "command": "no-such-mcp-server"})


def test_server_that_exits_at_once_shows_its_stderr():
    cfg = {"name": "crashy", "command": sys.executable,
           "args": ["-c", "import sys; sys.stderr.write('missing API token'); sys.exit(2)"]}
    with pytest.raises(MCPServerError, match=r"'crashy'.*exited at once.*missing API token"):
        MCPClientNode(name="c").execute(server_config=cfg)


def test_slow_tool_times_out(demo_server):
    with pytest.raises(NodeExecutionError, match=r"'demo'.*within 0.5s"):
        MCPClientNode(name="c").execute(server_config=demo_server, operation="call_tool", tool_name="sleep",
                                        tool_arguments={"seconds": 5}, timeout=0.5)
    # the session survives a timed-out call
    assert list_tools(demo_server)


def test_bad_configuration_is_reported_before_any_connection():
    node = MCPClientNode(name="c")
    with pytest.raises(NodeConfigurationError, match="needs 'command' \\(stdio\\) or 'url'"):
        node.execute(server_config={"name": "x"})
    with pytest.raises(NodeConfigurationError, match="'args' must be a list of strings"):
        node.execute(server_config={"command": "x", "args": "a b"})
    with pytest.raises(NodeConfigurationError, match="parameter 'operation' expects one of 'list_tools', .*got 'explode'"):
        node.execute(server_config={"command": "x"}, operation="explode")
    with pytest.raises(NodeConfigurationError, match="needs parameter 'tool_name'"):
        node.execute(server_config={"command": "x"}, operation="call_tool")


def test_env_values_are_passed_but_never_shown(demo_server):
    from kailash.security.secrets import Secret

    cfg = {**demo_server, "env": {"DEMO_TOKEN": Secret("s3cr3t-value")}}
    parsed = MCPServerConfig.from_any(cfg)
    assert "s3cr3t-value" not in repr(parsed.to_dict()) and "s3cr3t-value" not in parsed.describe()
    assert call_tool(cfg, "echo", {"text": "ok"})["result"] == "ok"

"""The Studio's run detail lists each node's model and tool calls (real gateway, real MCP server, headless Chromium)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest
from test_studio_browser import KEY, browser, enter_key, page  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser
H = {"X-API-Key": KEY}
DEMO = {"name": "demo", "command": sys.executable,
        "args": [str(Path(__file__).parents[1] / "nodes" / "mcp" / "servers" / "demo_server.py")]}


@pytest.fixture
def served():
    from kailash.api.gateway import WorkflowGateway
    from kailash.nodes.ai.llm_agent import LLMAgentNode
    from kailash.nodes.mcp import MCPClientNode, close_sessions
    from kailash.workflow import Workflow

    wf = Workflow("agentic")
    wf.add_node(LLMAgentNode(name="agent", prompt="Echo the given text back unchanged, text: studio-hello",
                             mcp_servers=[DEMO]))
    wf.add_node(MCPClientNode(name="broken", server_config=DEMO, operation="call_tool", tool_name="fail",
                              tool_arguments={"message": "studio-oops"}, raise_on_error=False))
    gw = WorkflowGateway(port=0, api_keys=[KEY], log_level="warning")
    gw.register_workflow("agentic", wf)
    running = gw.serve_in_thread()
    yield running
    running.stop()
    close_sessions()


def test_run_detail_lists_each_nodes_model_and_tool_calls(page, served):  # noqa: F811
    run_id = httpx.post(f"{served.url}/workflows/agentic/execute", headers=H, json={}, timeout=60).json()["run_id"]
    enter_key(page)
    page.click("#btn-runs")
    page.click(f"#runs-list tr[data-run-id='{run_id}']")
    page.wait_for_selector(f"#run-detail[data-run-id='{run_id}'] #run-detail-nodes tr[data-node-id='agent'] .node-calls")
    agent = page.inner_text("#run-detail-nodes tr[data-node-id='agent'] .node-calls")
    lines = agent.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("model offline/kailash-offline-1") and "tokens" in lines[0]
    assert lines[1].startswith('tool demo.echo {"text":"studio-hello"}')
    failed = page.locator("#run-detail-nodes tr[data-node-id='broken'] .node-calls li.error-text")
    assert failed.count() == 1 and "studio-oops" in failed.inner_text()

"""Seed pattern 21's gateway half: a workflow registered with ``mcp_config`` runs over HTTP."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from gateway_test_helpers import API_KEY, HEADERS
from starlette.testclient import TestClient

SERVERS = Path(__file__).parents[1] / "nodes" / "mcp" / "servers"


@pytest.mark.slow
def test_pattern_21_register_workflow_with_mcp_config():
    pytest.importorskip("mcp")
    if not (SERVERS / "research_mcp_server.py").exists():
        pytest.skip("the test MCP servers are not in this checkout")
    from kailash.api.gateway import WorkflowGateway
    from kailash.nodes.ai.intelligent_agent_orchestrator import OrchestrationManagerNode
    from kailash.nodes.mcp import registered_mcp_servers, unregister_mcp_server
    from kailash.workflow import Workflow

    # --- the sample, as written (commands filled in with the local test servers) --------------
    gateway = WorkflowGateway(port=8000, api_keys=[API_KEY])
    mcp_config = {
        "research_tools": {
            "command": sys.executable,
            "args": ["-m", "research_mcp_server"],
            "env": {"PYTHONPATH": str(SERVERS), "RESEARCH_TOKEN": "tok-never-shown"},
            "capabilities": ["web_search", "document_analysis"],
        },
        "data_tools": {
            "command": sys.executable,
            "args": ["-m", "data_mcp_server"],
            "env": {"PYTHONPATH": str(SERVERS)},
            "capabilities": ["sql_query", "visualization"],
        },
    }
    workflow = Workflow()
    workflow.add_node(OrchestrationManagerNode(
        name="mcp_orchestrator",
        mcp_servers=list(mcp_config.keys()),
        agent_pool_size=15,
        enable_caching=True,
    ))
    gateway.register_workflow("mcp_research", workflow, mcp_config=mcp_config)
    # --------------------------------------------------------------------------------------------
    try:
        assert set(mcp_config) <= set(registered_mcp_servers())
        with TestClient(gateway.app) as client:
            described = client.get("/workflows/mcp_research", headers=HEADERS)
            assert described.json()["mcp_servers"] == [
                {"name": "research_tools", "capabilities": ["web_search", "document_analysis"]},
                {"name": "data_tools", "capabilities": ["sql_query", "visualization"]}]
            assert "tok-never-shown" not in described.text and "research_mcp_server" not in described.text
            reply = client.post("/workflows/mcp_research/execute", headers=HEADERS, json={"parameters": {
                "mcp_orchestrator": {"query": "Research AI chip revenue and summarize sales data by region"}}})
            assert reply.status_code == 200, reply.text
            out = reply.json()["results"]["mcp_orchestrator"]
            assert out["errors"] == [] and {t["server"] for t in out["tools_used"]} == {"research_tools", "data_tools"}
    finally:
        for name in mcp_config:
            unregister_mcp_server(name)

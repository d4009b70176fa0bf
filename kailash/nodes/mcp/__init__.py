"""MCP: the Model Context Protocol client node, named servers, and serving workflows as tools.

* :class:`MCPClientNode` — list and call tools, list and read resources on any MCP
  server (stdio command or streamable-HTTP URL), sessions reused across calls.
* :func:`list_tools` / :func:`call_tool` — the same as plain functions, for agents.
* :func:`register_mcp_server` — give a server config a name (``mcp_server="research_tools"``).

Serving workflows as MCP tools (``serve_workflows_mcp``, ``build_workflow_mcp_server``,
``kailash mcp serve FILE...``) lives in :mod:`kailash.api.mcp_server`: it runs workflows,
and nodes import no runtime.

The official ``mcp`` SDK (``pip install 'kailash[mcp]'``) is imported only when a
server is contacted or served, so importing this package is cheap.
"""

from __future__ import annotations

from typing import Any

from kailash.nodes.mcp._sessions import close_sessions
from kailash.nodes.mcp.client import MCPClientNode, call_tool, list_resources, list_tools, read_resource
from kailash.nodes.mcp.servers import (
    MCPServerConfig,
    MCPServerError,
    MCPToolError,
    register_mcp_server,
    register_mcp_servers,
    registered_mcp_servers,
    unregister_mcp_server,
)

__all__ = [
    "MCPClientNode",
    "MCPServerConfig",
    "MCPServerError",
    "MCPToolError",
    "call_tool",
    "close_sessions",
    "list_resources",
    "list_tools",
    "read_resource",
    "register_mcp_server",
    "register_mcp_servers",
    "registered_mcp_servers",
    "unregister_mcp_server",
]


def __getattr__(name: str) -> Any:
    if name in ("serve_workflows_mcp", "build_workflow_mcp_server", "server"):
        # serving runs workflows, so it moved up to the api layer; say where instead of importing it
        raise AttributeError(f"kailash.nodes.mcp.{name} moved: use `from kailash.api.mcp_server import {name}`"
                             if name != "server" else "kailash.nodes.mcp.server moved to kailash.api.mcp_server")
    raise AttributeError(f"module 'kailash.nodes.mcp' has no attribute {name!r}")

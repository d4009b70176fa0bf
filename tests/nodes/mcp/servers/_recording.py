"""Tool requests a test MCP server receives, recorded before any validation.

A server built on :class:`RecordingMCPServer` appends one JSON line ``{"tool", "arguments"}``
per ``tools/call`` to the file named by ``KAILASH_TEST_MCP_RECORD`` in its environment
(give it in the server's ``env``), so a test can prove that no schema-violating call ever
reached the server. Without the variable nothing is recorded.
"""

from __future__ import annotations

import json
import os
from typing import Any

from mcp.server.mcpserver import MCPServer

RECORD_ENV = "KAILASH_TEST_MCP_RECORD"


class RecordingMCPServer(MCPServer):
    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        path = os.environ.get(RECORD_ENV)
        if path:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"tool": name, "arguments": arguments}) + "\n")
        return await super().call_tool(name, arguments, context)

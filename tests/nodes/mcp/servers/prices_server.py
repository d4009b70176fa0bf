"""A price MCP server that records every tool request it receives (before any validation).

``get_prices(symbol: str)`` returns a fixed series of closing prices; ``trend(values:
list[float])`` summarises a numeric series. Each ``tools/call`` is appended as one JSON
line ``{"tool", "arguments"}`` to the file named by ``--record`` (so tests can prove that
no schema-violating call ever reached the server).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from mcp.server.mcpserver import MCPServer

RECORD = sys.argv[sys.argv.index("--record") + 1] if "--record" in sys.argv else None
PRICES = {"ACME": [101.5, 102.25, 99.8, 104.1, 106.0], "GLOBEX": [55.0, 54.2, 53.9, 52.1, 51.7]}


class RecordingServer(MCPServer):
    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        if RECORD:
            with open(RECORD, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"tool": name, "arguments": arguments}) + "\n")
        return await super().call_tool(name, arguments, context)


server = RecordingServer("prices", version="1.0")


@server.tool(description="Get the daily closing prices of a stock symbol")
def get_prices(symbol: str) -> list[float]:
    key = symbol.upper()
    if key not in PRICES:
        raise ValueError(f"unknown symbol {symbol!r}; known: {', '.join(PRICES)}")
    return PRICES[key]


@server.tool(description="Compute the trend (first, last, change, direction) of a series of numeric values")
def trend(values: list[float]) -> dict:
    if not values:
        raise ValueError("values must not be empty")
    change = values[-1] - values[0]
    return {"first": values[0], "last": values[-1], "change": round(change, 4),
            "direction": "up" if change > 0 else "down" if change < 0 else "flat"}


if __name__ == "__main__":
    server.run()

"""A small MCP server for tests, written with the official SDK (MCPServer).

Tools: echo, add, fail (ToolError), crash (RuntimeError), sleep, counter (process-wide, shows session reuse).
Resource: demo://readme. Run over stdio (default) or streamable HTTP with
``--http PORTFILE`` (binds 127.0.0.1 on an ephemeral port and writes the port there).
"""

from __future__ import annotations

import sys
import time

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("kailash-demo", version="1.0")
_calls = {"n": 0}


@server.tool(description="Echo the given text back unchanged")
def echo(text: str) -> str:
    return text


@server.tool(description="Add two integers and return their sum")
def add(a: int, b: int) -> int:
    return a + b


@server.tool(description="Always fails with the given message (a ToolError the client sees)")
def fail(message: str = "deliberate failure") -> str:
    raise ToolError(message)


@server.tool(description="Crashes with an unexpected exception (the SDK hides its text)")
def crash() -> str:
    raise RuntimeError("internal detail")


@server.tool(description="Sleep for the given number of seconds, then return them")
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@server.tool(description="Count calls made to this server process")
def counter() -> int:
    _calls["n"] += 1
    return _calls["n"]


@server.resource("demo://readme", name="readme", description="What this server is", mime_type="text/plain")
def readme() -> str:
    return "kailash demo MCP server: echo, add, fail, sleep, counter"


def main() -> None:
    if len(sys.argv) >= 3 and sys.argv[1] == "--http":
        import socket

        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        with open(sys.argv[2], "w") as f:
            f.write(str(sock.getsockname()[1]))
        app = server.streamable_http_app()
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    else:
        server.run()


if __name__ == "__main__":
    main()

"""Fixtures for the MCP tests: real MCP servers launched over stdio (and one over HTTP).

``servers/`` holds servers written with the official SDK; ``mcp-server-time`` is the
third-party server from PyPI. Sessions are closed after each module so every module
starts its servers fresh.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

SERVERS = Path(__file__).parent / "servers"


def stdio(name: str, script: str, *args: str) -> dict:
    return {"name": name, "command": sys.executable, "args": [str(SERVERS / script), *args]}


@pytest.fixture(scope="module", autouse=True)
def _close_mcp_sessions():
    yield
    from kailash.nodes.mcp import close_sessions

    close_sessions()


@pytest.fixture
def demo_server() -> dict:
    return stdio("demo", "demo_server.py")


@pytest.fixture
def time_server() -> dict:
    return {"name": "time", "command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]}


@pytest.fixture(scope="module")
def http_demo_server(tmp_path_factory):
    """The demo server over streamable HTTP on an ephemeral 127.0.0.1 port."""
    portfile = tmp_path_factory.mktemp("mcp-http") / "port"
    proc = subprocess.Popen([sys.executable, str(SERVERS / "demo_server.py"), "--http", str(portfile)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not (portfile.exists() and portfile.read_text()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"HTTP MCP server did not start: {proc.stderr.read().decode()[-500:]}")
        time.sleep(0.05)
    import socket

    port = int(portfile.read_text())
    while True:  # wait until it accepts connections
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("HTTP MCP server never accepted a connection")
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/mcp"
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()

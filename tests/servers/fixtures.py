"""Pytest fixtures that start the local test servers on ephemeral 127.0.0.1 ports.

Import the fixtures into a test module or conftest to use them::

    from tests.servers.fixtures import http_server, ws_server  # noqa: F401

* ``http_server`` (session): the uvicorn app of :mod:`tests.servers.http_app`;
  ``.url`` is ``http://127.0.0.1:PORT``, ``.state`` its :class:`ServerState`.
* ``https_server`` (session): the same app over TLS with a self-signed certificate
  (``.cert_file`` is the certificate a client may trust).
* ``ws_server`` (session): the websockets server of :mod:`tests.servers.ws_server`;
  ``.url`` is ``ws://127.0.0.1:PORT``.
* ``wss_server`` (session): the websocket server over TLS (self-signed, ``.cert_file``).
* ``dead_url``: an ``http://127.0.0.1:PORT`` where nothing listens.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers.http_app import ServerState, create_app
from tests.servers.ws_server import WSState, make_handler

START_TIMEOUT = 10.0


@dataclass
class RunningServer:
    """A server running in a background thread."""

    url: str
    state: Any
    port: int
    cert_file: str | None = None


def _bind() -> socket.socket:
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted connections only for
    # sockets that say so, and without it every small response waits ~40 ms (Nagle + delayed ACK)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def _serve(config: Any, sock: socket.socket, name: str):
    """Run a uvicorn ``config`` on ``sock`` in a daemon thread; return ``stop`` once it accepts connections."""
    import uvicorn

    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # not the main thread
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name=name)
    thread.start()
    deadline = START_TIMEOUT
    while not server.started and deadline > 0 and thread.is_alive():
        threading.Event().wait(0.02)
        deadline -= 0.02
    if not server.started:
        raise RuntimeError(f"{name} server did not start within {START_TIMEOUT:g} s")

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()

    return stop


def start_http_server(state: ServerState | None = None, *, certfile: str | None = None, keyfile: str | None = None):
    """Start the test app with uvicorn; returns ``(RunningServer, stop)``."""
    import uvicorn

    state = state or ServerState()
    sock = _bind()
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(state), log_level="warning", lifespan="off", ssl_certfile=certfile,
                            ssl_keyfile=keyfile, timeout_graceful_shutdown=1)
    stop = _serve(config, sock, "test-http")
    scheme = "https" if certfile else "http"
    return RunningServer(url=f"{scheme}://127.0.0.1:{port}", state=state, port=port, cert_file=certfile), stop


def serve_app(app: Any):
    """Serve any ASGI ``app`` with uvicorn on an ephemeral port; returns ``(url, stop)``."""
    import uvicorn

    sock = _bind()
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
    return f"http://127.0.0.1:{port}", _serve(config, sock, "test-app")


def start_ws_server(state: WSState | None = None, *, certfile: str | None = None, keyfile: str | None = None,
                    compression: str | None = "deflate"):
    """Start the websocket server in its own event loop thread; returns ``(RunningServer, stop)``.

    ``compression=None`` turns permessage-deflate off (a client's read buffer then holds
    what the bytes say, not ten times more).
    """
    from websockets.asyncio.server import serve

    state = state or WSState()
    sock = _bind()
    port = sock.getsockname()[1]
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> None:
        tls = None
        if certfile:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(certfile, keyfile)
        server = await serve(make_handler(state), sock=sock, ping_interval=None, ssl=tls, compression=compression)
        holder["server"] = server
        holder["stop"] = asyncio.Event()
        ready.set()
        await holder["stop"].wait()
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True, name="test-ws")
    thread.start()
    if not ready.wait(START_TIMEOUT):
        raise RuntimeError("test websocket server did not start within 10 s")

    def stop() -> None:
        loop.call_soon_threadsafe(holder["stop"].set)
        thread.join(timeout=5)
        loop.close()

    scheme = "wss" if certfile else "ws"
    return RunningServer(url=f"{scheme}://127.0.0.1:{port}", state=state, port=port, cert_file=certfile), stop


def make_self_signed(directory: Path) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 made with the openssl command."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return str(cert), str(key)


@pytest.fixture(scope="session")
def http_server():
    running, stop = start_http_server()
    yield running
    stop()


@pytest.fixture(scope="session")
def https_server(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = make_self_signed(tmp_path_factory.mktemp("tls"))
    running, stop = start_http_server(certfile=cert, keyfile=key)
    yield running
    stop()


@pytest.fixture(scope="session")
def ws_server():
    running, stop = start_ws_server()
    yield running
    stop()


@pytest.fixture(scope="session")
def wss_server(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = make_self_signed(tmp_path_factory.mktemp("wss"))
    running, stop = start_ws_server(certfile=cert, keyfile=key)
    yield running
    stop()


@pytest.fixture
def dead_url() -> str:
    sock = _bind()
    port = sock.getsockname()[1]
    sock.close()  # nothing listens here now
    return f"http://127.0.0.1:{port}"

"""The benchmarks' test servers, each in a process of its own (client and server never share an interpreter).

:func:`served` starts one of :mod:`tests.servers.fixtures`' servers (``start_http_server``,
``start_ws_server``) in a child process and yields its URL; leaving the block stops it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["served"]

_SERVER = """
import sys
sys.path.insert(0, {root!r})
from tests.servers.fixtures import {start}
server, stop = {start}()
print(server.url, flush=True)
sys.stdin.read()
stop()
"""


@contextmanager
def served(start: str, scheme: str) -> Iterator[str]:
    """The URL of ``tests.servers.fixtures.<start>()``'s server, run in a child process until the block ends.

    ``scheme`` is what the URL starts with (``http``, ``ws://``): anything else means it did not start.
    """
    proc = subprocess.Popen([sys.executable, "-c", _SERVER.format(root=str(ROOT), start=start)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    url = proc.stdout.readline().strip()
    if not url.startswith(scheme):
        proc.kill()
        raise RuntimeError(f"the benchmark server ({start}) did not start: {url!r}")
    try:
        yield url
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)

"""The wire between the host and sandbox workers: framing, and what may cross it.

Messages are length-prefixed. The host sends requests as pickles (the host is trusted).
Everything coming *back* from a worker is plain data in the encoding of
:mod:`kailash.security.sandbox.codec`, never a pickle: the host never imports or calls
anything a worker names, reads at most the policy's ``max_result_size`` plus a small
allowance per reply, and builds only what those bytes spell out.
"""

from __future__ import annotations

import pickle
import socket
import struct
import time
from typing import Any

from kailash.security.sandbox.codec import PLAIN_TYPES, MalformedReply, Raw, ResultRefused, decode, encode

__all__ = ["send_msg", "recv_msg", "recv_bytes", "send_reply", "encode", "decode", "loads_result", "Raw",
           "ResultRefused", "MalformedReply", "WireClosed", "WireTimeout", "PLAIN_TYPES", "DEFAULT_MAX_RESULT_SIZE",
           "ENVELOPE_ALLOWANCE"]

DEFAULT_MAX_RESULT_SIZE = 16 * 1024 * 1024
ENVELOPE_ALLOWANCE = 4 * 1024 * 1024  # status, messages and captured stdout around the result
_HEADER = struct.Struct("!Q")
MAX_MESSAGE = 1 << 31


class WireClosed(EOFError):
    """The other side closed the connection (a worker died)."""


class WireTimeout(TimeoutError):
    """No complete message arrived before the deadline."""


def send_msg(sock: socket.socket, obj: Any, *, data: bytes | None = None) -> None:
    payload = data if data is not None else pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_HEADER.pack(len(payload)) + payload)


def _recv_exact(sock: socket.socket, n: int, deadline: float | None) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WireTimeout("deadline passed")
            sock.settimeout(remaining)
        try:
            chunk = sock.recv(min(n - len(buf), 1 << 20))
        except TimeoutError as exc:
            raise WireTimeout("deadline passed") from exc
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise WireClosed(str(exc)) from exc
        if not chunk:
            raise WireClosed("connection closed")
        buf += chunk
    return bytes(buf)


def recv_bytes(sock: socket.socket, deadline: float | None = None, limit: int = MAX_MESSAGE) -> bytes:
    """One raw message payload of at most ``limit`` bytes; raises :class:`WireTimeout` or :class:`WireClosed`."""
    (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size, deadline))
    if size > limit:
        raise WireClosed(f"message of {size} bytes is over the {limit}-byte limit")
    return _recv_exact(sock, size, deadline)


def recv_msg(sock: socket.socket, deadline: float | None = None) -> Any:
    """One message from a trusted peer (the worker reading host requests)."""
    return pickle.loads(recv_bytes(sock, deadline))


def send_reply(sock: socket.socket, reply: dict[str, Any]) -> None:
    """Send a worker's reply (plain data built by the worker, results pre-encoded as :class:`Raw`)."""
    send_msg(sock, None, data=encode(reply, raw=True))


def loads_result(data: bytes) -> Any:
    """A worker's reply, decoded on the host (never unpickled); raises :class:`MalformedReply`."""
    return decode(data)

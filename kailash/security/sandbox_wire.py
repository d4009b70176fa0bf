"""The wire between the host and sandbox workers: framing, and what may cross it.

Messages are length-prefixed pickles. The host sends requests with the standard
pickler (the host is trusted); everything coming *back* from a worker is read with
:class:`ResultUnpickler`, which only rebuilds plain data types, so a compromised
worker cannot make the host import or call anything. Workers check results with
:func:`check_result` before sending them, so user code gets a clear error naming the
offending part instead of a pickling failure.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import fractions
import io
import pickle
import socket
import struct
import time
import uuid
from typing import Any

__all__ = ["send_msg", "recv_msg", "loads_result", "check_result", "ResultUnpickler", "WireClosed", "WireTimeout",
           "PLAIN_TYPES"]

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


def recv_bytes(sock: socket.socket, deadline: float | None = None) -> bytes:
    """One raw message payload; raises :class:`WireTimeout` or :class:`WireClosed`."""
    (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size, deadline))
    if size > MAX_MESSAGE:
        raise WireClosed(f"message of {size} bytes is too large")
    return _recv_exact(sock, size, deadline)


def recv_msg(sock: socket.socket, deadline: float | None = None) -> Any:
    """One message from a trusted peer (the worker reading host requests)."""
    return pickle.loads(recv_bytes(sock, deadline))


# -- what a result may contain ----------------------------------------------------------------

PLAIN_TYPES: frozenset[type] = frozenset({
    type(None), bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, set, frozenset,
    datetime.datetime, datetime.date, datetime.time, datetime.timedelta, datetime.timezone,
    decimal.Decimal, fractions.Fraction, uuid.UUID, collections.OrderedDict, collections.Counter,
    collections.deque, collections.defaultdict, range, slice,
})

_ALLOWED_GLOBALS = {
    "builtins": {"set", "frozenset", "complex", "bytearray", "list", "dict", "int", "float", "str", "bytes",
                 "tuple", "bool", "range", "slice", "getattr"},
    "datetime": {"datetime", "date", "time", "timedelta", "timezone"},
    "decimal": {"Decimal"},
    "fractions": {"Fraction"},
    "uuid": {"UUID", "SafeUUID"},
    "collections": {"OrderedDict", "Counter", "deque", "defaultdict"},
    "copyreg": {"_reconstructor"},
    "kailash.security.secrets": {"Secret"},
}


class ResultUnpickler(pickle.Unpickler):
    """Unpickles only plain data: a worker's reply can never name other callables."""

    def find_class(self, module: str, name: str) -> Any:
        if name in _ALLOWED_GLOBALS.get(module, ()):
            if module == "builtins" and name == "getattr":
                return _enum_getattr
            if module == "kailash.security.secrets":  # a worker's Secret never becomes a scrub pattern
                from kailash.security.secrets import sandbox_secret

                return sandbox_secret
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} may not cross the sandbox boundary")


def _enum_getattr(obj: Any, name: str) -> Any:  # SafeUUID members pickle as getattr(SafeUUID, "safe")
    if obj is uuid.SafeUUID and not name.startswith("_"):
        return getattr(obj, name)
    raise pickle.UnpicklingError("getattr may not cross the sandbox boundary")


def loads_result(data: bytes) -> Any:
    return ResultUnpickler(io.BytesIO(data)).load()


def check_result(value: Any, where: str = "result", _depth: int = 0, _seen: set[int] | None = None) -> str | None:
    """A sentence saying why ``value`` cannot cross the process boundary, or ``None``."""
    from kailash.security.secrets import Secret

    tp = type(value)
    if tp is Secret:
        return None
    if tp not in PLAIN_TYPES:
        origin = getattr(tp, "__module__", "?")
        kind = " (a class defined in the code)" if origin == "__sandbox__" else (
            "" if origin == "builtins" else f" (from module '{origin}')")
        hint = ""
        if origin.split(".")[0] in ("numpy", "pandas"):
            hint = "; convert it with .tolist() or .to_dict()"
        return (f"{where} is a {tp.__name__}{kind}, which cannot cross the process boundary; "
                f"sandboxed code must produce plain data (dict, list, str, numbers, datetime){hint}")
    if _depth > 200:
        return f"{where} is nested more than 200 levels deep"
    if tp in (list, tuple, set, frozenset, collections.deque, dict, collections.OrderedDict,
              collections.Counter, collections.defaultdict):
        seen = _seen if _seen is not None else set()
        if id(value) in seen:
            return None
        seen.add(id(value))
        if tp is collections.defaultdict and value.default_factory is not None \
                and value.default_factory not in (list, dict, set, int, float, str):
            return f"{where} is a defaultdict whose default_factory cannot cross the process boundary"
        if isinstance(value, dict):
            for k, v in value.items():
                problem = check_result(k, f"a key of {where}", _depth + 1, seen) or check_result(
                    v, f"{where}[{k!r}]" if len(repr(k)) < 40 else f"{where}[...]", _depth + 1, seen)
                if problem:
                    return problem
        else:
            for i, v in enumerate(value):
                problem = check_result(v, f"{where}[{i}]", _depth + 1, seen)
                if problem:
                    return problem
    return None

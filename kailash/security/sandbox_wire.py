"""The wire between the host and sandbox workers: framing, and what may cross it.

Messages are length-prefixed. The host sends requests as pickles (the host is trusted).
Everything coming *back* from a worker is in a small tagged format of plain data
(:func:`encode` / :func:`decode`) instead of pickle: the host never imports or calls
anything a worker names, and nothing in the format refers back to an earlier object,
so what the host builds is proportional to the bytes it read. The worker's encoder
dispatches on exact types only (a subclass of ``str`` or ``dict`` is refused, never
asked how to serialise itself), so encoding never runs user code, and it counts bytes
as it goes: a result that would encode past ``limit`` (``SecurityConfig.max_result_size``)
is refused, however few objects it shares in memory (``[[0] * 1000] * 1000000``).
:class:`~kailash.security.secrets.Secret` values never cross back: a host ``Secret``
could otherwise be minted by sandboxed code.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import fractions
import pickle
import socket
import struct
import time
import uuid
from typing import Any

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


# -- what a result may contain, and its encoding ------------------------------------------------

PLAIN_TYPES: frozenset[type] = frozenset({
    type(None), bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, set, frozenset,
    datetime.datetime, datetime.date, datetime.time, datetime.timedelta, datetime.timezone,
    decimal.Decimal, fractions.Fraction, uuid.UUID, collections.OrderedDict, collections.Counter,
    collections.deque, collections.defaultdict, range, slice,
})

# Read through the classes' own slots, captured before any user code runs: the Python-level
# properties of Fraction and UUID could be replaced by code that reaches the class.
_FRACTION_PARTS = (fractions.Fraction.__dict__["_numerator"].__get__, fractions.Fraction.__dict__["_denominator"].__get__)
_UUID_INT = uuid.UUID.__dict__["int"].__get__
_UUID_SAFE = uuid.UUID.__dict__["is_safe"].__get__
_SAFE = (uuid.SafeUUID.safe, uuid.SafeUUID.unsafe, uuid.SafeUUID.unknown)
_FACTORIES = (None, list, dict, set, int, float, str)
_ODICT_ITEMS = collections.OrderedDict.items
_DICT_ITEMS = dict.items
_DEFAULT_FACTORY = collections.defaultdict.__dict__["default_factory"].__get__
_MAX_DEPTH = 200
_I32 = struct.Struct("!I")
_F64 = struct.Struct("!d")
_DT = struct.Struct("!iBBBBBIB")
_TD = struct.Struct("!iii")
_SEQ_TAGS = {list: b"L", tuple: b"U", set: b"E", frozenset: b"Z", collections.deque: b"K"}
_MAP_TAGS = {dict: b"M", collections.OrderedDict: b"O", collections.Counter: b"C", collections.defaultdict: b"Q"}


class ResultRefused(ValueError):
    """A value cannot cross back to the host; the message says which part and why."""


class MalformedReply(ValueError):
    """Bytes from a worker that are not a well-formed reply (a hostile or broken worker)."""


class Raw:
    """Bytes already produced by :func:`encode`, spliced into an enclosing message."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def _describe(value: Any, where: str) -> str:
    tp = type(value)  # possibly a user class: read its names past any metaclass, as exact strs only
    origin, name = type.__dict__["__module__"].__get__(tp), type.__dict__["__name__"].__get__(tp)
    origin = origin if type(origin) is str else "?"
    name = name if type(name) is str else "object"
    if origin == "kailash.security.secrets" and name == "Secret":
        return (f"{where} is a Secret, which sandboxed code cannot return (a Secret the host received from "
                "sandboxed code could be minted there); pass the secret to the node that needs it instead")
    kind = " (a class defined in the code)" if origin == "__sandbox__" else (
        "" if origin == "builtins" else f" (from module '{origin}')")
    hint = "; convert it with .tolist() or .to_dict()" if origin.split(".")[0] in ("numpy", "pandas") else ""
    return (f"{where} is a {name}{kind}, which cannot cross the process boundary; "
            f"sandboxed code must produce plain data (dict, list, str, numbers, datetime){hint}")


class _Encoder:
    def __init__(self, limit: int | None) -> None:
        self.out: list[bytes] = []
        self.size = 0
        self.limit = limit
        self.active: set[int] = set()  # containers being encoded (a cycle never ends)

    def put(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.limit is not None and self.size > self.limit:
            raise ResultRefused(f"the result is larger than the max_result_size of {self.limit} bytes once "
                                "encoded (shared references count every time they appear); return less data "
                                "or raise SecurityConfig.max_result_size")
        self.out.append(chunk)

    def text(self, tag: bytes, value: str) -> None:
        data = value.encode("utf-8", "surrogatepass")
        self.put(tag + _I32.pack(len(data)))
        self.put(data)

    def integer(self, value: int) -> None:
        data = value.to_bytes((value.bit_length() + 8) // 8, "big", signed=True)
        self.put(b"I" + _I32.pack(len(data)))
        self.put(data)

    def timezone(self, tz: Any, where: str) -> None:
        if tz is None:
            self.put(b"N")
            return
        if type(tz) is not datetime.timezone:
            raise ResultRefused(_describe(tz, f"the tzinfo of {where}"))
        name = tz.tzname(None)
        if type(name) is not str:
            raise ResultRefused(f"the tzinfo name of {where} is not a plain str")
        self.put(b"z")
        self.value(tz.utcoffset(None), where, 1)
        self.text(b"S", name)

    def value(self, v: Any, where: str, depth: int) -> None:  # noqa: C901 - one branch per plain type
        tp = type(v)
        if v is None:
            self.put(b"N")
        elif tp is bool:
            self.put(b"T" if v else b"F")
        elif tp is int:
            self.integer(v)
        elif tp is float:
            self.put(b"D" + _F64.pack(v))
        elif tp is str:
            self.text(b"S", v)
        elif tp is bytes or tp is bytearray:
            self.put((b"B" if tp is bytes else b"A") + _I32.pack(len(v)))
            self.put(bytes(v))
        elif tp in _SEQ_TAGS or tp in _MAP_TAGS:
            if depth > _MAX_DEPTH:
                raise ResultRefused(f"{where} is nested more than {_MAX_DEPTH} levels deep")
            if id(v) in self.active:
                raise ResultRefused(f"{where} contains itself (a cycle), which cannot cross the process boundary")
            self.active.add(id(v))
            try:
                self.container(v, tp, where, depth)
            finally:
                self.active.discard(id(v))
        elif tp is complex:
            self.put(b"X" + _F64.pack(v.real) + _F64.pack(v.imag))
        elif tp is decimal.Decimal:
            self.text(b"Y", str(v))
        elif tp is fractions.Fraction:
            num, den = _FRACTION_PARTS[0](v), _FRACTION_PARTS[1](v)
            if type(num) is not int or type(den) is not int:
                raise ResultRefused(f"{where} is a Fraction of non-int parts")
            self.put(b"R")
            self.integer(num)
            self.integer(den)
        elif tp is uuid.UUID:
            number, safe = _UUID_INT(v), _UUID_SAFE(v)
            if type(number) is not int or not any(safe is s for s in _SAFE):
                raise ResultRefused(f"{where} is a UUID with non-plain parts")
            self.put(b"W" + bytes([next(i for i, s in enumerate(_SAFE) if safe is s)]))
            self.integer(number)
        elif tp is datetime.datetime:
            self.put(b"t" + _DT.pack(v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond, v.fold))
            self.timezone(v.tzinfo, where)
        elif tp is datetime.date:
            self.put(b"d" + _DT.pack(v.year, v.month, v.day, 0, 0, 0, 0, 0))
        elif tp is datetime.time:
            self.put(b"h" + _DT.pack(0, 0, 0, v.hour, v.minute, v.second, v.microsecond, v.fold))
            self.timezone(v.tzinfo, where)
        elif tp is datetime.timedelta:
            self.put(b"y" + _TD.pack(v.days, v.seconds, v.microseconds))
        elif tp is datetime.timezone:
            self.timezone(v, where)
        elif tp is range:
            self.put(b"G")
            for part in (v.start, v.stop, v.step):
                self.integer(part)
        elif tp is slice:
            self.put(b"P")
            for part in (v.start, v.stop, v.step):
                self.value(part, f"a part of {where}", depth + 1)
        elif tp is Raw:
            self.put(v.data)
        else:
            raise ResultRefused(_describe(v, where))

    def container(self, v: Any, tp: type, where: str, depth: int) -> None:
        if tp in _SEQ_TAGS:
            if tp is collections.deque:
                self.put(b"K")
                self.value(v.maxlen, where, depth + 1)
            else:
                self.put(_SEQ_TAGS[tp])
            items = list(v)  # exact builtin containers: C iteration, no user methods
            self.put(_I32.pack(len(items)))
            for i, item in enumerate(items):
                self.value(item, f"{where}[{i}]", depth + 1)
            return
        self.put(_MAP_TAGS[tp])
        if tp is collections.defaultdict:
            factory = _DEFAULT_FACTORY(v)
            code = next((i for i, f in enumerate(_FACTORIES) if factory is f), None)
            if code is None:
                raise ResultRefused(f"{where} is a defaultdict whose default_factory cannot cross the process "
                                    "boundary")
            self.put(bytes([code]))
        pairs = list(_ODICT_ITEMS(v) if tp is collections.OrderedDict else _DICT_ITEMS(v))
        self.put(_I32.pack(len(pairs)))
        for key, item in pairs:
            self.value(key, f"a key of {where}", depth + 1)
            self.value(item, f"{where}[{key!r}]" if type(key) in (str, int) and len(repr(key)) < 40
                       else f"{where}[...]", depth + 1)


def encode(value: Any, limit: int | None = None, where: str = "result") -> bytes:
    """``value`` in the wire format; raises :class:`ResultRefused` past ``limit`` bytes or for non-plain data."""
    encoder = _Encoder(limit)
    encoder.value(value, where, 0)
    return b"".join(encoder.out)


def send_reply(sock: socket.socket, reply: dict[str, Any]) -> None:
    """Send a worker's reply (plain data built by the worker, results pre-encoded as :class:`Raw`)."""
    send_msg(sock, None, data=encode(reply))


class _Decoder:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise MalformedReply("truncated reply")
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def count(self) -> int:
        return int(_I32.unpack(self.take(4))[0])

    def integer(self) -> int:
        if self.take(1) != b"I":
            raise MalformedReply("expected an int")
        return int.from_bytes(self.take(self.count()), "big", signed=True)

    def text(self) -> str:
        return self.take(self.count()).decode("utf-8", "surrogatepass")

    def value(self, depth: int) -> Any:  # noqa: C901 - one branch per tag
        if depth > _MAX_DEPTH + 8:
            raise MalformedReply("reply nested too deeply")
        tag = self.take(1)
        if tag == b"N":
            return None
        if tag in (b"T", b"F"):
            return tag == b"T"
        if tag == b"I":
            self.pos -= 1
            return self.integer()
        if tag == b"D":
            return _F64.unpack(self.take(8))[0]
        if tag == b"S":
            return self.text()
        if tag in (b"B", b"A"):
            data = self.take(self.count())
            return data if tag == b"B" else bytearray(data)
        if tag in (b"L", b"U", b"E", b"Z", b"K"):
            maxlen = self.value(depth + 1) if tag == b"K" else None
            items = [self.value(depth + 1) for _ in range(self.count())]
            if tag == b"L":
                return items
            if tag == b"K":
                return collections.deque(items, maxlen)
            return {b"U": tuple, b"E": set, b"Z": frozenset}[tag](items)
        if tag in (b"M", b"O", b"C", b"Q"):
            factory = _FACTORIES[self.take(1)[0]] if tag == b"Q" else None
            pairs = [(self.value(depth + 1), self.value(depth + 1)) for _ in range(self.count())]
            if tag == b"Q":
                return collections.defaultdict(factory, pairs)
            mapping = {b"M": dict, b"O": collections.OrderedDict, b"C": collections.Counter}[tag]()
            dict.update(mapping, pairs) if tag == b"C" else mapping.update(pairs)
            return mapping
        if tag == b"X":
            return complex(_F64.unpack(self.take(8))[0], _F64.unpack(self.take(8))[0])
        if tag == b"Y":
            return decimal.Decimal(self.text())
        if tag == b"R":
            return fractions.Fraction(self.integer(), self.integer())
        if tag == b"W":
            safe = _SAFE[self.take(1)[0]]
            return uuid.UUID(int=self.integer(), is_safe=safe)
        if tag in (b"t", b"d", b"h"):
            y, mo, d, h, mi, s, us, fold = _DT.unpack(self.take(_DT.size))
            if tag == b"d":
                return datetime.date(y, mo, d)
            tz = self.value(depth + 1)
            if tz is not None and type(tz) is not datetime.timezone:
                raise MalformedReply("tzinfo is not a timezone")
            if tag == b"t":
                return datetime.datetime(y, mo, d, h, mi, s, us, tz, fold=fold)
            return datetime.time(h, mi, s, us, tz, fold=fold)
        if tag == b"y":
            days, seconds, micro = _TD.unpack(self.take(_TD.size))
            return datetime.timedelta(days, seconds, micro)
        if tag == b"z":
            offset = self.value(depth + 1)
            if self.take(1) != b"S":
                raise MalformedReply("expected a timezone name")
            return datetime.timezone(offset, self.text())
        if tag == b"G":
            return range(self.integer(), self.integer(), self.integer())
        if tag == b"P":
            return slice(self.value(depth + 1), self.value(depth + 1), self.value(depth + 1))
        raise MalformedReply(f"unknown tag {tag!r}")


def decode(data: bytes) -> Any:
    """The value :func:`encode` produced; raises :class:`MalformedReply` for anything else."""
    decoder = _Decoder(data)
    try:
        value = decoder.value(0)
    except MalformedReply:
        raise
    except (ValueError, TypeError, OverflowError, IndexError, KeyError, RecursionError, struct.error) as exc:
        raise MalformedReply(f"malformed reply ({type(exc).__name__}: {exc})") from None
    if decoder.pos != len(data):
        raise MalformedReply("trailing bytes after the reply")
    return value


def loads_result(data: bytes) -> Any:
    """A worker's reply, decoded on the host (never unpickled)."""
    return decode(data)

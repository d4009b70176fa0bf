"""The plain-data encoding of everything a sandbox worker sends back to the host.

:func:`encode` runs in the worker. It dispatches on exact types only (a subclass of
``str`` or ``dict`` is refused, never asked how to serialise itself), reads Python-level
classes (``Fraction``, ``UUID``) through slots captured before any user code ran, so it
never runs user code; and it counts bytes as it writes, refusing past ``limit``: shared
references are written every time they appear, so ``[[0] * 1000] * 1000000`` is
measured as the gigabytes it would become, not the kilobytes it occupies. Cycles are
refused. :func:`decode` runs in the host: the format has no back-references and no
names of callables, so a hostile worker can make the host build only plain data
proportional to the bytes it sent. ``Secret`` is not plain data: sandboxed code cannot
hand the host a ``Secret`` it would trust.

A fast path (:func:`_encode_fast`, :func:`decode`) handles the common types; the slower
:class:`_Encoder` handles the rest and, when something is refused, finds the offending
part and names it (``result['rows'][3] is a Point (a class defined in the code)``).
The module runs a little past 400 lines because encoder and decoder must agree tag for
tag and are kept side by side.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import fractions
import struct
import uuid
from typing import Any

__all__ = ["encode", "decode", "Raw", "ResultRefused", "MalformedReply", "PLAIN_TYPES"]

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
_S32 = struct.Struct("!i")
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
    def __init__(self, limit: int | None, raw: bool = False) -> None:
        self.raw = raw  # only the worker's own envelope may splice pre-encoded bytes
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
        elif tp is Raw and self.raw:
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
        self.put(_MAP_TAGS[tp])  # type: ignore[index]  # tp is one of the exact mapping types
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


class _Stop(Exception):
    """The fast path met something to refuse; the slow encoder finds and names it."""


def _encode_fast(value: Any, limit: int, raw: bool) -> bytes:
    out = bytearray()
    put = out.extend
    active: set[int] = set()
    pack32, packs32, packf = _I32.pack, _S32.pack, _F64.pack

    def enc(v: Any, depth: int) -> None:  # noqa: C901 - hot path, one branch per common type
        tp = type(v)
        if tp is str:
            data = v.encode("utf-8", "surrogatepass")
            if len(out) + len(data) > limit:
                raise _Stop
            put(b"S")
            put(pack32(len(data)))
            put(data)
        elif tp is int:
            if -0x80000000 <= v < 0x80000000:
                put(b"i")
                put(packs32(v))
            else:
                data = v.to_bytes((v.bit_length() + 8) // 8, "big", signed=True)
                if len(out) + len(data) > limit:
                    raise _Stop
                put(b"I")
                put(pack32(len(data)))
                put(data)
        elif v is None:
            put(b"N")
        elif tp is bool:
            put(b"T" if v else b"F")
        elif tp is float:
            put(b"D")
            put(packf(v))
        elif tp is dict or tp is list or tp is tuple:
            key = id(v)
            if depth > _MAX_DEPTH or key in active:
                raise _Stop
            active.add(key)
            put(b"M" if tp is dict else b"L" if tp is list else b"U")
            put(pack32(len(v)))
            if tp is dict:
                for k, item in _DICT_ITEMS(v):
                    enc(k, depth + 1)
                    enc(item, depth + 1)
            else:
                for item in v:
                    enc(item, depth + 1)
            active.discard(key)
            if len(out) > limit:
                raise _Stop
        elif tp is bytes:
            if len(out) + len(v) > limit:
                raise _Stop
            put(b"B")
            put(pack32(len(v)))
            put(v)
        elif tp is Raw and raw:
            put(v.data)
        else:  # the rarer plain types, and everything to refuse
            sub = _Encoder(limit - len(out))
            try:
                sub.value(v, "", depth)
            except ResultRefused:
                raise _Stop from None
            put(b"".join(sub.out))

    enc(value, 0)
    if len(out) > limit:
        raise _Stop
    return bytes(out)


def encode(value: Any, limit: int | None = None, where: str = "result", *, raw: bool = False) -> bytes:
    """``value`` in the wire format; raises :class:`ResultRefused` past ``limit`` bytes or for non-plain data.

    ``raw=True`` (the worker's own reply envelope only) splices :class:`Raw` bytes in place.
    """
    try:
        return _encode_fast(value, limit if limit is not None else 1 << 62, raw)
    except (_Stop, RecursionError):
        pass
    encoder = _Encoder(limit, raw)  # slower, and names the part it refuses
    try:
        encoder.value(value, where, 0)
    except RecursionError:
        raise ResultRefused(f"{where} is nested too deeply to cross the process boundary") from None
    raise ResultRefused(f"{where} cannot cross the process boundary")  # pragma: no cover - both paths agree


_CONTAINERS = {ord("L"): list, ord("U"): tuple, ord("E"): set, ord("Z"): frozenset}
_MAPPINGS = {ord("M"): dict, ord("O"): collections.OrderedDict, ord("C"): collections.Counter}


def decode(data: bytes) -> Any:
    """The value :func:`encode` produced; raises :class:`MalformedReply` for anything else."""
    size = len(data)
    pos = 0
    unpack32, unpacks32, unpackf = _I32.unpack_from, _S32.unpack_from, _F64.unpack_from

    def take(n: int) -> bytes:
        nonlocal pos
        end = pos + n
        if end > size:
            raise MalformedReply("truncated reply")
        chunk = data[pos:end]
        pos = end
        return chunk

    def count() -> int:
        nonlocal pos
        (n,) = unpack32(data, pos)
        pos += 4
        return int(n)

    def integer() -> int:
        value = dec(0)
        if type(value) is not int:
            raise MalformedReply("expected an int")
        return value

    def dec(depth: int) -> Any:  # noqa: C901 - one branch per tag
        nonlocal pos
        if depth > _MAX_DEPTH + 8:
            raise MalformedReply("reply nested too deeply")
        tag = data[pos]
        pos += 1
        if tag == 0x53:  # S
            return take(count()).decode("utf-8", "surrogatepass")
        if tag == 0x69:  # i
            (value,) = unpacks32(data, pos)
            pos += 4
            return value
        if tag == 0x4D or tag == 0x4C or tag == 0x55:  # M L U
            n = count()
            if tag == 0x4D:
                mapping = {}
                for _ in range(n):
                    key = dec(depth + 1)
                    mapping[key] = dec(depth + 1)
                return mapping
            items = [dec(depth + 1) for _ in range(n)]
            return items if tag == 0x4C else tuple(items)
        if tag == 0x44:  # D
            (number,) = unpackf(data, pos)
            pos += 8
            return number
        if tag == 0x4E:  # N
            return None
        if tag == 0x54 or tag == 0x46:  # T F
            return tag == 0x54
        if tag == 0x49:  # I
            return int.from_bytes(take(count()), "big", signed=True)
        if tag == 0x42 or tag == 0x41:  # B A
            raw = take(count())
            return raw if tag == 0x42 else bytearray(raw)
        if tag in _CONTAINERS:
            return _CONTAINERS[tag]([dec(depth + 1) for _ in range(count())])
        if tag in _MAPPINGS or tag == 0x51:  # Q: defaultdict
            factory = _FACTORIES[take(1)[0]] if tag == 0x51 else None
            pairs = [(dec(depth + 1), dec(depth + 1)) for _ in range(count())]
            if tag == 0x51:
                return collections.defaultdict(factory, pairs)
            mapping = _MAPPINGS[tag]()
            if tag == 0x43:  # Counter.update would add counts
                dict.update(mapping, pairs)
            else:
                mapping.update(pairs)
            return mapping
        if tag == 0x4B:  # K: deque
            maxlen = dec(depth + 1)
            return collections.deque([dec(depth + 1) for _ in range(count())], maxlen)
        if tag == 0x58:  # X
            real, imag = unpackf(data, pos)[0], unpackf(data, pos + 8)[0]
            pos += 16
            return complex(real, imag)
        if tag == 0x59:  # Y
            return decimal.Decimal(take(count()).decode())
        if tag == 0x52:  # R
            return fractions.Fraction(integer(), integer())
        if tag == 0x57:  # W
            safe = _SAFE[take(1)[0]]
            return uuid.UUID(int=integer(), is_safe=safe)
        if tag in (0x74, 0x64, 0x68):  # t d h
            y, mo, d, h, mi, sec, us, fold = _DT.unpack(take(_DT.size))
            if tag == 0x64:
                return datetime.date(y, mo, d)
            tz = dec(depth + 1)
            if tz is not None and type(tz) is not datetime.timezone:
                raise MalformedReply("tzinfo is not a timezone")
            if tag == 0x74:
                return datetime.datetime(y, mo, d, h, mi, sec, us, tz, fold=fold)
            return datetime.time(h, mi, sec, us, tz, fold=fold)
        if tag == 0x79:  # y
            return datetime.timedelta(*_TD.unpack(take(_TD.size)))
        if tag == 0x7A:  # z
            offset = dec(depth + 1)
            name = dec(depth + 1)
            if type(name) is not str:
                raise MalformedReply("expected a timezone name")
            return datetime.timezone(offset, name)
        if tag == 0x47:  # G
            return range(integer(), integer(), integer())
        if tag == 0x50:  # P
            return slice(dec(depth + 1), dec(depth + 1), dec(depth + 1))
        raise MalformedReply(f"unknown tag {tag!r}")

    try:
        value = dec(0)
    except MalformedReply:
        raise
    except (ValueError, TypeError, ArithmeticError, IndexError, KeyError, RecursionError, struct.error) as exc:
        raise MalformedReply(f"malformed reply ({type(exc).__name__})") from None
    if pos != size:
        raise MalformedReply("trailing bytes after the reply")
    return value

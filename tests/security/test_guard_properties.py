"""Property-based tests of the Python guards and the result encoding, run in-process.

Hypothesis generates attribute names (plain, dunder, private, unicode look-alikes, and
``str`` subclasses whose methods lie), format strings with attribute chains and nested
specs, and plain-data graphs with shared references. The guards must never hand out a
forbidden object, and the encoder must count every shared reference.
"""

from __future__ import annotations

import collections
import datetime
import sys
import types

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kailash.errors import SecurityError
from kailash.security.sandbox.guards import DEFAULT_ALLOWED_IMPORTS, SandboxEnvironment
from kailash.security.sandbox.policy import attribute_refused
from kailash.security.sandbox.wire import MalformedReply, ResultRefused, decode, encode

DUNDERS = ["__self__", "__globals__", "__class__", "__dict__", "__code__", "__closure__", "__builtins__",
           "__subclasses__", "__mro__", "__base__", "__bases__", "__getattribute__", "__reduce_ex__", "__func__",
           "__module__", "__init__", "__wrapped__", "__traceback__", "__context__", "__cause__", "__kwdefaults__"]
INTERNALS = ["gi_frame", "gi_code", "f_back", "f_globals", "f_locals", "f_builtins", "tb_frame", "tb_next",
             "cr_frame", "ag_frame", "mro", "cell_contents", "co_code", "func_globals", "format", "format_map"]
LOOKALIKES = ["\uff3f\uff3fself\uff3f\uff3f", "__self__\u200b", "__s\u0435lf__", "_\u005f" + "self__", "__SELF__"]

names = st.one_of(st.sampled_from(DUNDERS + INTERNALS + LOOKALIKES), st.text(max_size=12),
                  st.builds(lambda a, b: a + b, st.sampled_from(["_", "__", "gi_", "f_"]), st.text(max_size=8)))


def _liar(base: str, answer: bool) -> str:
    class Liar(str):
        def startswith(self, *args):  # noqa: ARG002
            return answer

        def __contains__(self, item):  # noqa: ARG002
            return answer

        def split(self, *args):  # noqa: ARG002
            return ["harmless"]

        def __str__(self):
            return "harmless"

    return Liar(base)


hostile_names = st.one_of(names, st.builds(_liar, names, st.booleans()))


def _generator():
    yield 1


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return SandboxEnvironment(allowed_imports=DEFAULT_ALLOWED_IMPORTS,
                              allowed_directories=[str(tmp_path_factory.mktemp("props"))], max_file_size=None,
                              library_roots=[])


def _targets(env):
    class User:
        pass

    return [len, print, env.builtins["getattr"], env.builtins["open"], _generator(), User(), User, "text",
            str.format, types.SimpleNamespace(a=1), env.snapshot("json"), (lambda: 0), sys.exc_info]


def _forbidden(env):
    import builtins

    return [builtins, vars(builtins), env, env.builtins, env._active, globals(), sys.modules]


def _is_forbidden(value, forbidden) -> bool:
    if any(value is f for f in forbidden):
        return True
    return isinstance(value, (types.FrameType, types.CodeType, types.TracebackType, types.CellType)) or (
        isinstance(value, dict) and "__builtins__" in value)


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(name=hostile_names, which=st.integers(min_value=0, max_value=12))
def test_getattr_never_reaches_a_forbidden_object(env, name, which):
    target = _targets(env)[which]
    sandbox_getattr, sandbox_hasattr = env.builtins["getattr"], env.builtins["hasattr"]
    try:
        value = sandbox_getattr(target, name)
    except (SecurityError, AttributeError, TypeError):
        value = None
    else:
        assert type(name) is str and not attribute_refused(name)
    assert not _is_forbidden(value, _forbidden(env))
    if value is not None and name in ("format", "format_map"):
        assert value is not str.format and getattr(value, "__self__", None) is None  # always the checked stand-in
    try:
        sandbox_hasattr(target, name)
    except SecurityError:
        assert type(name) is not str or attribute_refused(name)


@SETTINGS
@given(name=hostile_names)
def test_setattr_refuses_what_getattr_refuses(env, name):
    class User:
        pass

    try:
        env.builtins["setattr"](User(), name, 1)
    except SecurityError:
        assert type(name) is not str or attribute_refused(name)
    else:
        assert type(name) is str and not attribute_refused(name)


field = st.builds(lambda first, chain: first + "".join(chain), st.sampled_from(["0", "1", "x", ""]),
                  st.lists(st.one_of(st.builds(lambda n: "." + n, st.sampled_from(DUNDERS + INTERNALS + ["real"])),
                                     st.just("[0]"), st.just("[a]")), max_size=3))
fmt = st.recursive(st.builds(lambda f, spec: "{" + f + (":" + spec if spec else "") + "}", field,
                             st.sampled_from(["", ">5", "x"])),
                   lambda inner: st.builds(lambda f, s: "{" + f + ":" + s + "}", field, inner), max_leaves=3)


@SETTINGS
@given(template=st.lists(st.one_of(fmt, st.text(alphabet="ab {}", max_size=4)), max_size=3).map("".join),
       as_liar=st.booleans())
def test_format_strings_never_read_private_attributes(env, template, as_liar):
    text = _liar(template, False) if as_liar else template
    formatter = env.guard_value(str.format)
    forbidden = [repr(f)[:30] for f in (len.__self__, env)]
    try:
        out = formatter(text, len, print, x=_generator())
    except SecurityError:
        return
    except (ValueError, KeyError, IndexError, AttributeError, TypeError):
        out = ""
    assert not any(f in out for f in forbidden)
    for part in ("__", ".gi_", ".f_", ".tb_", ".mro", ".cell_", ".co_", ".func_"):
        assert part not in template or ("{" not in template) or _no_field_reads(template, part)


def _no_field_reads(template: str, part: str) -> bool:
    import _string

    try:
        for _lit, fld, spec, _conv in _string.formatter_parser(template):
            if fld and part.lstrip(".") in fld and "." + part.lstrip(".") in "." + fld:
                return False
            if spec and not _no_field_reads(spec, part):
                return False
    except ValueError:
        return True
    return True


plain = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20),
              st.binary(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.tuples(inner, inner),
                            st.dictionaries(st.text(max_size=5), inner, max_size=5)),
    max_leaves=30)


@settings(max_examples=200, deadline=None)
@given(value=plain, copies=st.integers(min_value=1, max_value=50))
def test_encoding_counts_every_shared_reference(value, copies):
    one = len(encode(value))
    shared = [value] * copies
    assert len(encode(shared)) >= one * copies
    assert decode(encode(shared)) == shared
    with pytest.raises(ResultRefused, match="max_result_size"):
        encode([shared] * 2, limit=one * copies)


rich = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10),
              st.binary(max_size=10), st.datetimes(timezones=st.none() | st.just(datetime.UTC)),
              st.dates(), st.timedeltas(), st.decimals(allow_nan=False), st.fractions(), st.uuids(),
              st.complex_numbers(allow_nan=False), st.builds(bytearray, st.binary(max_size=5))),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.tuples(inner, inner), st.frozensets(st.integers(), max_size=3),
        st.sets(st.text(max_size=3), max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=4),
        st.builds(collections.OrderedDict, st.dictionaries(st.text(max_size=3), inner, max_size=3)),
        st.builds(collections.deque, st.lists(inner, max_size=3))),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(value=rich)
def test_every_plain_type_round_trips(value):
    back = decode(encode(value))
    assert back == value and type(back) is type(value)


@st.composite
def damaged(draw):
    data = bytearray(encode(draw(rich)))
    for _ in range(draw(st.integers(1, 3))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


@settings(max_examples=500, deadline=None)
@given(data=st.one_of(st.binary(max_size=64), damaged()))
def test_hostile_bytes_decode_to_plain_data_or_a_clear_refusal(data):
    try:
        decode(data)
    except MalformedReply:
        pass

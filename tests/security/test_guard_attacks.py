"""Attacks on the sandbox's Python guards: hostile objects handed to the guards themselves.

The guards (restricted builtins, module facades, the audit hook, the result encoder) run
inside the worker next to user code. Each case below hands them an object whose methods
lie (a ``str`` subclass whose ``startswith`` says no, a ``__str__`` that returns another
name, a path whose ``__eq__`` always agrees) or reaches an attribute through a helper the
guards do not see (``super().format``, ``UserString.format``, ``functools.update_wrapper``).
Every case runs under bubblewrap and as a plain process: the Python layer must hold on
its own. Each asserts the secure outcome: a SecurityError and nothing forbidden reached.
"""

from __future__ import annotations

import os

import pytest

from kailash.errors import KailashError, NodeExecutionError, SecurityError
from kailash.security.sandbox import shutdown_sandboxes
from kailash.security.sandbox.files import bwrap_available
from kailash.security.sandbox.guards import DEFAULT_ALLOWED_IMPORTS
from tests.security.helpers import Runner, make_config

LIAR = """
class S(str):
    def startswith(self, *args):
        return False
    def endswith(self, *args):
        return False
    def __contains__(self, item):
        return False
    def split(self, *args):
        return ['harmless']
    def __str__(self):
        return 'harmless'
"""

# Equality lies only to the first comparison (the guard's membership test), then tells the truth.
FLIP = """
seen = []
class S(str):
    def __eq__(self, other):
        seen.append(1)
        return len(seen) > 1 and ''.join([self]) == other
    def __hash__(self):
        return hash(''.join([self]))
"""

# (id, code): each must raise SecurityError; none may produce a result.
ATTACKS = [
    ("getattr-str-subclass", LIAR + "result = repr(getattr(len, S('__self__')))"),
    ("getattr-str-subclass-blocked-name",
     FLIP + "def g():\n    yield 1\nresult = repr(getattr(g(), S('gi_frame')))"),
    ("getattr-str-subclass-default", LIAR + "result = repr(getattr(len, S('__self__'), None))"),
    ("hasattr-str-subclass", LIAR + "result = hasattr(len, S('__self__'))"),
    ("setattr-str-subclass", LIAR + "class C:\n    pass\nsetattr(C, S('_hidden'), 1)\nresult = 'set'"),
    ("delattr-str-subclass", LIAR + "class C:\n    _x = 1\ndelattr(C, S('_x'))\nresult = 'deleted'"),
    ("attrgetter-str-dunder", LIAR + "import operator\nresult = repr(operator.attrgetter(S('__self__'))(len))"),
    ("attrgetter-dotted", LIAR + "import operator\nresult = repr(operator.attrgetter(S('__self__.open'))(len))"),
    ("methodcaller-getattribute",
     LIAR + "import operator\nresult = repr(operator.methodcaller(S('__getattribute__'), '__self__')(len))"),
    ("methodcaller-format", LIAR + "import operator\nresult = operator.methodcaller(S('format'), len)('{0.__self__}')"),
    ("super-format",
     "class F(str):\n    def go(self, *args):\n        return super().format(*args)\n"
     "result = F('{0.__self__}').go(len)"),
    ("super-format-map",
     "class F(str):\n    def go(self, m):\n        return super().format_map(m)\n"
     "result = F('{f.__self__}').go({'f': len})"),
    ("getattr-super-format",
     "class F(str):\n    def go(self, *args):\n        return getattr(super(), 'format')(*args)\n"
     "result = F('{0.__self__}').go(len)"),
    ("userstring-format", "import collections\nresult = collections.UserString('{0.__self__}').format(len)"),
    ("userstring-format-map",
     "import collections\nresult = collections.UserString('{f.__self__}').format_map({'f': len})"),
    ("match-keyword-format", "match '{0.__self__}':\n    case str(format=f):\n        result = f(len)"),
    ("format-spec-nested", "result = '{0:{1.__self__}}'.format(1, len)"),
    ("format-map-user-mapping",
     "class M(dict):\n    def __missing__(self, key):\n        return len\nresult = '{f.__self__}'.format_map(M())"),
    ("str-format-via-getattr-type", "result = getattr(type('x'), 'format')('{0.__self__}', len)"),
    ("update-wrapper-reads-globals",
     "import functools\nbox = []\nclass Sink:\n    def update(self, d):\n        box.append(d)\n"
     "class W:\n    def __getattr__(self, name):\n        return Sink()\n"
     "functools.update_wrapper(W(), print, assigned=(), updated=('__globals__',))\n"
     "result = sorted(box[0])"),
    ("update-wrapper-sets-dunder",
     "import functools, types, collections\n"
     "ns = types.SimpleNamespace(**{'__reduce__': len})\n"
     "functools.update_wrapper(collections.Counter, ns, assigned=('__reduce__',), updated=())\nresult = 1"),
    ("wraps-custom-names", "import functools\nresult = repr(functools.wraps(len, assigned=('__self__',))(lambda: 0))"),
    ("type-namespace-dict-subclass",
     "class D(dict):\n    def __iter__(self):\n        return iter([])\n"
     "C = type('C', (), D({'__getattribute__': lambda self, name: 'hooked'}))\nresult = C().anything"),
    ("type-namespace-str-subclass-key",
     LIAR + "C = type('C', (), {S('__getattribute__'): lambda self, name: 'hooked'})\nresult = C().anything"),
    ("copy-reconstruct-sets-builtin-class-attribute",
     "import collections.abc, copy, collections\nM = type(collections.abc.Mapping)\n"
     "def evil(self, proto):\n    return (lambda: collections.Counter, (), (None, {'most_common': len}))\n"
     "C = M('C', (), {'__reduce_ex__': evil})\ncopy.copy(C())\nresult = repr(collections.Counter.most_common)"),
    ("copy-reconstruct-private-slot",
     "import collections.abc, copy\nM = type(collections.abc.Mapping)\nclass T:\n    pass\n"
     "def evil(self, proto):\n    return (T, (), (None, {'_hidden': 1}))\n"
     "C = M('C', (), {'__reduce_ex__': evil})\nresult = [n for n in dir(copy.copy(C())) if n == '_hidden']"),
    ("dir-then-getattr", "result = [repr(getattr(len, n)) for n in dir(len)]"),
    ("type-getattribute", "result = repr(getattr(type, 'mro'))"),
    ("class-property-fools-setattr",
     "import collections.abc\nM = type(collections.abc.Mapping)\n"
     "Fake = M('Fake', (), {'__class__': property(lambda self: type)})\nsetattr(Fake(), '_x', 1)\nresult = 1"),
    ("type-of-type-skips-namespace-check",
     "M = type(type)\nC = M('C', (), {'__getattribute__': lambda self, name: 'hooked'})\nresult = C().anything"),
    ("dataclass-field-injection-via-dict-property",
     "import collections.abc, dataclasses\nseen, base = [], []\n"
     "def fake(cls):\n    seen.append(1)\n    if base and len(seen) == base[0] + 1:\n"
     "        return {'__annotations__': {'x': int}}\n"
     "    return {'__annotations__': {'x) or print(1) or (y': int}}\n"
     "M = type(collections.abc.Mapping)\nMeta = M('Meta', (M,), {'__dict__': property(fake)})\n"
     "C = Meta('C', (), {})\nbase.append(len(seen))\nresult = str(dataclasses.dataclass(C))"),
    ("dataclass-on-builtin-class", "import dataclasses, fractions\nresult = str(dataclasses.dataclass(fractions.Fraction))"),
    ("metaclass-call-hooks",
     "import collections.abc\nM = type(collections.abc.Mapping)\n"
     "C = M('C', (), {'__getattribute__': lambda self, name: 'hooked'})\nresult = C().anything"),
    ("enum-metaclass-call-hooks",
     "import enum\nC = enum.EnumType('C', (), {'__getattribute__': lambda self, name: 'hooked'})\nresult = C"),
    ("enum-functional-hooks",
     "import enum\nE = enum.Enum('E', [('__del__', lambda self: None), ('__dict__', 1), ('A', 1)])\n"
     "result = E.A.value"),
    ("global-enum-rewrites-guard-globals",
     "import enum\nclass Yes:\n    def __call__(self, *args):\n        return False\n"
     "E = enum.Enum('E', [('attribute_refused', 1)], module='kailash.security.sandbox.guards', type=Yes)\n"
     "enum.global_enum(E)\nresult = repr(getattr(len, '__self__'))"),
]


@pytest.fixture(scope="module", autouse=True)
def _stop_sandboxes():
    yield
    shutdown_sandboxes()


@pytest.fixture(scope="module", params=["bwrap", "process"])
def mode(request):
    if request.param == "bwrap" and not bwrap_available():
        pytest.skip("bubblewrap is not available")
    return request.param


@pytest.fixture(scope="module")
def allowed(tmp_path_factory):
    base = tmp_path_factory.mktemp("guards")
    (base / "allowed").mkdir()
    (base / "allowed" / "big.txt").write_text("x" * 5000)
    (base / "outside.txt").write_text("host secret")
    return base / "allowed"


@pytest.fixture(scope="module")
def run(allowed, mode):
    return Runner(make_config(allowed, mode, max_file_size=1000))


@pytest.fixture(scope="module")
def run_with_os(allowed, mode):
    return Runner(make_config(allowed, mode, allowed_imports=(*DEFAULT_ALLOWED_IMPORTS, "os")))


@pytest.mark.parametrize("case_id, code", ATTACKS, ids=[c for c, _ in ATTACKS])
def test_guard_attack_is_refused(run, case_id, code):
    with pytest.raises(SecurityError) as info:
        got = run(code)
        pytest.fail(f"{case_id} escaped: {got!r}")
    assert "sandboxed" in str(info.value)
    assert run.healthy()


def test_open_with_a_lying_path_or_mode_is_refused(run, allowed):
    outside = str(allowed.parent / "outside.txt")
    with pytest.raises(SecurityError):
        run(LIAR + f"result = open(S({outside!r})).read()")
    # a mode whose `in` lies must not skip the max_file_size check
    with pytest.raises(SecurityError):
        run(LIAR + f"result = len(open({str(allowed / 'big.txt')!r}, S('r')).read())")
    with pytest.raises(SecurityError):
        run(LIAR + f"result = len(open({str(allowed / 'big.txt').encode()!r}, S('r')).read())")
    assert run(f"result = len(open({str(allowed / 'big.txt')!r}).read(10))", config=make_config(
        allowed, run.config.isolation)) == 10


def test_audit_hook_never_calls_user_objects(run_with_os, allowed, mode):
    """A path whose methods run user code *inside* the hook (where nested events are not checked)."""
    target = allowed.parent / f"written-from-inside-the-hook-{mode}.txt"
    code = ("class P(str):\n    def startswith(self, *args):\n"
            f"        os.close(os.open({str(target)!r}, os.O_WRONLY | os.O_CREAT))\n        return False\n"
            "os.listdir(P('/'))\nresult = 1")
    with pytest.raises(SecurityError):
        got = run_with_os(code, imports=["os"])
        pytest.fail(f"escaped: {got!r}")
    assert not target.exists()
    assert run_with_os.healthy()


def test_exception_with_a_hostile_message_is_reported(run):
    code = ("class S(str):\n    def __getitem__(self, i):\n        return 'sliced by user code'\n"
            "class E(Exception):\n    def __str__(self):\n        return S('x' * 3000)\nraise E()")
    with pytest.raises(NodeExecutionError) as info:
        run(code)
    assert "sliced by user code" not in str(info.value)
    assert "xxx" in str(info.value)


def test_sandbox_cannot_mint_a_secret_the_host_trusts(run):
    from kailash.security.secrets import Secret

    code = "result = {'token': type(token)('the')}"
    with pytest.raises(KailashError) as info:
        got = run(code, {"token": Secret("real-credential")})
        pytest.fail(f"minted: {got!r}")
    assert "Secret" in str(info.value)
    assert "real-credential" not in str(info.value)
    assert not os.path.exists("/tmp/kailash_sandbox_escape_canary")


def test_user_finalizers_never_run_outside_the_audit_hook(run_with_os, allowed, mode):
    """A class given ``__del__`` through a metaclass; its instance dies after the code returned."""
    target = allowed.parent / f"finalizer-{mode}.txt"
    code = ("import collections.abc\nM = type(collections.abc.Mapping)\n"
            f"def fin(obj):\n    os.close(os.open({str(target)!r}, os.O_WRONLY | os.O_CREAT))\n"
            "C = M('C', (), {'__del__': fin})\nx = C()\nx.me = x\nresult = x")
    with pytest.raises(KailashError):
        run_with_os(code, imports=["os"])
    try:  # the collector runs while the next call's hook is on: the finalizer is refused there
        run_with_os("result = len([[] for _ in range(100000)])", imports=["os"])
    except SecurityError as exc:
        assert "refused" in str(exc)
    assert not target.exists()


@pytest.mark.parametrize("code", [
    "a = [0] * 1000\nresult = [a] * 1000000",
    "s = 'x' * 100000\nresult = [s] * 100000",
    "a = [0] * 1000\nb = [a] * 1000\nresult = {'k': [b] * 1000}",
])
def test_results_are_capped_by_their_encoded_size(allowed, mode, code):
    run = Runner(make_config(allowed, mode, max_result_size=1024 * 1024))
    with pytest.raises(NodeExecutionError, match=r"node 'sandboxed'.*max_result_size of 1048576 bytes") as info:
        run(code)
    assert info.value.parameter == "result"
    assert len(run("result = [0] * 1000")) == 1000  # small results still cross, and the worker lives


def test_cyclic_results_are_refused(run):
    with pytest.raises(NodeExecutionError, match="contains itself"):
        run("a = []\na.append(a)\nresult = a")


def test_update_wrapper_never_hands_out_a_class_dict(run):
    """``wrapper.__dict__`` as the code's own property was handed ``object.__dict__``
    (and with it ``object.__getattribute__``, which reads any attribute)."""
    code = ("import collections.abc, functools\nbox = []\nclass Sink:\n    def update(self, d):\n"
            "        box.append(d)\nM = type(collections.abc.Mapping)\n"
            "W = M('W', (), {'__module__': '__sandbox__', '__dict__': property(lambda self: Sink())})\n"
            "functools.update_wrapper(W(), object, assigned=())\n"
            "getattribute = box[0]['_' + '_getattribute__']\nresult = repr(getattribute(len, '_' + '_self__'))")
    with pytest.raises(KailashError) as info:
        got = run(code)
        pytest.fail(f"escaped: {got!r}")
    assert "builtins" not in str(info.value)
    assert run("import functools\ndef f(x):\n    return x\nresult = functools.wraps(len)(f)(3)") == 3

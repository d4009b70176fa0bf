"""Known sandbox escapes: each is refused (SecurityError) or stopped by a limit, the host unharmed.

Every case runs under both isolation modes ("auto" = bubblewrap here when it works, and
"process" = plain child process), so the Python guards, seccomp and rlimits are shown
to hold on their own as well as under bubblewrap.
"""

from __future__ import annotations

import os
import socket
import time

import pytest

from kailash.errors import KailashError, NodeExecutionError, NodeTimeoutError, SecurityError
from kailash.security.sandbox.guards import DEFAULT_ALLOWED_IMPORTS
from tests.security.helpers import Runner, make_config

CANARY = "/tmp/kailash_sandbox_escape_canary"

# (id, code) pairs that must raise SecurityError under the default policy.
REFUSED = [
    ("import-os", "import os\nresult = os.getcwd()"),
    ("import-subprocess", f"import subprocess\nsubprocess.run(['touch', {CANARY!r}])"),
    ("import-socket", "import socket\nresult = socket.gethostname()"),
    ("import-ctypes", "import ctypes\nresult = ctypes.CDLL(None)"),
    ("importlib", "import importlib\nresult = importlib.import_module('os')"),
    ("import-sys-modules", "import sys\nresult = sys.modules['os']"),
    ("from-os-import", "from os import system\nsystem('id')"),
    ("dunder-import", "result = __import__('os')"),
    ("builtins-dict", "result = __builtins__['eval']('1 + 1')"),
    ("subclass-walk-popen",
     "popen = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'Popen'][0]\n"
     f"popen(['touch', {CANARY!r}])"),
    ("type-subclasses", "result = len(type.__subclasses__(object))"),
    ("getattr-built-name", "cls = getattr((), '_' + '_class__')\nresult = cls.mro()"),
    ("reduce-getattr-chain",
     "import functools\nresult = functools.reduce(getattr, ['_' * 2 + 'class' + '_' * 2, 'mro'], ())"),
    ("generator-frame-walk",
     "def gen():\n    yield 1\nit = gen()\nframe = it.gi_frame\nresult = list(frame.f_back.f_globals)"),
    ("traceback-frame-walk",
     "try:\n    1 / 0\nexcept Exception as exc:\n    tb = exc.__traceback__\n    result = list(tb.tb_frame.f_globals)"),
    ("coroutine-frame", "async def co():\n    return 1\nc = co()\nresult = str(c.cr_frame)"),
    ("lambda-code-object", "result = (lambda: 0).__code__"),
    ("open-etc-passwd", "result = open('/etc/passwd').read()"),
    ("open-proc-environ", "result = open('/proc/self/environ', 'rb').read()"),
    ("open-file-descriptor", "result = open(0).read()"),
    ("write-outside", f"open({CANARY!r}, 'w').write('escaped')"),
    ("eval", "result = eval('1 + 1')"),
    ("exec", "exec('import os')"),
    ("compile", "result = compile('1', 'x', 'eval')"),
    ("globals", "result = list(globals())"),
    ("vars-of-type", "result = vars(type)['__subclasses__'](object)"),
    ("format-attribute", "result = '{0.__class__.__base__}'.format(())"),
    ("format-map-dynamic", "fmt = '{f.__globals__}'\nresult = fmt.format_map({'f': len})"),
    ("str-format-unbound", "result = str.format('{0.__class__}', 1)"),
    ("operator-attrgetter", "import operator\nresult = operator.attrgetter('__class__')(())"),
    ("operator-methodcaller-format",
     "import operator\nresult = operator.methodcaller('format', 1)('{0.__class__}')"),
    ("module-leaks-os", "import uuid\nresult = uuid.os.system('id')"),
    ("module-leaks-builtins", "import enum\nresult = enum.bltns.eval('1')"),
    ("typing-eval", "from typing import get_type_hints\nresult = get_type_hints"),
    ("string-formatter", "import string\nresult = string.Formatter().get_field('0.__class__', [1], {})"),
    ("module-mutation", "import math\nmath.pi = 3"),
    ("class-subclasses", "result = [].__class__.__mro__"),
    ("str-mro", "result = str.mro()"),
    ("setattr-dunder", "setattr(self, '__class__', int)"),
    ("self-dict", "result = self.__dict__"),
    ("bound-method-self", "result = print.__self__"),
    ("reduce-ex", "result = ().__reduce_ex__(2)"),
    ("metaclass-instancecheck",
     "class Meta(type):\n    def __instancecheck__(cls, obj):\n        return True\nresult = 1"),
    ("match-args-reads-globals",
     "C = type('C', (), {'__match_args__': ('__globals__',)})\n"
     "match len:\n    case C(g):\n        result = g"),
    ("type-smuggles-match-args", "C = type('C', (), {'__match_args__': ('__globals__',)})"),
    ("shadowed-builtin-match",
     "int = type('I', (), {})\nmatch len:\n    case int(g):\n        result = g"),
    ("dataclass-field-injection-via-type",
     "import dataclasses\nC = type('C', (), {'__annotations__': {'x) or print(1) or (y': int}})\n"
     "result = str(dataclasses.dataclass(C))"),
    ("dataclass-field-injection-via-enum",
     "import enum, dataclasses\nE = enum.Enum('E', {'__annotations__': {'x) or print(1) or (y': int}})\n"
     "result = str(dataclasses.dataclass(E))"),
    ("dataclass-field-injection-via-abcmeta",
     "import collections.abc, dataclasses\nM = type(collections.abc.Mapping)\n"
     "C = M('C', (), {'__annotations__': {'x) or print(1) or (y': int}})\nresult = str(dataclasses.dataclass(C))"),
    ("typing-forwardref-compile", "import typing\nresult = typing.ForwardRef('().__class__')"),
    ("del-finalizer", "class X:\n    def __del__(self):\n        pass\nresult = 1"),
    ("signal-import", "import signal\nsignal.raise_signal(signal.SIGKILL)"),
]


@pytest.mark.parametrize("case_id, code", REFUSED, ids=[c for c, _ in REFUSED])
def test_escape_is_refused(run, case_id, code):
    with pytest.raises(SecurityError) as info:
        run(code)
    assert "sandboxed" in str(info.value)
    assert not os.path.exists(CANARY)
    assert run.healthy()


def test_path_traversal_out_of_allowed_directory_is_refused(run, sandbox_dirs):
    allowed, outside = sandbox_dirs
    target = f"{allowed}/../outside/escaped.txt"
    with pytest.raises(SecurityError, match="refused"):
        run(f"open({target!r}, 'w').write('x')")
    assert not (outside / "escaped.txt").exists()
    assert run.healthy()


def test_symlink_out_of_allowed_directory_is_refused(run, sandbox_dirs):
    allowed, _ = sandbox_dirs
    with pytest.raises(SecurityError, match="refused"):
        run(f"result = open({str(allowed / 'link_to_secret.txt')!r}).read()")
    assert run.healthy()


@pytest.fixture
def run_with_os(sandbox_dirs, isolation):
    """A policy that (unwisely) allows os, signal and socket: the audit hook and seccomp still hold."""
    allowed, _ = sandbox_dirs
    imports = (*DEFAULT_ALLOWED_IMPORTS, "os", "signal", "socket")
    return Runner(make_config(allowed, isolation, allowed_imports=imports))


@pytest.mark.parametrize("case_id, code", [
    ("os-system", f"os.system('touch {CANARY}')"),
    ("os-fork-bomb", "while True:\n    os.fork()"),
    ("os-exec", "os.execv('/bin/sh', ['sh', '-c', 'touch " + CANARY + "'])"),
    ("os-kill-parent", "os.kill(os.getppid(), 9)"),
    ("os-kill-host", "os.kill(HOST_PID, 9)"),
    ("os-remove-outside", "os.remove(OUTSIDE_FILE)"),
    ("os-listdir-root", "result = os.listdir('/')"),
    ("signal-to-host", "signal.pthread_kill(1, 9)"),
    ("socket-connect", "s = socket.create_connection(('127.0.0.1', PORT), timeout=1)"),
], ids=lambda v: v if isinstance(v, str) and "\n" not in v and len(v) < 30 else None)
def test_dangerous_calls_refused_even_when_modules_are_allowed(run_with_os, sandbox_dirs, case_id, code):
    _, outside = sandbox_dirs
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.2)
    imports = ["os", "signal", "socket"]
    inputs = {"HOST_PID": os.getpid(), "OUTSIDE_FILE": str(outside / "secret.txt"), "PORT": listener.getsockname()[1]}
    try:
        with pytest.raises(SecurityError):
            run_with_os(code, inputs, imports=imports)
        with pytest.raises(socket.timeout):
            listener.accept()  # nothing reached the host's network
    finally:
        listener.close()
    assert not os.path.exists(CANARY)
    assert (outside / "secret.txt").read_text() == "top secret host data"
    assert run_with_os.healthy()


def test_os_exit_is_refused_and_a_crashing_worker_is_replaced(run_with_os):
    with pytest.raises(SecurityError, match="_exit"):
        run_with_os("os._exit(3)", imports=["os"])
    with pytest.raises(NodeExecutionError, match="killed by SIGABRT.*host process is unaffected"):
        run_with_os("os.abort()", imports=["os"])
    assert run_with_os.healthy()


def test_host_environment_is_not_visible(run_with_os, monkeypatch):
    # The template was started before this variable existed or not: either way workers get a clean env.
    monkeypatch.setenv("KAILASH_TEST_HOST_SECRET", "do-not-leak")
    seen = run_with_os("result = dict(os.environ)", imports=["os"])
    assert "KAILASH_TEST_HOST_SECRET" not in seen
    assert not any("do-not-leak" in v for v in seen.values())


@pytest.mark.parametrize("case_id, code", [
    ("huge-bytearray", "x = bytearray(10 ** 11)"),
    ("huge-string", "x = 'a' * (10 ** 10)"),
    ("growing-list", "chunks = []\nwhile True:\n    chunks.append(bytearray(10 ** 7))"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 20 else None)
def test_memory_exhaustion_is_stopped(run, case_id, code):
    with pytest.raises(KailashError) as info:
        run(code)
    assert isinstance(info.value, SecurityError | NodeExecutionError)
    assert "memory" in str(info.value)
    assert run.healthy()


@pytest.mark.parametrize("code", ["while True:\n    pass", "import time\ntime.sleep(60)",
                                  "def spin():\n    while True:\n        yield\nfor _ in spin():\n    pass"])
def test_runaway_code_is_stopped_by_the_timeout(run, code):
    config = make_config(run.config.allowed_directories[0], run.config.isolation, execution_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(NodeTimeoutError, match="execution_timeout of 1.0s"):
        run(code, config=config)
    assert time.monotonic() - started < 10  # it was stopped, not waited out
    assert run.healthy()


def test_oversized_write_is_stopped_by_the_file_size_limit(run, sandbox_dirs):
    allowed, _ = sandbox_dirs
    target = allowed / "big.bin"
    with pytest.raises(NodeExecutionError, match="File too large|EFBIG|Errno 27"):
        run(f"with open({str(target)!r}, 'wb') as f:\n    f.write(b'x' * (4 * 1024 * 1024))")
    assert target.stat().st_size <= 1024 * 1024
    target.unlink()
    assert run.healthy()


@pytest.mark.parametrize("code, message", [
    ("raise SystemExit(0)", "SystemExit"),
    ("raise KeyboardInterrupt", "KeyboardInterrupt"),
    ("def f():\n    return f()\nf()", "RecursionError"),
])
def test_exiting_and_recursing_code_leaves_the_worker_usable(run, code, message):
    with pytest.raises(NodeExecutionError, match=message):
        run(code)
    assert run.healthy()

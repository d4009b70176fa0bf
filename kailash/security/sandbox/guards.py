"""Run-time guards inside a sandbox worker: builtins, imports, modules and the audit hook.

Sandboxed code sees a restricted builtins dict (no ``eval``/``exec``/``compile``/
``globals``/``vars``/``breakpoint``; ``open`` only inside the allowed directories;
``getattr``/``setattr``/``hasattr`` refuse private names), imports only allow-listed
modules, and gets *snapshots* of them: read-only module objects holding the public
names, with modules that are not themselves allowed left out (``uuid.os`` does not
exist in the sandbox). A CPython audit hook is the second line: while user code runs,
process creation, sockets, ctypes, file access outside the allowed directories,
frame/code introspection from user code, ``gc``/``marshal`` and dynamic compilation
by anything but the standard library's code generators are refused. Every refusal is
recorded, so a violation fails the node even when the code catches the error.

Everything the code hands a guard is hostile: names and paths must be exact ``str``
(a subclass's ``startswith``/``__eq__``/``__hash__`` are the code's own), ``str.format``
is recognised by the method found rather than by the object asked, and the hook never
calls an object of the code's while deciding (nested events are not checked inside it).
The module runs a little past 400 lines: the builtins, snapshots and hook share the
environment's state and are kept together.

This module is imported by the worker only; the host never runs these guards.
"""

from __future__ import annotations

import builtins
import io
import os
import sys
import types
from collections.abc import Callable, Iterable
from typing import Any

from kailash.errors import SecurityError
from kailash.security.sandbox.facades import (
    DROP,
    GUARDED,
    ONLY,
    guard_copy_module,
    guard_enum_module,
    is_user_class,
    make_type,
    plain_str,
    type_name,
)
from kailash.security.sandbox.policy import (
    FORBIDDEN_BUILTINS,
    SAFE_DUNDER_METHODS,
    SANDBOX_FILENAME,
    attribute_refused,
    import_allowed,
)

__all__ = ["DEFAULT_ALLOWED_IMPORTS", "SandboxEnvironment"]

DEFAULT_ALLOWED_IMPORTS: tuple[str, ...] = (
    "array", "base64", "binascii", "bisect", "calendar", "cmath", "collections", "copy", "csv", "dataclasses",
    "datetime", "decimal", "difflib", "enum", "fractions", "functools", "hashlib", "heapq", "hmac", "html",
    "io", "ipaddress", "itertools", "json", "math", "numbers", "operator", "pprint", "random", "re",
    "secrets", "statistics", "string", "struct", "textwrap", "time", "types", "typing", "unicodedata",
    "urllib.parse", "uuid", "zlib", "zoneinfo",
)

_BLOCKED_EVENT_PREFIXES = (
    "os.", "subprocess.", "socket.", "ctypes.", "shutil.", "pty.", "signal.", "resource.", "fcntl.", "mmap.",
    "msvcrt.", "winreg.", "syslog.", "sqlite3.", "webbrowser.", "http.client.", "ftplib.", "smtplib.",
    "poplib.", "imaplib.", "nntplib.", "telnetlib.", "glob.", "tempfile.", "gc.", "cpython.", "_winapi.",
    "sys.settrace", "sys.setprofile", "sys._current_frames", "sys._current_exceptions", "sys.addaudithook",
    "sys.monitoring", "urllib.Request", "code.__new__", "function.__new__", "pickle.find_class",
    "builtins.input", "builtins.breakpoint", "setopencodehook",
)
_DENIED_MODULES = frozenset({"os", "subprocess", "_posixsubprocess", "socket", "_socket", "ctypes", "_ctypes",
                             "multiprocessing", "pty", "signal", "resource", "fcntl", "mmap", "gc", "importlib",
                             "inspect", "sys", "builtins", "pickle", "_pickle", "marshal", "code", "codeop"})
_CODEGEN_MODULES = frozenset({"collections", "dataclasses", "importlib._bootstrap", "importlib._bootstrap_external",
                              "_frozen_importlib", "_frozen_importlib_external", "zipimport"})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


_ENV: list[SandboxEnvironment] = []


class _Unset:
    def __repr__(self) -> str:
        return "<result not set>"


UNSET = _Unset()


class SandboxModule(types.ModuleType):
    """A read-only snapshot of an allowed module's public names."""

    def __setattr__(self, name: str, value: Any) -> None:
        raise SecurityError(f"sandboxed code may not change module '{self.__name__}' (setting '{name}')")

    def __delattr__(self, name: str) -> None:
        raise SecurityError(f"sandboxed code may not change module '{self.__name__}' (deleting '{name}')")

    def __getattr__(self, name: str) -> Any:
        real = sys.modules.get(self.__name__)
        if real is not None and hasattr(real, name):
            message = f"'{self.__name__}.{name}' is not available in sandboxed code"
            if _ENV:
                raise _ENV[0].refuse(message)
            raise SecurityError(message)
        raise AttributeError(f"module '{self.__name__}' has no attribute '{name}'")

    def __repr__(self) -> str:
        return f"<module '{self.__name__}' (sandboxed)>"


class SandboxState:
    """The ``self`` of sandboxed code: a plain object whose attributes persist between runs."""

    def __repr__(self) -> str:
        return f"NodeState({', '.join(sorted(vars(self)))})"


class SandboxEnvironment:
    """Everything one worker needs to run user code under its policy."""

    def __init__(self, *, allowed_imports: Iterable[str], allowed_directories: Iterable[str],
                 max_file_size: int | None, library_roots: Iterable[str]) -> None:
        self.allowed_imports = frozenset(allowed_imports)
        self.allowed_dirs = tuple(os.path.realpath(d) for d in allowed_directories)
        self.max_file_size = max_file_size
        package_dirs = set()
        for name in self.allowed_imports:  # third-party packages the policy allows may live anywhere
            path = getattr(sys.modules.get(name), "__file__", None)
            if path:
                package_dirs.add(os.path.dirname(os.path.realpath(path)))
        zoneinfo = sys.modules.get("zoneinfo")
        tz_dirs = set(getattr(zoneinfo, "TZPATH", ())) | {"/usr/share/zoneinfo", "/etc/localtime"}
        self.read_roots = tuple(sorted(set(library_roots) | package_dirs | tz_dirs))
        self.violations: list[str] = []
        self.output: io.StringIO = io.StringIO()
        self.output_limit = 1 << 20
        self._snapshots: dict[str, SandboxModule] = {}
        self._active = [False, False]  # [user code running, inside the hook]
        self.builtins = self._make_builtins()
        _ENV[:] = [self]  # one environment per worker process

    # -- violations ------------------------------------------------------------------------
    def refuse(self, message: str) -> SecurityError:
        self.violations.append(message)
        return SecurityError(message)

    def _check_attr_name(self, name: Any, what: str) -> str:
        # Only an exact str is trusted: a subclass's methods (startswith, __eq__, __hash__)
        # are user code and would answer the check differently from the real lookup.
        if type(name) is not str:
            raise self.refuse(f"{what}() needs a plain str attribute name in sandboxed code, got {type_name(name)}")
        if attribute_refused(name):
            raise self.refuse(f"{what}() of attribute '{name}' is not allowed in sandboxed code")
        return name

    # -- builtins ----------------------------------------------------------------------------
    def _make_builtins(self) -> dict[str, Any]:
        env = self
        safe = {k: v for k, v in vars(builtins).items() if not k.startswith("_") and k not in FORBIDDEN_BUILTINS}
        safe["__build_class__"] = builtins.__build_class__
        for name in FORBIDDEN_BUILTINS:
            safe[name] = self._forbidden(name)

        def sandbox_getattr(obj: Any, name: Any, *default: Any) -> Any:
            name = env._check_attr_name(name, "getattr")
            return env.guard_value(getattr(obj, name, *default))

        def sandbox_hasattr(obj: Any, name: Any) -> bool:
            return hasattr(obj, env._check_attr_name(name, "hasattr"))

        def sandbox_setattr(obj: Any, name: Any, value: Any) -> None:
            name = env._check_attr_name(name, "setattr")
            if issubclass(type(obj), type) and not is_user_class(obj):
                raise env.refuse(f"setattr() on built-in type {type_name(obj, True)} is not allowed in sandboxed code")
            setattr(obj, name, value)

        def sandbox_delattr(obj: Any, name: Any) -> None:
            name = env._check_attr_name(name, "delattr")
            if issubclass(type(obj), type) and not is_user_class(obj):
                raise env.refuse(f"delattr() on built-in type {type_name(obj, True)} is not allowed in sandboxed code")
            delattr(obj, name)

        def sandbox_print(*args: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None,
                          flush: bool = False) -> None:
            if file is None:
                if env.output.tell() > env.output_limit:
                    return
                file = env.output
            print(*args, sep=sep, end=end, file=file)

        safe["type"] = make_type(self)
        safe.update(getattr=sandbox_getattr, hasattr=sandbox_hasattr, setattr=sandbox_setattr,
                    delattr=sandbox_delattr, print=sandbox_print, open=self.open, __import__=self.import_module)
        return safe

    def _forbidden(self, name: str) -> Callable[..., Any]:
        def forbidden(*args: Any, **kwargs: Any) -> Any:
            raise self.refuse(f"{name}() is not allowed in sandboxed code")

        forbidden.__name__ = name
        return forbidden

    def globals_for(self, imports: Iterable[str]) -> dict[str, Any]:
        """Fresh globals for one execution, with ``imports`` pre-imported."""
        g: dict[str, Any] = {"__builtins__": self.builtins, "__name__": "__sandbox__", "__kx_attr__": self.attr,
                             "__kx_unset__": UNSET}
        for spec in imports:
            name, _, alias = (part.strip() for part in spec.partition(" as "))
            module = self.import_module(name)
            if alias:
                g[alias] = self.snapshot(name)
            else:
                g[name.split(".")[0]] = module
        return g

    # -- attribute guard for str.format ----------------------------------------------------------
    def attr(self, obj: Any, name: str) -> Any:
        """``obj.format`` / ``obj.format_map`` as rewritten by the static checks."""
        return self.guard_value(getattr(obj, name))

    def guard_value(self, value: Any) -> Any:
        """``value``, or a checked stand-in when it is ``str.format``/``format_map`` (bound or not).

        Decided by what was found, not by where: ``super().format``, a class attribute holding
        the method, or a subclass all yield the same C method, which reads attributes named in
        the format string.
        """
        env = self
        if value is _STR_FORMAT or value is _STR_FORMAT_MAP:
            def unbound(fmt: Any, *args: Any, **kwargs: Any) -> str:
                if isinstance(fmt, str):
                    env.check_format(fmt)
                return value(fmt, *args, **kwargs)
            return unbound
        if type(value) is types.BuiltinMethodType and value.__name__ in ("format", "format_map"):
            owner = value.__self__
            if issubclass(type(owner), str):
                def bound(*args: Any, **kwargs: Any) -> str:
                    env.check_format(owner)  # type: ignore[arg-type]  # check_format trusts only exact str
                    return value(*args, **kwargs)
                return bound
        return value

    def check_format(self, fmt: str, depth: int = 0) -> None:
        """Refuse a format string (or nested spec) naming a private or internal attribute."""
        import _string  # the parser str.format itself uses

        if depth > 3:  # str.format itself stops at 2 levels
            raise self.refuse("format string nested too deeply for sandboxed code")
        for _literal, field, spec, _conv in _string.formatter_parser(plain_str(fmt)):
            if field is not None:
                _first, rest = _string.formatter_field_name_split(field)
                for is_attr, key in rest:
                    if is_attr and attribute_refused(key):
                        raise self.refuse(f"format string reads attribute '{key}', which is not allowed in "
                                          "sandboxed code")
            if spec:
                self.check_format(spec, depth + 1)

    # -- imports and module snapshots ------------------------------------------------------------
    def import_module(self, name: str, globals: Any = None, locals: Any = None, fromlist: Any = (),
                      level: int = 0) -> Any:
        if level:
            raise self.refuse("relative imports are not allowed in sandboxed code")
        if type(name) is not str:
            raise self.refuse(f"import needs a plain str module name in sandboxed code, got {type_name(name)}")
        if type(fromlist) is list and not fromlist:
            # PyImport_Import: a C function the code called imports a helper (datetime.strptime ->
            # _strptime). It passes an empty *list* (import statements pass None or a tuple) and
            # ignores the return value, so nothing reaches the user's code.
            if name.split(".")[0] in _DENIED_MODULES and not import_allowed(name, self.allowed_imports):
                raise self.refuse(f"import of '{name}' is not allowed in sandboxed code")
            import importlib

            importlib.import_module(name)
            return None
        if not import_allowed(name, self.allowed_imports) or any(
                p.startswith("_") for p in name.split(".")):
            raise self.refuse(f"import of '{name}' is not allowed in sandboxed code "
                              f"(allowed modules: {', '.join(sorted(self.allowed_imports))})")
        import importlib

        importlib.import_module(name)
        for item in fromlist or ():
            if type(item) is str and not item.startswith("_") and not hasattr(sys.modules[name], item):
                sub = f"{name}.{item}"
                if import_allowed(sub, self.allowed_imports):
                    try:
                        importlib.import_module(sub)
                        self._snapshots.pop(name, None)
                    except ImportError:
                        pass
        return self.snapshot(name if fromlist else name.split(".")[0])

    def snapshot(self, name: str) -> SandboxModule:
        snap = self._snapshots.get(name)
        if snap is not None:
            return snap
        module = sys.modules[name]
        snap = SandboxModule(name)
        self._snapshots[name] = snap
        whole = import_allowed(name, self.allowed_imports)
        only, drop = ONLY.get(name), DROP.get(name, set())
        ns: dict[str, Any] = {}
        for key, value in list(vars(module).items()):
            if key.startswith("_"):
                continue
            if isinstance(value, types.ModuleType):
                if import_allowed(value.__name__, self.allowed_imports) and value.__name__ in sys.modules:
                    ns[key] = self.snapshot(value.__name__)
            elif whole and key not in drop and (only is None or key in only):
                ns[key] = GUARDED.get((name, key), lambda v, env: v)(value, self)
        snap.__dict__.update(ns)
        return snap

    # -- files ------------------------------------------------------------------------------------
    def open(self, file: Any, mode: Any = "r", *args: Any, **kwargs: Any) -> Any:
        if type(file) not in (str, bytes):  # subclasses and path-likes run user code on every check
            raise self.refuse(f"open() needs a plain str or bytes path inside the allowed directories in sandboxed "
                              f"code, got {type_name(file)}")
        if type(mode) is not str:
            raise self.refuse(f"open() needs a plain str mode in sandboxed code, got {type_name(mode)}")
        path = os.fsdecode(file)
        real = os.path.realpath(path)
        if not self._inside(real, self.allowed_dirs):
            where = ", ".join(self.allowed_dirs) or "none configured"
            raise self.refuse(f"access to '{path}' refused: sandboxed code may only open files inside the "
                              f"allowed directories ({where})")
        if self.max_file_size and "r" in mode and "+" not in mode and os.path.isfile(real):
            size = os.path.getsize(real)
            if size > self.max_file_size:
                raise self.refuse(f"file '{path}' is {size} bytes, over the {self.max_file_size}-byte limit")
        return open(real, mode, *args, **kwargs)

    @staticmethod
    def _inside(real: str, roots: Iterable[str]) -> bool:
        return any(real == r or real.startswith(r.rstrip("/") + "/") for r in roots)

    # -- audit hook ---------------------------------------------------------------------------
    def install_audit_hook(self) -> tuple[Callable[[], None], Callable[[], None]]:
        """Install the hook (and the worker-wide deputy guards); returns ``(activate, deactivate)``."""
        guard_copy_module(self.refuse)
        guard_enum_module(self.refuse)
        state = self._active
        decide = self._decide

        def hook(event: str, args: tuple[Any, ...]) -> None:
            if not state[0] or state[1]:
                return
            state[1] = True
            try:
                problem = decide(event, args)
            finally:
                state[1] = False
            if problem:
                raise self.refuse(problem)

        sys.addaudithook(hook)

        def activate() -> None:
            state[0] = True

        def deactivate() -> None:
            state[0] = False

        return activate, deactivate

    def _decide(self, event: str, args: tuple[Any, ...]) -> str | None:
        if event.startswith(_BLOCKED_EVENT_PREFIXES):
            if event in ("os.listdir", "os.scandir") and args and type(args[0]) is str:
                # the import system lists package directories; listing allowed directories is fine
                real = os.path.realpath(args[0])
                if self._inside(real, self.allowed_dirs) or self._inside(real, self.read_roots):
                    return None
            return f"'{event}' is not allowed in sandboxed code"
        if event == "open":
            return self._decide_open(args)
        if event == "import":
            if type(args[0]) is not str:
                return "import of a module named by a non-str object is not allowed in sandboxed code"
            top = args[0].split(".")[0]
            if top in _DENIED_MODULES and not import_allowed(args[0], self.allowed_imports):
                return f"import of '{args[0]}' is not allowed in sandboxed code"
            return None
        if event in ("compile", "exec", "marshal.loads", "marshal.load"):
            caller = _caller_frame()
            module = caller.f_globals.get("__name__") if caller is not None else None
            if type(module) is str and module in _CODEGEN_MODULES:
                return None
            return f"dynamic code ('{event}') is not allowed in sandboxed code"
        if event in ("object.__getattr__", "object.__setattr__", "object.__delattr__"):
            caller = _caller_frame()
            if caller is not None and caller.f_code.co_filename == SANDBOX_FILENAME:
                name = args[1] if len(args) > 1 and type(args[1]) is str else "?"
                if event == "object.__getattr__" or not is_user_class(args[0]):
                    return f"access to attribute '{name}' is not allowed in sandboxed code"
        return None

    def _decide_open(self, args: tuple[Any, ...]) -> str | None:
        path, mode = args[0], args[1] if len(args) > 1 else None
        flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
        if type(path) is int:
            return "opening file descriptors is not allowed in sandboxed code"
        if type(path) not in (str, bytes) or (mode is not None and type(mode) is not str):
            # never call a user object's methods here: nested events are not checked inside the hook
            return "open() of a path given as a non-str object is not allowed in sandboxed code"
        try:
            real = os.path.realpath(os.fsdecode(path))
        except (TypeError, ValueError):
            return "open() of this path is not allowed in sandboxed code"
        if self._inside(real, self.allowed_dirs):
            return None
        writing = bool(flags & _WRITE_FLAGS) if mode is None else any(c in mode for c in "wax+")
        if not writing and self._inside(real, self.read_roots):
            return None
        return f"access to '{path}' refused: outside the allowed directories"


_STR_FORMAT = str.format
_STR_FORMAT_MAP = str.format_map


def _caller_frame() -> Any:
    """The innermost frame outside this module (the code that triggered an audit event)."""
    frame: Any = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    return frame


__all__ += ["SandboxModule", "SandboxState", "SAFE_DUNDER_METHODS", "UNSET", "is_user_class"]

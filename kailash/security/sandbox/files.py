"""What a sandbox worker can see of the file system: bubblewrap's view and Landlock rules.

This module owns the sandbox's file-system view, the part of the OS layer that makes
an escape from the Python guards harmless:

* :func:`readable_roots` lists what a worker may read: the interpreter and its
  standard library, site-packages, the ``kailash`` package (not the project tree around
  it), the modules the policy allows, the shared libraries and the time-zone database.
  Nothing of ``/etc``, ``/home``, ``/root``, ``/tmp`` or the host's ``/proc``.
* :func:`bwrap_command` builds the bubblewrap prefix that *shows only* those paths
  (read-only) and the allowed directories (read-write) on an empty, read-only root,
  with a fresh ``/proc`` in a new PID namespace, no network and an empty environment.
* :func:`namespaces_command` gives ``isolation="process"`` templates their own PID
  namespace and ``/proc`` and an empty network namespace where the kernel allows it.
* :func:`apply_landlock` confines the calling worker with Landlock (Linux >= 5.13, no
  privilege needed) to the same paths, and where the kernel supports it also refuses
  TCP bind/connect (ABI 4) and signals or abstract sockets outside the worker (ABI 6).
  Landlock also stops the worker from reading ``/proc/<pid>/environ`` of any process
  outside its domain, the host included. It applies under every isolation mode.

Nothing here runs at import time; the Landlock calls happen in the worker only.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable

__all__ = ["bwrap_available", "bwrap_command", "readable_roots", "landlock_abi", "apply_landlock",
           "namespaces_available", "namespaces_command"]

_SYSTEM_LIBS = ("/lib", "/lib64", "/lib32", "/usr/lib", "/usr/lib64", "/usr/lib32", "/usr/local/lib")
_TZ_DIRS = ("/usr/share/zoneinfo", "/usr/lib/zoneinfo", "/usr/share/lib/zoneinfo")


@functools.lru_cache(maxsize=1)
def bwrap_available() -> bool:
    """Whether bubblewrap can build the sandbox here (probed once per process).

    It cannot without ``bwrap`` on PATH, nor where namespaces cannot be created: a root
    process without ``CAP_SYS_ADMIN`` (``setpriv --bounding-set=-all``), or a kernel or
    container that refuses unprivileged user namespaces.
    """
    exe = shutil.which("bwrap")
    if exe is None or not sys.platform.startswith("linux"):
        return False
    probe = [*bwrap_command(readable_roots(), []), "--", sys.executable, "-I", "-S", "-c", "pass"]
    try:
        done = subprocess.run(probe, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=20, env={}, cwd="/")
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def namespaces_command() -> list[str]:
    """The prefix of ``isolation="process"`` templates: new user, mount, PID and network
    namespaces with a fresh ``/proc`` (util-linux ``unshare``; no privilege needed where
    user namespaces are allowed, and it works for a root host without capabilities,
    where bubblewrap does not)."""
    return [shutil.which("unshare") or "unshare", "--user", "--mount", "--pid", "--net", "--fork", "--mount-proc",
            "--kill-child"]


@functools.lru_cache(maxsize=1)
def namespaces_available() -> bool:
    """Whether :func:`namespaces_command` works here (probed once per process)."""
    if shutil.which("unshare") is None or not sys.platform.startswith("linux"):
        return False
    try:
        done = subprocess.run([*namespaces_command(), "--", sys.executable, "-I", "-S", "-c", "pass"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=20, env={}, cwd="/")
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _prefixes() -> set[str]:
    exe_prefix = os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))
    found = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, exe_prefix}
    return {p for p in found if p and os.path.realpath(p) != "/"}


def _module_locations(names: Iterable[str]) -> set[str]:
    """Where the allowed modules live (found without importing them)."""
    found: set[str] = set()
    for name in {n.split(".")[0] for n in names}:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is None:
            continue
        if spec.submodule_search_locations:
            found.update(spec.submodule_search_locations)
        elif spec.origin and os.path.isabs(spec.origin):
            found.add(spec.origin)
    return found


def readable_roots(allowed_imports: Iterable[str] = ()) -> list[str]:
    """Paths a worker may read (never the project tree, ``/etc``, ``/home`` or ``/root``).

    Example:
        >>> roots = readable_roots(["json"])
        >>> any(r.endswith("/kailash") for r in roots) and "/etc" not in roots
        True
    """
    import kailash
    from kailash.security.sandbox.isolation import interpreter_libraries

    libraries = interpreter_libraries()
    package = os.path.dirname(os.path.abspath(kailash.__file__))
    project = os.path.realpath(os.path.dirname(package))
    roots = set(libraries)
    for prefix in _prefixes():
        real = os.path.realpath(prefix)
        # a virtualenv made at the root of a source checkout must not expose the checkout
        if project in {os.path.realpath(d) for d in libraries} or not (
                project == real or project.startswith(real.rstrip("/") + "/")):
            roots.add(prefix)
    roots.add(package)
    roots.add(os.path.join(sys.prefix, "pyvenv.cfg"))  # how the interpreter finds its virtualenv
    roots.update(_module_locations(allowed_imports))
    roots.update(d for d in (*_SYSTEM_LIBS, *_TZ_DIRS) if os.path.isdir(d))
    resolved = {os.path.realpath(r) for r in roots if r and os.path.exists(r)}
    resolved.discard("/")
    # keep the outermost of nested roots
    ordered = sorted(resolved)
    kept: list[str] = []
    for r in ordered:
        if not any(r.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(r)
    return kept


def bwrap_command(readable: Iterable[str], writable: Iterable[str]) -> list[str]:
    """The bubblewrap prefix: an empty read-only root showing only ``readable`` (read-only)
    and ``writable`` (read-write), a fresh ``/proc`` and ``/dev``, no network, no host ids."""
    cmd = [shutil.which("bwrap") or "bwrap", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
           "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-pid", "--unshare-cgroup-try",
           "--clearenv"]
    for link in _SYSTEM_LIBS:  # merged-/usr systems: /lib is a symlink to usr/lib
        if os.path.islink(link):
            cmd += ["--symlink", os.readlink(link), link]
    for path in readable:
        real = os.path.realpath(path)
        cmd += ["--ro-bind", real, real]
    # the interpreter may be reached through symlinks (a venv's bin/python, pyenv shims)
    exe = sys.executable
    shown = [os.path.realpath(p) for p in readable]
    if os.path.isabs(exe) and not any(exe.startswith(r.rstrip("/") + "/") for r in shown):
        cmd += ["--ro-bind", exe, exe]
    for path in writable:
        real = os.path.realpath(path)
        cmd += ["--bind", real, real]
    return cmd + ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/", "--chdir", "/"]


# -- Landlock ----------------------------------------------------------------------------------

_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446  # the same on x86_64 and aarch64
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FILE_RIGHTS = {1: 0b111, 2: 0b111, 3: 0b111 | 1 << 14, 4: 0b111 | 1 << 14, 5: 0b111 | 1 << 14 | 1 << 15}


def _fs_rights(abi: int) -> int:
    rights = (1 << 13) - 1
    if abi >= 2:
        rights |= 1 << 13  # REFER
    if abi >= 3:
        rights |= 1 << 14  # TRUNCATE
    if abi >= 5:
        rights |= 1 << 15  # IOCTL_DEV
    return rights


@functools.lru_cache(maxsize=1)
def landlock_abi() -> int:
    """The Landlock ABI version the kernel offers (0 = none)."""
    if not sys.platform.startswith("linux"):
        return 0
    from kailash.security.sandbox.isolation import _libc

    try:
        version = _libc().syscall(_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)
    except (AttributeError, OSError):  # pragma: no cover
        return 0
    return max(int(version), 0)


def apply_landlock(readable: Iterable[str], writable: Iterable[str]) -> int:
    """Confine the calling process to ``readable`` (read-only) and ``writable`` paths.

    Also refuses TCP bind/connect (ABI >= 4) and signals and abstract UNIX sockets that
    leave the process's domain (ABI >= 6). Needs ``no_new_privs`` (set here). Returns the
    ABI applied, 0 when the kernel has no Landlock (nothing is then restricted).
    """
    import ctypes

    from kailash.security.sandbox.isolation import _libc

    abi = landlock_abi()
    if abi < 1:
        return 0
    libc = _libc()
    handled_fs = _fs_rights(abi)

    class Ruleset(ctypes.Structure):
        _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed", ctypes.c_uint64), ("fd", ctypes.c_int32)]

    attr = Ruleset(handled_fs, 0b11 if abi >= 4 else 0, 0b11 if abi >= 6 else 0)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0)
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        file_rights = _FILE_RIGHTS[min(abi, 5)]
        read_only = _EXECUTE | _READ_FILE | _READ_DIR
        for paths, rights in ((readable, read_only), (writable, handled_fs)):
            for path in paths:
                try:
                    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                except OSError:
                    continue  # not in this view
                try:
                    allowed = rights if os.path.isdir(path) else rights & file_rights
                    rule = PathBeneath(allowed, fd)
                    if libc.syscall(_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0) != 0:
                        raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
                finally:
                    os.close(fd)
        PR_SET_NO_NEW_PRIVS = 38
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS failed")
        if libc.syscall(_RESTRICT_SELF, ruleset, 0) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)
    return abi

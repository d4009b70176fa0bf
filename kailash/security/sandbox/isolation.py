"""Operating-system limits for sandbox workers: rlimits, capabilities and seccomp.

This module owns the per-process parts of the sandbox that the kernel enforces, so they
hold even if the Python-level guards (:mod:`kailash.security.sandbox.guards`) were
bypassed (the file-system view, bubblewrap and Landlock, live in
:mod:`kailash.security.sandbox.files`):

* :func:`apply_worker_limits` sets the resource limits of a forked worker (address
  space, per-call CPU, file size, no core dumps, few open files, no new processes).
* :func:`drop_capabilities` gives up every capability (a root host stays uid 0 but
  powerless in the worker).
* :func:`install_seccomp` loads a seccomp-BPF filter that refuses process creation,
  program execution, new sockets, signalling other processes, ptrace, raising rlimits
  other than the CPU limit, mounts and namespace changes.

* :func:`set_not_dumpable` keeps other processes of the same user out of the worker.

Nothing here runs at import time; the ctypes calls happen in the worker process only.
"""

from __future__ import annotations

import functools
import os
import platform
import struct
import sys
from typing import Any

__all__ = ["apply_worker_limits", "set_cpu_limit", "install_seccomp", "install_read_only_files",
           "set_parent_death_signal", "python_library_dirs", "interpreter_libraries", "drop_capabilities",
           "set_not_dumpable"]


def interpreter_libraries() -> set[str]:
    """The interpreter's standard library and site-packages directories, as configured (not resolved)."""
    import site
    import sysconfig

    dirs: set[str] = set()
    for scheme_vars in ({}, {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}):
        paths = sysconfig.get_paths(vars=scheme_vars or None)
        dirs.update(paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths)
    try:
        dirs.update(site.getsitepackages())
    except AttributeError:  # pragma: no cover - some embedded interpreters
        pass
    return dirs


def python_library_dirs() -> list[str]:
    """The standard library, site-packages and the Kailash package: what sandboxed imports may read.

    Narrower than :func:`library_roots` on purpose: a project directory on ``sys.path``
    (with its ``.env`` files) is not readable by sandboxed code.
    """
    import kailash

    dirs = interpreter_libraries()
    dirs.add(os.path.dirname(os.path.abspath(kailash.__file__)))
    return sorted({os.path.realpath(d) for d in dirs if os.path.isdir(d)})


# -- resource limits -------------------------------------------------------------------------

def _address_space_in_use() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            pages = int(f.read().split()[0])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def apply_worker_limits(*, memory_limit: int | None, max_file_size: int | None) -> int:
    """Limit the calling (worker) process. Returns the address-space limit applied (0 = none).

    ``memory_limit`` is the memory the user's code may allocate on top of what the
    worker's interpreter already maps, so the same limit works whatever the host imported.
    """
    import resource

    def lower(res: int, value: int) -> None:
        soft, hard = resource.getrlimit(res)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        try:
            resource.setrlimit(res, (value, value))
        except (ValueError, OSError):
            pass

    lower(resource.RLIMIT_CORE, 0)
    lower(resource.RLIMIT_NOFILE, 64)
    # Only effective for non-root users (the kernel exempts uid 0); seccomp covers root.
    lower(resource.RLIMIT_NPROC, 0)
    if max_file_size:
        lower(resource.RLIMIT_FSIZE, int(max_file_size))
    limit = 0
    if memory_limit:
        limit = _address_space_in_use() + int(memory_limit)
        lower(resource.RLIMIT_AS, limit)
    soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    return limit


def set_cpu_limit(seconds: float) -> None:
    """Allow ``seconds`` more CPU time from now (SIGXCPU ends the worker past it)."""
    import math
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    soft = int(math.ceil(used + seconds)) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
    except (ValueError, OSError):
        pass


@functools.lru_cache(maxsize=1)
def _libc() -> Any:
    """libc through ctypes, loaded once (the template loads it so forked workers need not)."""
    import ctypes

    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:  # not glibc: ask the (slow) finder
        import ctypes.util

        return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def preload() -> None:
    """Load what workers use after the fork (ctypes, libc), so each fork starts faster."""
    if sys.platform.startswith("linux"):
        _libc()


def set_parent_death_signal(sig: int = 9) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent thread exits."""
    if not sys.platform.startswith("linux"):
        return
    PR_SET_PDEATHSIG = 1
    _libc().prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)


def set_not_dumpable() -> None:
    """PR_SET_DUMPABLE 0: no core dumps, and processes of the same user (another worker)
    cannot ptrace this one or read its ``/proc/<pid>/mem``, ``environ`` or ``fd``."""
    if sys.platform.startswith("linux"):
        _libc().prctl(4, 0, 0, 0, 0)


def drop_capabilities() -> bool:
    """Give up every Linux capability (bounding, ambient, effective, permitted, inheritable).

    A worker started by root keeps uid 0 (so it can still write the user's allowed
    directories) but loses root's powers: no CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_KILL,
    CAP_DAC_OVERRIDE... Returns whether the capability sets are now empty.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    libc = _libc()
    PR_CAPBSET_DROP, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 47, 4
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == 22:  # EINVAL: past the last
            break
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (Data * 2)()
    return libc.capset(ctypes.byref(header), data) == 0


# -- seccomp ---------------------------------------------------------------------------------

# x86_64 and aarch64 numbers of the system calls a worker must never make.
_DENY = {
    "x86_64": {
        "fork": 57, "vfork": 58, "execve": 59, "execveat": 322, "socket": 41, "socketpair": 53,
        "connect": 42, "bind": 49, "listen": 50, "accept": 43, "accept4": 288, "ptrace": 101,
        "process_vm_readv": 310, "process_vm_writev": 311, "mount": 165, "umount2": 166,
        "chroot": 161, "pivot_root": 155, "unshare": 272, "setns": 308, "keyctl": 250,
        "add_key": 248, "request_key": 249, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "init_module": 175,
        "finit_module": 313, "delete_module": 176, "kexec_load": 246, "reboot": 169, "swapon": 167,
        "swapoff": 168, "personality": 135, "mknod": 133, "mknodat": 259, "settimeofday": 164,
        "clock_settime": 227, "acct": 163, "iopl": 172, "ioperm": 173, "open_by_handle_at": 304,
        "name_to_handle_at": 303, "pidfd_open": 434, "pidfd_send_signal": 424, "pidfd_getfd": 438,
        "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297, "setuid": 105, "setgid": 106,
        "setreuid": 113, "setregid": 114, "setresuid": 117, "setresgid": 119,
    },
    "aarch64": {
        "execve": 221, "execveat": 281, "socket": 198, "socketpair": 199, "connect": 203, "bind": 200,
        "listen": 201, "accept": 202, "accept4": 242, "ptrace": 117, "process_vm_readv": 270,
        "process_vm_writev": 271, "mount": 40, "umount2": 39, "chroot": 51, "pivot_root": 41,
        "unshare": 97, "setns": 268, "keyctl": 219, "add_key": 217, "request_key": 218, "bpf": 280,
        "perf_event_open": 241, "userfaultfd": 282, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "init_module": 105, "finit_module": 273, "delete_module": 106,
        "kexec_load": 104, "reboot": 142, "swapon": 224, "swapoff": 225, "personality": 92,
        "mknodat": 33, "settimeofday": 170, "clock_settime": 112, "acct": 89,
        "open_by_handle_at": 265, "name_to_handle_at": 264, "pidfd_open": 434,
        "pidfd_send_signal": 424, "pidfd_getfd": 438, "rt_sigqueueinfo": 138,
        "rt_tgsigqueueinfo": 240, "setuid": 146, "setgid": 144, "setreuid": 145, "setregid": 143,
        "setresuid": 147, "setresgid": 149,
    },
}
_ARCH = {"x86_64": (0xC000003E, {"clone": 56, "clone3": 435, "kill": 62, "tkill": 200, "tgkill": 234,
                                  "setrlimit": 160, "prlimit64": 302}),
         "aarch64": (0xC00000B7, {"clone": 220, "clone3": 435, "kill": 129, "tkill": 130, "tgkill": 131,
                                   "setrlimit": 164, "prlimit64": 261})}

_LD_W_ABS, _JEQ, _JSET, _RET = 0x20, 0x15, 0x45, 0x06
_ALLOW, _KILL = 0x7FFF0000, 0x80000000
_EPERM, _ENOSYS = 0x00050000 | 1, 0x00050000 | 38
_CLONE_THREAD = 0x00010000


def _stmt(code: int, k: int) -> bytes:
    return struct.pack("HBBI", code, 0, 0, k)


def _jump(code: int, k: int, jt: int, jf: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def _filter_program(pid: int) -> list[bytes]:
    machine = platform.machine()
    audit_arch, special = _ARCH[machine]
    prog = [_stmt(_LD_W_ABS, 4), _jump(_JEQ, audit_arch, 1, 0), _stmt(_RET, _KILL), _stmt(_LD_W_ABS, 0)]
    if machine == "x86_64":  # refuse the x32 ABI outright
        prog += [_jump(0x35, 0x40000000, 0, 1), _stmt(_RET, _EPERM)]
    for nr in sorted(set(_DENY[machine].values())):
        prog += [_jump(_JEQ, nr, 0, 1), _stmt(_RET, _EPERM)]
    # glibc falls back from clone3 to clone on ENOSYS; clone is allowed for threads only.
    prog += [_jump(_JEQ, special["clone3"], 0, 1), _stmt(_RET, _ENOSYS)]
    prog += [_jump(_JEQ, special["clone"], 0, 4), _stmt(_LD_W_ABS, 16),
             _jump(_JSET, _CLONE_THREAD, 0, 1), _stmt(_RET, _ALLOW), _stmt(_RET, _EPERM)]
    # Signals only to the worker itself (kill(pid), tgkill(pid, tid)); tkill by tid is refused.
    for name in ("kill", "tgkill"):
        prog += [_jump(_JEQ, special[name], 0, 4), _stmt(_LD_W_ABS, 16),
                 _jump(_JEQ, pid, 0, 1), _stmt(_RET, _ALLOW), _stmt(_RET, _EPERM)]
        prog.append(_stmt(_LD_W_ABS, 0))
    prog += [_jump(_JEQ, special["tkill"], 0, 1), _stmt(_RET, _EPERM)]
    # setrlimit/prlimit64: reading is fine; only RLIMIT_CPU (0) may be changed (per-call budget).
    prog += [_jump(_JEQ, special["setrlimit"], 0, 4), _stmt(_LD_W_ABS, 16),
             _jump(_JEQ, 0, 0, 1), _stmt(_RET, _ALLOW), _stmt(_RET, _EPERM)]
    prog.append(_stmt(_LD_W_ABS, 0))
    prog += [_jump(_JEQ, special["prlimit64"], 0, 8),
             _stmt(_LD_W_ABS, 32), _jump(_JEQ, 0, 0, 3), _stmt(_LD_W_ABS, 36), _jump(_JEQ, 0, 0, 1),
             _stmt(_RET, _ALLOW),
             _stmt(_LD_W_ABS, 24), _jump(_JEQ, 0, 1, 0), _stmt(_RET, _EPERM)]
    prog.append(_stmt(_RET, _ALLOW))
    return prog


# Without Landlock nothing else stops an escape from writing where the host's user can:
# then the worker may not write any file at all (fail closed), allowed directories included.
_WRITE_CALLS = {
    "x86_64": {"creat": 85, "unlink": 87, "unlinkat": 263, "rename": 82, "renameat": 264, "renameat2": 316,
               "mkdir": 83, "mkdirat": 258, "rmdir": 84, "link": 86, "linkat": 265, "symlink": 88,
               "symlinkat": 266, "truncate": 76, "chmod": 90, "fchmod": 91, "fchmodat": 268, "fchmodat2": 452,
               "chown": 92, "fchown": 93, "lchown": 94, "fchownat": 260, "utime": 132, "utimes": 235,
               "futimesat": 261, "utimensat": 280, "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190,
               "removexattr": 197, "lremovexattr": 198, "fremovexattr": 199, "openat2": 437},
    "aarch64": {"unlinkat": 35, "renameat": 38, "renameat2": 276, "mkdirat": 34, "linkat": 37, "symlinkat": 36,
                "truncate": 45, "fchmod": 52, "fchmodat": 53, "fchmodat2": 452, "fchownat": 54, "fchown": 55,
                "utimensat": 88, "setxattr": 5, "lsetxattr": 6, "fsetxattr": 7, "removexattr": 14,
                "lremovexattr": 15, "fremovexattr": 16, "openat2": 437},
}
_OPEN_FLAGS_ARG = {"x86_64": {2: 1, 257: 2}, "aarch64": {56: 2}}  # open(path, flags), openat(dir, path, flags)
_WRITE_OPEN = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _read_only_program() -> list[bytes]:
    machine = platform.machine()
    audit_arch, _ = _ARCH[machine]
    prog = [_stmt(_LD_W_ABS, 4), _jump(_JEQ, audit_arch, 1, 0), _stmt(_RET, _KILL), _stmt(_LD_W_ABS, 0)]
    for nr in sorted(set(_WRITE_CALLS[machine].values())):
        prog += [_jump(_JEQ, nr, 0, 1), _stmt(_RET, _EPERM)]
    for nr, arg in _OPEN_FLAGS_ARG[machine].items():
        prog += [_jump(_JEQ, nr, 0, 4), _stmt(_LD_W_ABS, 16 + 8 * arg),
                 _jump(_JSET, _WRITE_OPEN, 0, 1), _stmt(_RET, _EPERM), _stmt(_RET, _ALLOW)]
    prog.append(_stmt(_RET, _ALLOW))
    return prog


def _load_filter(program: list[bytes]) -> bool:
    import ctypes

    libc = _libc()
    PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return False
    code = b"".join(program)
    buf = ctypes.create_string_buffer(code, len(code))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(code) // 8, ctypes.addressof(buf))
    return libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) == 0


def install_read_only_files() -> bool:
    """Refuse every file write, creation, removal and metadata change (for workers without
    Landlock: nothing else would keep an escape from writing outside the allowed directories)."""
    if not sys.platform.startswith("linux") or platform.machine() not in _ARCH:
        return False
    return _load_filter(_read_only_program())


def install_seccomp() -> bool:
    """Load the worker's seccomp filter into the calling process. Returns whether it is active."""
    if not sys.platform.startswith("linux") or platform.machine() not in _ARCH:
        return False
    return _load_filter(_filter_program(os.getpid()))

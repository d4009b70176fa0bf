"""safe_open: the one door through which nodes touch files.

A path is resolved (symlinks included) and must lie inside an allowed directory of
the active :class:`SecurityConfig`. The check alone would leave a race: between it and
the ``open`` another process can swap a directory on the path for a symlink to
``/etc``. So the file is then opened *relative to the allowed directory's descriptor*,
refusing every symlink on the way: with ``openat2(RESOLVE_BENEATH |
RESOLVE_NO_SYMLINKS)`` where the kernel has it, else by walking the components one
``openat(O_NOFOLLOW | O_DIRECTORY)`` at a time. Symlinks that stay inside the allowed
directory still work (the check resolved them first); a path that changes under the
open is refused with :class:`SecurityError`. Only regular files are opened (a FIFO
would block), and the size limit is checked on the opened descriptor, so the file
measured is the file read. With no policy set, files open normally.

This module must not import anything above ``kailash.security``.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import IO, Any

from kailash.errors import SecurityError
from kailash.security.config import SecurityConfig, get_security_config

__all__ = ["safe_open", "validate_path", "open_directory"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_SYS_OPENAT2 = 437  # the same number on every architecture (added in Linux 5.6)
_RESOLVE_NO_MAGICLINKS, _RESOLVE_NO_SYMLINKS, _RESOLVE_BENEATH = 0x02, 0x04, 0x08
_openat2_state: list[Any] = []  # [callable | None], filled on first use


def validate_path(path: str | os.PathLike[str], config: SecurityConfig | None = None, *, node_id: str | None = None) -> Path:
    """The resolved path, or SecurityError if the policy does not allow it.

    A check only: open through :func:`safe_open` (or :func:`open_directory`), which
    re-checks at open time, never with ``open(validate_path(p))``.
    """
    config = config if config is not None else get_security_config()
    resolved, _ = _check(path, config, node_id)
    return resolved


def _check(path: str | os.PathLike[str], config: SecurityConfig | None, node_id: str | None) -> tuple[Path, Path | None]:
    """``(resolved path, the allowed directory holding it)``; the base is None without a policy."""
    raw = os.fspath(path)
    # exact types only: a str subclass could answer "\x00" in raw, or startswith, as it likes
    raw = str.__add__("", raw) if isinstance(raw, str) else os.fsdecode(bytes.__add__(b"", raw))
    if "\x00" in raw:
        raise SecurityError(f"refused path with a NUL byte: {raw!r}", node_id=node_id, parameter="file_path")
    try:
        resolved = Path(os.path.expanduser(raw)).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop, or the path changed while being resolved
        raise SecurityError(f"path '{raw}' could not be resolved: {exc}", node_id=node_id, parameter="file_path",
                            expected="a stable path", got=raw) from None
    if config is None or not config.resolved_directories:
        return resolved, None
    for base in config.resolved_directories:
        if resolved == base or base in resolved.parents:
            return resolved, base
    _audit(config, "file_access_refused", path=raw, resolved=str(resolved), node_id=node_id)
    allowed = ", ".join(str(d) for d in config.resolved_directories)
    raise SecurityError(
        f"access to '{raw}' refused: it resolves to '{resolved}', outside the allowed directories ({allowed})",
        node_id=node_id,
        parameter="file_path",
        expected=f"a path inside {allowed}",
        got=raw,
    )


def _os_flags(mode: str) -> int:
    plus = "+" in mode
    if "r" in mode:
        flags = os.O_RDWR if plus else os.O_RDONLY
    elif "w" in mode:
        flags = (os.O_RDWR if plus else os.O_WRONLY) | os.O_CREAT | os.O_TRUNC
    elif "a" in mode:
        flags = (os.O_RDWR if plus else os.O_WRONLY) | os.O_CREAT | os.O_APPEND
    elif "x" in mode:
        flags = (os.O_RDWR if plus else os.O_WRONLY) | os.O_CREAT | os.O_EXCL
    else:
        raise ValueError(f"invalid mode: {mode!r}")
    return flags | os.O_CLOEXEC


def safe_open(
    path: str | os.PathLike[str],
    mode: str = "r",
    *,
    encoding: str | None = None,
    newline: str | None = None,
    config: SecurityConfig | None = None,
    node_id: str | None = None,
    make_parents: bool = False,
    **kwargs: Any,
) -> IO[Any]:
    """Open ``path`` after checking it against the security policy.

    Under a policy the open itself cannot be redirected outside the allowed directory
    (see the module docs); a final-component symlink planted after the check is not
    followed, for reads and for writes. With ``make_parents=True`` missing parent
    directories are created, after the check and beneath the allowed directory, so a
    refused path never leaves directories behind.

    Example:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> with safe_open(os.path.join(d, "a.txt"), "w") as f:
        ...     _ = f.write("hi")
    """
    config = config if config is not None else get_security_config()
    resolved, base = _check(path, config, node_id)
    flags = _os_flags(mode)
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    if base is None:
        if make_parents:
            resolved.parent.mkdir(parents=True, exist_ok=True)
        if "b" in mode:
            return open(resolved, mode, **kwargs)
        return open(resolved, mode, encoding=encoding, newline=newline, **kwargs)
    assert config is not None  # a base is only found under a policy
    rel = resolved.relative_to(base)
    if not rel.parts:
        raise IsADirectoryError(errno.EISDIR, "is a directory", str(resolved))
    fd = _open_beneath(base, str(rel), flags | os.O_NONBLOCK, 0o666, make_parents=make_parents, node_id=node_id)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SecurityError(f"'{path}' is not a regular file (a device, pipe or socket is never opened)",
                                node_id=node_id, parameter="file_path", expected="a regular file", got=os.fspath(path))
        reading = "r" in mode and "+" not in mode
        if reading and config.max_file_size and st.st_size > config.max_file_size:
            _audit(config, "file_too_large", path=os.fspath(path), size=st.st_size, limit=config.max_file_size,
                   node_id=node_id)
            raise SecurityError(
                f"file '{path}' is {st.st_size} bytes, over the {config.max_file_size}-byte limit",
                node_id=node_id, parameter="file_path", expected=f"<= {config.max_file_size} bytes", got=st.st_size,
            )
        os.set_blocking(fd, True)
        if "b" in mode:
            return os.fdopen(fd, mode, **kwargs)
        return os.fdopen(fd, mode, encoding=encoding, newline=newline, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def open_directory(path: str | os.PathLike[str], *, create: bool = False, config: SecurityConfig | None = None,
                   node_id: str | None = None) -> int:
    """A descriptor of directory ``path`` (made first with ``create=True``), checked like :func:`safe_open`.

    Use it with ``dir_fd=`` calls (``os.open``, ``os.replace``, ``os.chmod``) to write
    several files into one directory without any path being re-resolved. The caller
    closes the descriptor.
    """
    config = config if config is not None else get_security_config()
    resolved, base = _check(path, config, node_id)
    if base is None:
        if create:
            resolved.mkdir(parents=True, exist_ok=True)
        return os.open(resolved, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    rel = resolved.relative_to(base)
    if not rel.parts:
        return os.open(base, _DIR_FLAGS)
    return _open_beneath(base, str(rel), _DIR_FLAGS, 0, make_parents=create, make_last=create, node_id=node_id)


def _open_beneath(base: Path, rel: str, flags: int, mode: int, *, make_parents: bool = False,
                  make_last: bool = False, node_id: str | None = None) -> int:
    """Open ``rel`` beneath directory ``base`` without following any symlink; returns a descriptor."""
    flags |= os.O_NOFOLLOW
    openat2 = None if make_parents else _openat2()
    dfd = os.open(base, _DIR_FLAGS)
    try:
        if openat2 is not None:
            return openat2(dfd, rel, flags, mode if flags & os.O_CREAT else 0, node_id)
        parts = rel.split(os.sep)
        for name in parts[:-1]:
            dfd = _step(dfd, name, make_parents, node_id)
        if make_last:
            _mkdir_at(dfd, parts[-1])
        try:
            return os.open(parts[-1], flags, mode, dir_fd=dfd)
        except OSError as exc:
            raise _symlink_refusal(exc, dfd, parts[-1], node_id) from None
    finally:
        os.close(dfd)


def _step(dfd: int, name: str, make: bool, node_id: str | None) -> int:
    """Descend one directory from ``dfd`` (closing it); never through a symlink."""
    try:
        if make:
            _mkdir_at(dfd, name)
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=dfd)
        except OSError as exc:
            raise _symlink_refusal(exc, dfd, name, node_id) from None
    finally:
        os.close(dfd)


def _mkdir_at(dfd: int, name: str) -> None:
    try:
        os.mkdir(name, 0o777, dir_fd=dfd)
    except FileExistsError:
        pass


def _symlink_refusal(exc: OSError, dfd: int, name: str, node_id: str | None) -> OSError:
    """SecurityError when ``name`` is (now) a symlink; otherwise ``exc`` unchanged."""
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EXDEV):
        try:
            is_link = stat.S_ISLNK(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode)
        except OSError:
            is_link = exc.errno != errno.ENOTDIR
        if is_link or exc.errno == errno.EXDEV:
            return _changed(name, node_id)
    return exc


def _changed(name: str, node_id: str | None) -> SecurityError:
    return SecurityError(
        f"refused to open through '{name}': it is a symbolic link or changed while being opened "
        "(files are opened beneath the allowed directory without following links)",
        node_id=node_id, parameter="file_path", expected="a path without symbolic links at open time", got=name,
    )


def _openat2_available() -> bool:
    return _openat2() is not None


def _openat2() -> Any:
    """A callable ``(dirfd, path, flags, mode, node_id) -> fd`` over openat2(2), or None without it."""
    if _openat2_state:
        return _openat2_state[0]
    fn = None
    try:
        fn = _make_openat2()
    except Exception:  # no libc symbol, no ctypes, a foreign platform: use the walk
        fn = None
    _openat2_state.append(fn)
    return fn


def _make_openat2() -> Any:
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    syscall = libc.syscall
    syscall.restype = ctypes.c_long

    class OpenHow(ctypes.Structure):
        _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]

    resolve = _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS

    def openat2(dfd: int, rel: str, flags: int, mode: int, node_id: str | None) -> int:
        how = OpenHow(flags, mode, resolve)
        fd = syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dfd), os.fsencode(rel), ctypes.byref(how),
                     ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err in (errno.ELOOP, errno.EXDEV):
            raise _changed(rel, node_id)
        raise OSError(err, os.strerror(err), rel)

    # probe: the syscall may be missing (old kernel) or filtered (seccomp returns ENOSYS/EPERM)
    probe = os.open("/", _DIR_FLAGS)
    try:
        fd = openat2(probe, ".", _DIR_FLAGS, 0, None)
        os.close(fd)
    except OSError:
        return None
    finally:
        os.close(probe)
    return openat2


def _audit(config: SecurityConfig, event: str, **fields: Any) -> None:
    if not config.enable_audit_logging:
        return
    from kailash.security.audit import audit_event

    audit_event(event, config=config, **fields)

"""Writing an export: YAML and JSON text, and files written atomically under a directory.

Every file is written beneath a directory descriptor from
:func:`kailash.security.paths.open_directory`, so an active
:class:`~kailash.security.SecurityConfig` limits where exports may go. A target that
cannot be written is a :class:`~kailash.errors.SerializationError` saying which and why.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from kailash.errors import SecurityError, SerializationError

__all__ = ["dump_yaml", "dump_json", "write_files"]


def dump_yaml(data: Any) -> str:
    """Safe YAML, multi-line strings (code) as literal blocks."""
    import yaml

    base = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's emitter when present: same text, faster

    class _Dumper(base):  # type: ignore[valid-type,misc]
        def ignore_aliases(self, data: Any) -> bool:  # shared dicts are written out, never as &anchors
            return True

    def _str(dumper: Any, value: str) -> Any:
        if any(c in value for c in "\x85\u2028\u2029"):
            # PyYAML's plain/single-quoted styles with allow_unicode fold these line breaks
            # into spaces on loading; the double-quoted style escapes them (\N, \L, \P).
            style: str | None = '"'
        elif "\n" in value and not value.endswith((" ", "\t")):
            style = "|"
        else:
            style = None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, _str)
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def dump_json(data: Any) -> str:
    try:
        return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    except ValueError as exc:
        raise SerializationError(
            f"cannot write JSON: {exc} (a config value is NaN or infinite); export as YAML or use a finite number",
            parameter="config",
            expected="finite numbers",
        ) from None


def write_files(directory: Path, files: dict[str, tuple[Any, int]]) -> list[Path]:
    """Write ``{relative path: (text | bytes | source Path, mode)}`` under ``directory``.

    Each file is written to a temporary name and renamed into place, all relative to a
    descriptor of its directory opened through :func:`~kailash.security.paths.open_directory`,
    so no symlink planted in the tree during the export redirects a write.
    """
    from kailash.security.paths import open_directory

    target = directory if str(directory) else Path(".")
    try:
        if target.exists() and not target.is_dir():
            raise NotADirectoryError(f"'{target}' exists and is not a directory")
        os.close(open_directory(target, create=True))
    except SecurityError:
        raise
    except OSError as exc:
        raise SerializationError(
            f"cannot write the export to '{target}': {exc.strerror or exc}",
            parameter="path",
            expected="a writable directory",
            got=str(target),
        ) from None
    written = []
    for rel, (content, mode) in files.items():
        dest = target / rel
        try:
            if isinstance(content, Path):
                content = content.read_bytes()
            data = content if isinstance(content, bytes) else content.encode("utf-8")
            dfd = open_directory(dest.parent, create=True)
            try:
                _write_at(dfd, dest.name, data, mode)
            finally:
                os.close(dfd)
        except SecurityError:
            raise
        except OSError as exc:
            raise SerializationError(
                f"cannot write '{dest}': {exc.strerror or exc} (the directory '{dest.parent}' must be writable)",
                parameter="path",
                expected="a writable directory",
                got=str(dest),
            ) from None
        written.append(dest)
    return written


def _write_at(dfd: int, name: str, data: bytes, mode: int) -> None:
    """Write ``name`` in directory ``dfd`` atomically: a fresh temporary file, then a rename."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        tmp = f".{name}.{secrets.token_hex(6)}"
        try:
            fd = os.open(tmp, flags, 0o600, dir_fd=dfd)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"no free temporary name for '{name}'")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), mode)
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dfd)
        raise

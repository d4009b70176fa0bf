"""Writing an export: YAML and JSON text, and files written atomically under a directory.

Every file goes through :func:`kailash.security.paths.safe_open`, so an active
:class:`~kailash.security.SecurityConfig` limits where exports may go. A target that
cannot be written is a :class:`~kailash.errors.SerializationError` saying which and why.
"""

from __future__ import annotations

import json
import os
import tempfile
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
    """Write ``{relative path: (text | bytes | source Path, mode)}`` under ``directory``."""
    from kailash.security.paths import safe_open, validate_path

    target = directory if str(directory) else Path(".")
    try:
        validate_path(target)
        if target.exists() and not target.is_dir():
            raise NotADirectoryError(f"'{target}' exists and is not a directory")
        target.mkdir(parents=True, exist_ok=True)
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
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path):
                content = content.read_bytes()
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
            os.close(fd)
            try:
                with safe_open(tmp, "wb" if isinstance(content, bytes) else "w") as f:
                    f.write(content)
                os.chmod(tmp, mode)
                os.replace(tmp, dest)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
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

"""safe_open: the one door through which nodes touch files.

Paths are resolved (symlinks included) and must lie inside an allowed directory of
the active :class:`SecurityConfig`; files over ``max_file_size`` are refused before
any byte is read. With no policy set, files open normally.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

from kailash.errors import SecurityError
from kailash.security.config import SecurityConfig, get_security_config

__all__ = ["safe_open", "validate_path"]


def validate_path(path: str | os.PathLike[str], config: SecurityConfig | None = None, *, node_id: str | None = None) -> Path:
    """The resolved path, or SecurityError if the policy does not allow it."""
    config = config if config is not None else get_security_config()
    raw = os.fspath(path)
    if "\x00" in raw:
        raise SecurityError(f"refused path with a NUL byte: {raw!r}", node_id=node_id, parameter="file_path")
    resolved = Path(os.path.expanduser(raw)).resolve()
    if config is None or not config.resolved_directories:
        return resolved
    for base in config.resolved_directories:
        if resolved == base or base in resolved.parents:
            return resolved
    _audit(config, "file_access_refused", path=raw, resolved=str(resolved), node_id=node_id)
    allowed = ", ".join(str(d) for d in config.resolved_directories)
    raise SecurityError(
        f"access to '{raw}' refused: it resolves to '{resolved}', outside the allowed directories ({allowed})",
        node_id=node_id,
        parameter="file_path",
        expected=f"a path inside {allowed}",
        got=raw,
    )


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

    With ``make_parents=True`` missing parent directories are created, after the
    check, so a refused path never leaves directories behind.

    Example:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> with safe_open(os.path.join(d, "a.txt"), "w") as f:
        ...     _ = f.write("hi")
    """
    config = config if config is not None else get_security_config()
    resolved = validate_path(path, config, node_id=node_id)
    reading = "r" in mode and "+" not in mode
    if config is not None and reading and config.max_file_size:
        try:
            size = resolved.stat().st_size
        except FileNotFoundError:
            size = 0
        if size > config.max_file_size:
            _audit(config, "file_too_large", path=os.fspath(path), size=size, limit=config.max_file_size, node_id=node_id)
            raise SecurityError(
                f"file '{path}' is {size} bytes, over the {config.max_file_size}-byte limit",
                node_id=node_id, parameter="file_path", expected=f"<= {config.max_file_size} bytes", got=size,
            )
    if make_parents:
        resolved.parent.mkdir(parents=True, exist_ok=True)
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    if "b" in mode:
        return open(resolved, mode, **kwargs)
    return open(resolved, mode, encoding=encoding, newline=newline, **kwargs)


def _audit(config: SecurityConfig, event: str, **fields: Any) -> None:
    if not config.enable_audit_logging:
        return
    from kailash.security.audit import audit_event

    audit_event(event, config=config, **fields)

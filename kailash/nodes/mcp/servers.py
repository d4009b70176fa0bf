"""How an MCP server is named: :class:`MCPServerConfig`, the named-server registry, errors.

A server is given as ``{"name", "command", "args", "env"}`` (stdio), ``{"name", "url"}``
or a URL string (streamable HTTP), or a bare name registered earlier with
:func:`register_mcp_server` (the gateway registers a workflow's ``mcp_config`` this
way). Extra keys such as ``capabilities`` are kept for agents. This module does no
I/O and does not import the ``mcp`` SDK.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kailash.errors import NodeConfigurationError, NodeExecutionError
from kailash.security.secrets import Secret, reveal

__all__ = [
    "MCPServerConfig",
    "MCPServerError",
    "MCPToolError",
    "register_mcp_server",
    "register_mcp_servers",
    "registered_mcp_servers",
    "unregister_mcp_server",
    "server_capabilities",
]


class MCPServerError(NodeExecutionError):
    """An MCP server could not be started, reached, or closed the connection.

    Attributes:
        server: the server's name.
    """

    def __init__(self, message: str, *, server: str, **context: Any) -> None:
        super().__init__(message, **context)
        self.server = server


class MCPToolError(NodeExecutionError):
    """An MCP tool call failed: unknown tool, wrong arguments, or the tool raised.

    Attributes:
        server: the server's name.
        tool: the tool's name.
    """

    def __init__(self, message: str, *, server: str, tool: str, **context: Any) -> None:
        super().__init__(message, **context)
        self.server = server
        self.tool = tool


@dataclass(frozen=True, kw_only=True)
class MCPServerConfig:
    """One MCP server: a stdio command or a streamable-HTTP URL.

    Attributes:
        name: how messages and agents name the server.
        command: the executable for a stdio server.
        args: its arguments.
        env: extra environment variables (values may be Secrets; they are never shown).
        cwd: working directory of the server process.
        url: the endpoint of a streamable-HTTP server.
        capabilities: what agents may use the server for (optional hints).
        tenant: the gateway tenant whose calls use it (set per call): tenants never share a
            running server, nor its state.
    """

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, Any], ...] = ()
    cwd: str | None = None
    url: str | None = None
    capabilities: tuple[str, ...] = field(default=(), compare=False)
    tenant: str | None = None

    @property
    def key(self) -> tuple[Any, ...]:
        """Identity used to reuse a session (same tenant, command, args, env, cwd, url)."""
        return (self.tenant, self.command, self.args, tuple((k, str(reveal(v))) for k, v in self.env), self.cwd,
                self.url)

    @property
    def transport(self) -> str:
        return "http" if self.url else "stdio"

    def env_dict(self) -> dict[str, str]:
        return {k: str(reveal(v)) for k, v in self.env}

    def describe(self) -> str:
        """The server for messages: name and command or URL, never env values, the value of a
        secret-named flag (``--token X``, ``--api-key=X``) or a password in the URL."""
        from kailash.security.secrets import redact

        target = self.url if self.url else " ".join([self.command or "?", *_masked_args(self.args)])
        return f"'{self.name}' ({redact(target, self.secret_values(), urls=True)})"

    def secret_values(self) -> frozenset[str]:
        """What this server's messages must never show: its env values (all of them, as
        :meth:`to_dict` hides them), the values of its secret-named flags and the credentials
        in its URL. Every call notes them as secrets of the run in progress."""
        from kailash.security.credentials import url_credentials

        values = {str(reveal(v)) for _, v in self.env}
        values.update(a for a, b in zip(self.args, _masked_args(self.args), strict=True) if b == "***")
        values.update(a.split("=", 1)[1] for a in self.args if "=" in a and _secret_flag(a.split("=", 1)[0]))
        if self.url and "://" in self.url:
            values.update(url_credentials(self.url))
        return frozenset(v for v in values if len(v) >= 4)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.url:
            out["url"] = self.url
        else:
            out.update(command=self.command, args=list(self.args))
            if self.env:
                out["env"] = {k: (v.to_reference() if isinstance(v, Secret) else "***") for k, v in self.env}
        if self.capabilities:
            out["capabilities"] = list(self.capabilities)
        return out

    @classmethod
    def from_any(cls, spec: Any, *, owner: str = "MCP client", parameter: str = "server_config") -> MCPServerConfig:
        """Normalise a dict, URL, registered name or config into a config.

        Raises:
            NodeConfigurationError: naming ``owner`` and ``parameter`` when the spec is unusable.
        """
        if isinstance(spec, MCPServerConfig):
            return spec
        if isinstance(spec, str):
            text = spec.strip()
            if text.startswith(("http://", "https://")):
                return cls(name=text, url=text)
            with _lock:
                found = _registry.get(text)
            if found is not None:
                return found
            known = ", ".join(sorted(_registry)) or "none registered"
            raise NodeConfigurationError(
                f"{owner}: parameter '{parameter}' names MCP server '{text}', which is not registered "
                f"(registered: {known}); give {{'name', 'command', 'args', 'env'}}, a URL, or call "
                f"register_mcp_server('{text}', {{...}})",
                parameter=parameter, expected="a server config, URL or registered name", got=text,
            )
        if isinstance(spec, Mapping):
            command, url = spec.get("command"), spec.get("url")
            name = str(spec.get("name") or url or command or "mcp")
            if not command and not url:
                raise NodeConfigurationError(
                    f"{owner}: parameter '{parameter}' for MCP server '{name}' needs 'command' (stdio) or 'url' "
                    f"(streamable HTTP), got keys {sorted(spec)}",
                    parameter=parameter, expected="{'command', 'args', 'env'} or {'url'}", got=sorted(spec),
                )
            args = spec.get("args") or ()
            if isinstance(args, str) or not all(isinstance(a, str) for a in args):
                raise NodeConfigurationError(
                    f"{owner}: parameter '{parameter}' for MCP server '{name}': 'args' must be a list of strings",
                    parameter=parameter, expected="list[str]", got=type(args).__name__,
                )
            env = spec.get("env") or {}
            if not isinstance(env, Mapping):
                raise NodeConfigurationError(
                    f"{owner}: parameter '{parameter}' for MCP server '{name}': 'env' must be a dict",
                    parameter=parameter, expected="dict[str, str]", got=type(env).__name__,
                )
            caps = spec.get("capabilities") or ()
            return cls(name=name, command=str(command) if command else None, args=tuple(args),
                       env=tuple(sorted((str(k), v) for k, v in env.items())), cwd=spec.get("cwd"),
                       url=str(url) if url else None, capabilities=tuple(str(c) for c in caps))
        raise NodeConfigurationError(
            f"{owner}: parameter '{parameter}' expects a dict {{'name', 'command', 'args', 'env'}}, a URL or a "
            f"registered server name, got {type(spec).__name__}",
            parameter=parameter, expected="dict | str", got=type(spec).__name__,
        )


_registry: dict[str, MCPServerConfig] = {}
_lock = threading.Lock()


def register_mcp_server(name: str, config: Mapping[str, Any] | str | MCPServerConfig) -> MCPServerConfig:
    """Make ``name`` usable wherever a server is expected (``mcp_server="research_tools"``).

    Example:
        >>> import sys
        >>> cfg = register_mcp_server("clock", {"command": sys.executable, "args": ["-m", "mcp_server_time"]})
        >>> MCPServerConfig.from_any("clock").name
        'clock'
        >>> unregister_mcp_server("clock")
    """
    if isinstance(config, Mapping):
        config = {**config, "name": config.get("name") or name}
    cfg = MCPServerConfig.from_any(config, owner="register_mcp_server", parameter="config")
    if cfg.name != name:
        cfg = MCPServerConfig(name=name, command=cfg.command, args=cfg.args, env=cfg.env, cwd=cfg.cwd, url=cfg.url,
                              capabilities=cfg.capabilities)
    with _lock:
        _registry[name] = cfg
    return cfg


def register_mcp_servers(mapping: Mapping[str, Mapping[str, Any] | str]) -> list[MCPServerConfig]:
    """Register several servers at once (a pattern's ``mcp_config`` dict)."""
    return [register_mcp_server(n, c) for n, c in mapping.items()]


def unregister_mcp_server(name: str) -> None:
    """Forget a registered server name (no error if unknown)."""
    with _lock:
        _registry.pop(name, None)


def registered_mcp_servers() -> dict[str, MCPServerConfig]:
    """A copy of the registry."""
    with _lock:
        return dict(_registry)


def server_capabilities(spec: Any) -> frozenset[str]:
    """What using the server ``spec`` needs: ``host_process`` (a command) or ``network`` (a URL).

    An unusable or unknown spec needs nothing here; it fails, or is checked, when used.
    """
    try:
        cfg = MCPServerConfig.from_any(spec)
    except NodeConfigurationError:
        return frozenset()
    return frozenset({"network"} if cfg.transport == "http" else {"host_process"})


_SECRET_FLAG_WORDS = ("key", "token", "secret", "password", "passwd", "pwd", "auth", "credential", "cookie", "bearer")


def _secret_flag(arg: str) -> bool:
    return arg.startswith("-") and any(w in arg.lower() for w in _SECRET_FLAG_WORDS)


def _masked_args(args: tuple[str, ...]) -> list[str]:
    """``args`` with the value after (or ``=``-joined to) a secret-named flag as ``***``."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if i and _secret_flag(args[i - 1]) and "=" not in args[i - 1] and not arg.startswith("-"):
            out.append("***")
        elif "=" in arg and _secret_flag(arg.split("=", 1)[0]):
            out.append(arg.split("=", 1)[0] + "=***")
        else:
            out.append(arg)
    return out

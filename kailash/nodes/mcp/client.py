"""MCPClientNode and the sync tool helpers agents use: list and call tools, read resources.

Talks to real MCP servers through the official SDK over stdio or streamable HTTP,
reusing one session per server (see :mod:`._sessions`). Results come back as plain
JSON-ready dicts. Failures raise :class:`MCPServerError` (cannot start, handshake,
connection lost) or :class:`MCPToolError` (unknown tool, wrong arguments, the tool
raised), naming the node, the server and the tool.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from kailash.errors import KailashError, NodeConfigurationError
from kailash.nodes import calls
from kailash.nodes.base import Node, NodeParameter, register_node
from kailash.nodes.capabilities import current_tenant, require
from kailash.nodes.mcp._sessions import get_pool, require_mcp
from kailash.nodes.mcp.servers import MCPServerConfig, MCPServerError, MCPToolError, server_capabilities
from kailash.security.secrets import redact

__all__ = ["MCPClientNode", "list_tools", "call_tool", "list_resources", "read_resource"]

DEFAULT_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 30.0


def _prefix(owner: str | None) -> str:
    return f"{owner}: " if owner else ""


def _run(config: MCPServerConfig, op: str, body: Any, *, timeout: float, connect_timeout: float,
         owner: str | None, tool: str | None = None) -> Any:
    """Run ``body(session)`` for ``config``'s session on the pool, translating failures.

    For a gateway tenant, a stdio server (a command on the host, run as the gateway's
    user) needs the ``host_process`` capability and an HTTP server ``network``; the
    check is here, where every MCP call passes, so agents' tool calls are held too.
    """
    if config.transport == "stdio":
        require("host_process", who=owner or "MCP client", parameter="server_config",
                what=f"starting MCP server {config.describe()} as a command on the gateway's machine")
    else:
        require("network", who=owner or "MCP client", parameter="server_config",
                what=f"connecting to MCP server {config.describe()}")
    require_mcp()
    pool = get_pool()
    scope = current_tenant()
    if (scope.tenant_id if scope is not None else None) != config.tenant:  # a tenant's own sessions
        config = dataclasses.replace(config, tenant=scope.tenant_id if scope is not None else None)
    hidden = config.secret_values()  # a server may quote its credentials (an error, its stderr): never shown
    if hidden:
        from kailash.security.secrets import current_run_secrets

        run_secrets = current_run_secrets()
        if run_secrets is not None:
            run_secrets.add_values(hidden)

    async def work() -> Any:
        session = await pool.session(config, connect_timeout)
        return await body(session)

    try:
        try:
            return pool.submit(work, timeout + connect_timeout)
        except (MCPServerError, MCPToolError) as exc:
            exc.message = _prefix(owner) + exc.message
            exc.args = (exc.message,)
            raise
        except Exception as exc:
            if not isinstance(exc, TimeoutError) and not _is_timeout(exc):
                _translate(exc, config, op, owner, tool, pool)
            raise MCPServerError(
                f"{_prefix(owner)}MCP server {config.describe()} did not answer {op}"
                f"{f' for tool {tool!r}' if tool else ''} within {timeout:g}s",
                server=config.name, expected=f"an answer within {timeout:g}s",
            ) from None
    except (MCPServerError, MCPToolError) as exc:
        if hidden:
            exc.message = redact(exc.message, hidden)
            exc.args = (exc.message,)
        raise


def _is_timeout(exc: BaseException) -> bool:
    from mcp.shared.exceptions import MCPError
    from mcp_types import REQUEST_TIMEOUT

    return isinstance(exc, MCPError) and exc.code == REQUEST_TIMEOUT


def _translate(exc: Exception, config: MCPServerConfig, op: str, owner: str | None, tool: str | None,
               pool: Any) -> None:
    """Raise the Kailash error for a failure that is not a timeout."""
    from mcp.shared.exceptions import MCPError

    if isinstance(exc, MCPError) and tool is not None:
        raise MCPToolError(
            f"{_prefix(owner)}MCP server {config.describe()} refused tool {tool!r}: {exc}",
            server=config.name, tool=tool,
        ) from exc
    if isinstance(exc, MCPError):
        raise MCPServerError(f"{_prefix(owner)}MCP server {config.describe()} failed {op}: {exc}",
                             server=config.name) from exc
    pool._loop.call_soon_threadsafe(pool.mark_broken, config)
    tail = pool.stderr_tail(config)
    raise MCPServerError(
        f"{_prefix(owner)}connection to MCP server {config.describe()} failed during {op}: "
        f"{type(exc).__name__}: {exc}" + (f"; server stderr: {tail[-300:]}" if tail else ""),
        server=config.name,
    ) from exc


def list_tools(server: Any, *, timeout: float = DEFAULT_TIMEOUT, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
               owner: str | None = None) -> list[dict[str, Any]]:
    """The server's tools as ``[{"name", "description", "input_schema"}]``."""
    cfg = MCPServerConfig.from_any(server, owner=owner or "list_tools")

    async def body(session: Any) -> list[dict[str, Any]]:
        result = await session.list_tools()
        return [{"name": t.name, "description": t.description or "", "input_schema": t.input_schema or {}}
                for t in result.tools]

    return _run(cfg, "list_tools", body, timeout=timeout, connect_timeout=connect_timeout, owner=owner)


def call_tool(server: Any, tool_name: str, arguments: dict[str, Any] | None = None, *,
              timeout: float = DEFAULT_TIMEOUT, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
              owner: str | None = None, raise_on_error: bool = True) -> dict[str, Any]:
    """Call one tool; returns ``{"result", "content", "text", "is_error", "server", "tool_name"}``.

    ``result`` is the structured content when the tool gives one, else its text parsed as
    JSON when it is JSON, else the text.

    Raises:
        MCPToolError: the tool is unknown, the arguments are wrong, or it raised
            (unless ``raise_on_error`` is False, then ``is_error`` is True).
        MCPServerError: the server cannot be reached.
    """
    cfg = MCPServerConfig.from_any(server, owner=owner or "call_tool")

    async def body(session: Any) -> Any:
        return await session.call_tool(tool_name, dict(arguments or {}), read_timeout_seconds=timeout)

    report = calls.tool_call(cfg.name, tool_name, arguments) if calls._finder is not None else None  # run event
    try:
        result = _run(cfg, "call_tool", body, timeout=timeout, connect_timeout=connect_timeout, owner=owner,
                      tool=tool_name)
    except BaseException as exc:
        if report is not None:
            report.done(False, str(exc) if isinstance(exc, KailashError) else f"{type(exc).__name__}: {exc}")
        raise
    content = [_block(b) for b in result.content or []]
    text = "\n".join(b["text"] for b in content if b.get("type") == "text")
    out = {"result": _value(result.structured_content, text), "content": content, "text": text,
           "is_error": bool(result.is_error), "server": cfg.name, "tool_name": tool_name}
    shown = redact(text[:500], cfg.secret_values()) if result.is_error else ""
    if report is not None:
        report.done(not result.is_error, f"the tool reported an error: {shown}" if result.is_error else None)
    if result.is_error and raise_on_error:
        raise MCPToolError(
            f"{_prefix(owner)}MCP tool {tool_name!r} on server {cfg.describe()} failed: {shown}",
            server=cfg.name, tool=tool_name, got=shown[:200],
        )
    return out


def list_resources(server: Any, *, timeout: float = DEFAULT_TIMEOUT,
                   connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, owner: str | None = None) -> list[dict[str, Any]]:
    """The server's resources as ``[{"uri", "name", "description", "mime_type"}]``."""
    cfg = MCPServerConfig.from_any(server, owner=owner or "list_resources")

    async def body(session: Any) -> list[dict[str, Any]]:
        result = await session.list_resources()
        return [{"uri": str(r.uri), "name": r.name, "description": r.description or "",
                 "mime_type": r.mime_type} for r in result.resources]

    return _run(cfg, "list_resources", body, timeout=timeout, connect_timeout=connect_timeout, owner=owner)


def read_resource(server: Any, uri: str, *, timeout: float = DEFAULT_TIMEOUT,
                  connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, owner: str | None = None) -> dict[str, Any]:
    """Read one resource: ``{"contents": [{"uri", "mime_type", "text"|"blob"}], "text"}``."""
    cfg = MCPServerConfig.from_any(server, owner=owner or "read_resource")

    async def body(session: Any) -> Any:
        return await session.read_resource(uri)

    result = _run(cfg, "read_resource", body, timeout=timeout, connect_timeout=connect_timeout, owner=owner,
                  tool=None)
    contents = []
    for c in result.contents:
        item: dict[str, Any] = {"uri": str(c.uri), "mime_type": getattr(c, "mime_type", None)}
        if getattr(c, "text", None) is not None:
            item["text"] = c.text
        else:
            item["blob"] = getattr(c, "blob", None)
        contents.append(item)
    return {"contents": contents, "text": "\n".join(c["text"] for c in contents if "text" in c)}


def _block(block: Any) -> dict[str, Any]:
    data = block.model_dump(mode="json", exclude_none=True) if hasattr(block, "model_dump") else dict(block)
    return {k: v for k, v in data.items() if k not in ("annotations", "meta", "_meta")}


def _value(structured: Any, text: str) -> Any:
    if structured is not None:
        if isinstance(structured, dict) and set(structured) == {"result"}:
            return structured["result"]  # the SDK wraps non-object returns as {"result": ...}
        return structured
    from kailash.nodes.ai.providers.base import read_json

    try:
        return read_json(text)
    except (TypeError, ValueError):  # not JSON, or hostile JSON (too deep, NaN): the text as it came
        return text


@register_node()
class MCPClientNode(Node):
    """Talk to an MCP server: list or call its tools, list or read its resources.

    Example:
        >>> import sys
        >>> node = MCPClientNode()
        >>> out = node.execute(server_config={"name": "time", "command": sys.executable,
        ...                                   "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]},
        ...                    operation="call_tool", tool_name="get_current_time",
        ...                    tool_arguments={"timezone": "UTC"})
        >>> out["result"]["timezone"]
        'UTC'
    """

    capabilities = frozenset({"host_process", "network"})

    primary_output = "result"
    OPERATIONS = ("list_tools", "call_tool", "list_resources", "read_resource")

    def required_capabilities(self) -> frozenset[str]:
        """``host_process`` for a command, ``network`` for a URL (a server given at run time is checked then)."""
        spec = self.config.get("server_config")
        return server_capabilities(spec) if spec is not None else frozenset()

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "server_config": NodeParameter(type=Any, required=True,
                                           description="{'name', 'command', 'args', 'env'}, {'url'}, a URL or a "
                                                       "registered server name"),
            "operation": NodeParameter(type=str, default="list_tools",
                                       choices=("list_tools", "call_tool", "list_resources", "read_resource"),
                                       description="what to ask the server"),
            "tool_name": NodeParameter(type=str, description="the tool to call (call_tool)"),
            "tool_arguments": NodeParameter(type=dict, default=None, description="the tool's arguments (call_tool)"),
            "resource_uri": NodeParameter(type=str, description="the resource to read (read_resource)"),
            "timeout": NodeParameter(type=float, default=DEFAULT_TIMEOUT, minimum=0, description="seconds per request"),
            "connect_timeout": NodeParameter(type=float, default=DEFAULT_CONNECT_TIMEOUT,
                                             description="seconds to start and greet the server"),
            "raise_on_error": NodeParameter(type=bool, default=True,
                                            description="raise when a tool reports an error (else is_error=True)"),
        }

    def run(self, **kw: Any) -> dict[str, Any]:
        owner = f"node {self.label} (MCPClientNode)"
        op = kw.get("operation") or "list_tools"
        if op not in self.OPERATIONS:
            raise NodeConfigurationError(
                f"{owner}: parameter 'operation' got '{op}', expected one of {', '.join(self.OPERATIONS)}",
                node_id=self.name, parameter="operation", expected=self.OPERATIONS, got=op,
            )
        cfg = MCPServerConfig.from_any(kw.get("server_config"), owner=owner)
        timing: dict[str, Any] = {"timeout": float(kw.get("timeout") or DEFAULT_TIMEOUT),
                                  "connect_timeout": float(kw.get("connect_timeout") or DEFAULT_CONNECT_TIMEOUT),
                                  "owner": owner}
        if op == "list_tools":
            tools = list_tools(cfg, **timing)
            return {"result": tools, "tools": tools, "server": cfg.name}
        if op == "list_resources":
            resources = list_resources(cfg, **timing)
            return {"result": resources, "resources": resources, "server": cfg.name}
        if op == "read_resource":
            uri = kw.get("resource_uri")
            if not uri:
                raise NodeConfigurationError(f"{owner}: operation 'read_resource' needs parameter 'resource_uri'",
                                             node_id=self.name, parameter="resource_uri", expected="a resource URI")
            out = read_resource(cfg, uri, **timing)
            return {"result": out["text"], "contents": out["contents"], "server": cfg.name}
        tool = kw.get("tool_name")
        if not tool:
            raise NodeConfigurationError(f"{owner}: operation 'call_tool' needs parameter 'tool_name'",
                                         node_id=self.name, parameter="tool_name", expected="a tool name")
        args = kw.get("tool_arguments") or {}
        raise_on_error = kw.get("raise_on_error")
        return call_tool(cfg, tool, args, raise_on_error=True if raise_on_error is None else bool(raise_on_error),
                         **timing)

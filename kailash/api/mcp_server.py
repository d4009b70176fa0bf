"""Serve workflows as MCP tools: each workflow becomes one tool that runs it.

:func:`build_workflow_mcp_server` turns workflows (objects or saved YAML/JSON files)
into an ``mcp`` SDK ``MCPServer``: one tool per workflow, named after it, whose
arguments are the entry nodes' parameters (plus ``parameters`` for per-node values),
and one resource per workflow with its definition. :func:`serve_workflows_mcp` runs
that server over stdio or streamable HTTP — the ``kailash mcp serve FILE...`` command.

Serving sits in ``api`` with the other ways of serving workflows: it loads files and
runs workflows (through ``runtime=``, by default a ``LocalRuntime`` imported when a
server is built), so importing it stays cheap. The MCP *client* stays in
:mod:`kailash.nodes.mcp`.
"""

from __future__ import annotations

import inspect
import json
import keyword
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kailash.errors import KailashError, NodeConfigurationError

__all__ = ["build_workflow_mcp_server", "code_inputs", "serve_workflows_mcp", "workflow_tool_schema"]

_JSON_TYPES = {str: str, int: int, float: float, bool: bool, list: list, dict: dict}


def _load(item: Any) -> Any:
    if isinstance(item, (str, Path)):
        from kailash.workflow import Workflow  # lazy: importing this module stays cheap

        return Workflow.load(item)
    if hasattr(item, "nodes") and hasattr(item, "connections"):
        return item
    raise NodeConfigurationError(
        f"serve_workflows_mcp: expected a Workflow or a path to a saved workflow, got {type(item).__name__}",
        parameter="workflows", expected="Workflow | path", got=type(item).__name__,
    )


def _tool_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "workflow"
    return cleaned[:64]


_CODE_PARAMS = ("code", "imports", "security_config", "function")  # a code node's program, not its data


def code_inputs(node: Any) -> list[tuple[str, bool]] | None:
    """The inputs a code node really reads: ``[(name, required)]``; ``None`` for other nodes.

    For a node made with ``from_function``: the function's parameters (required unless
    they have a default). For code text: its free variables — names it reads but never
    binds, that are neither builtins, nor modules from ``imports``, nor ``result``.
    """
    import builtins
    import symtable
    import textwrap

    fn = getattr(node, "_function", None)
    if fn is not None and not node.config.get("code"):
        return [(n, p.default is inspect.Parameter.empty) for n, p in inspect.signature(fn).parameters.items()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    code = node.config.get("code")
    if not isinstance(code, str) or "code" not in getattr(node, "parameters", {}):
        return None
    try:
        table = symtable.symtable("def __kx__():\n" + textwrap.indent(code, "    ") + "\n    pass\n", "<code>", "exec")
    except SyntaxError:
        return None
    imported = {str(spec).partition(" as ")[2].strip() or str(spec).split(".")[0].strip()
                for spec in node.config.get("imports") or ()}
    skip = set(dir(builtins)) | imported | {"result", "__kailash_unset__"}
    found: dict[str, None] = {}

    def walk(t: Any, bound: set[str]) -> None:
        local = {s.get_name() for s in t.get_symbols() if s.is_assigned() or s.is_imported() or s.is_parameter()}
        for sym in t.get_symbols():
            name = sym.get_name()
            if sym.is_referenced() and (sym.is_global() or sym.is_free()) and name not in bound | local | skip:
                found.setdefault(name)
        for child in t.get_children():
            walk(child, bound | local)

    for child in table.get_children():
        walk(child, set())
    return [(n, True) for n in found]


def workflow_tool_schema(workflow: Any) -> list[tuple[str, Any, bool, str]]:
    """The tool arguments a workflow takes: ``(name, python_type, required, description)``.

    Every parameter of an entry node (a node with no incoming connection) that its
    config does not already set becomes an argument; secrets never do. For a code
    node, its real inputs: the variables its code reads (see :func:`code_inputs`), not
    its ``code``/``imports``.
    """
    targets = {c.target for c in workflow.connections}
    args: dict[str, tuple[str, Any, bool, str]] = {}
    for node_id, node in workflow.nodes.items():
        if node_id in targets:
            continue
        reads = code_inputs(node)
        if reads is not None:
            for pname, needed in reads:
                if pname in node.config or not pname.isidentifier() or keyword.iskeyword(pname) \
                        or pname == "parameters":
                    continue
                prev = args.get(pname)
                # optional in the schema: the value may also come through "parameters" by node id
                desc = f"{node_id}: an input its code reads" + (" (needed, here or in parameters)" if needed else "")
                args[pname] = (pname, Any, False, f"{prev[3]}; {desc}" if prev else desc)
            continue
        for pname, p in node.parameters.items():
            if p.secret or pname in node.config or not pname.isidentifier() or keyword.iskeyword(pname) \
                    or pname == "parameters":
                continue
            tp = _JSON_TYPES.get(p.type) if isinstance(p.type, type) else None
            if tp is None:  # only JSON-typed inputs become arguments; others go through "parameters"
                continue
            required = p.required and p.default is None
            prev = args.get(pname)
            desc = f"{node_id}: {p.description}" if p.description else node_id
            if prev is not None:  # offered to every entry node that takes it
                required = required or prev[2]
                desc = f"{prev[3]}; {desc}"
            args[pname] = (pname, tp, required, desc)
    return list(args.values())


def _make_tool(workflow: Any, runtime: Any) -> Any:
    from typing import Annotated

    import anyio
    from pydantic import Field

    params = []
    for pname, tp, required, desc in workflow_tool_schema(workflow):
        kind = tp if required or tp is Any else tp | None
        ann = Annotated[kind, Field(description=desc)]  # type: ignore[valid-type]
        params.append(inspect.Parameter(pname, inspect.Parameter.KEYWORD_ONLY, annotation=ann,
                                        default=inspect.Parameter.empty if required else None))
    per_node = Annotated[dict[str, dict[str, Any]] | None,
                         Field(description="values by node id: {node_id: {parameter: value}}")]
    params.append(inspect.Parameter("parameters", inspect.Parameter.KEYWORD_ONLY, annotation=per_node, default=None))

    async def run_workflow(**kwargs: Any) -> dict[str, Any]:
        merged: dict[str, Any] = dict(kwargs.pop("parameters", None) or {})
        merged.update({k: v for k, v in kwargs.items() if v is not None})
        _refuse_overrides(workflow, merged)
        try:
            results, run_id = await anyio.to_thread.run_sync(lambda: runtime.execute(workflow, parameters=merged))
        except KailashError as exc:  # the client sees which node failed and why (the SDK hides other errors)
            from mcp.server.mcpserver.exceptions import ToolError

            raise ToolError(f"workflow '{workflow.name}' failed: {exc}") from exc
        return {"run_id": run_id, "results": json.loads(json.dumps(results, default=str))}

    run_workflow.__signature__ = inspect.Signature(params, return_annotation=dict[str, Any])  # type: ignore[attr-defined]
    run_workflow.__annotations__ = {p.name: p.annotation for p in params} | {"return": dict[str, Any]}
    return run_workflow


def _refuse_overrides(workflow: Any, parameters: dict[str, Any]) -> None:
    """A tool call supplies data, like a gateway run: it may not replace the workflow's code, SQL, URLs,
    files or sub-workflows unless the workflow allows it (``metadata["allow_overrides"]``)."""
    from mcp.server.mcpserver.exceptions import ToolError

    from kailash.api.overrides import refuse_overrides, workflow_allowed
    from kailash.api.responses import ApiError

    try:
        refuse_overrides(workflow, workflow.compile().prepare(parameters), workflow_allowed(workflow))
    except ApiError as exc:
        raise ToolError(f"workflow '{workflow.name}': {exc.message}") from None
    except KailashError as exc:
        raise ToolError(f"workflow '{workflow.name}' failed: {exc}") from exc


def _reader(text: str) -> Any:
    def read() -> str:
        return text

    return read


def build_workflow_mcp_server(
    workflows: Any,
    *,
    name: str = "kailash-workflows",
    runtime: Any = None,
) -> Any:
    """An ``MCPServer`` exposing each workflow as a tool (and its definition as a resource).

    Args:
        workflows: a Workflow, a path to a saved workflow, a list of those, or a mapping
            ``{tool_name: workflow_or_path}``.
        name: the server's name.
        runtime: what runs the workflows (``execute(workflow, parameters=) -> (results, run_id)``);
            default a ``LocalRuntime``.

    Raises:
        NodeConfigurationError: an item is not a workflow or path, or two tools share a name.
    """
    try:
        from mcp.server.mcpserver import MCPServer
    except ImportError as exc:
        raise ImportError("serving workflows over MCP needs the MCP SDK: pip install 'kailash[mcp]'") from exc
    if runtime is None:
        from kailash.runtime import LocalRuntime  # lazy: importing this module stays cheap

        runtime = LocalRuntime()
    items: list[tuple[str | None, Any]]
    if isinstance(workflows, Mapping):
        items = [(str(k), _load(v)) for k, v in workflows.items()]
    else:
        seq = workflows if isinstance(workflows, Iterable) and not isinstance(workflows, (str, Path)) else [workflows]
        items = [(None, _load(w)) for w in seq]
    server = MCPServer(name, instructions="Each tool runs one Kailash workflow and returns its results.")
    seen: set[str] = set()
    for given, wf in items:
        tool = _tool_name(given or wf.name)
        if tool in seen:
            raise NodeConfigurationError(
                f"serve_workflows_mcp: two workflows would both be served as tool '{tool}'; pass a mapping "
                "{tool_name: workflow} to name them", parameter="workflows", expected="unique workflow names", got=tool,
            )
        seen.add(tool)
        nodes = ", ".join(wf.nodes)
        description = wf.description or \
            f"Run the Kailash workflow '{wf.name}' (nodes: {nodes}) and return each node's outputs"
        server.add_tool(_make_tool(wf, runtime), name=tool, description=description, structured_output=True)
        definition = json.dumps(wf.to_dict(), default=str, indent=2)
        server.resource(f"kailash://workflows/{tool}", name=tool, description=f"definition of workflow '{wf.name}'",
                        mime_type="application/json")(_reader(definition))
    return server


def serve_workflows_mcp(
    workflows: Any,
    *,
    transport: str = "stdio",
    host: str = "127.0.0.1",
    port: int = 8765,
    name: str = "kailash-workflows",
    runtime: Any = None,
) -> None:
    """Serve workflows as MCP tools until stopped (``kailash mcp serve FILE...``).

    Args:
        workflows: see :func:`build_workflow_mcp_server` (paths from the command line work).
        transport: ``"stdio"`` (for MCP clients that launch the command) or ``"http"``
            (streamable HTTP at ``http://host:port/mcp``).
        host: interface for HTTP.
        port: port for HTTP (0 picks a free one).
        name: the server's name.
        runtime: what runs the workflows; default a ``LocalRuntime``.
    """
    server = build_workflow_mcp_server(workflows, name=name, runtime=runtime)
    if transport == "stdio":
        server.run()
    elif transport in ("http", "streamable-http"):
        server.run("streamable-http", host=host, port=port)
    else:
        raise NodeConfigurationError(
            f"serve_workflows_mcp: parameter 'transport' got '{transport}', expected 'stdio' or 'http'",
            parameter="transport", expected="stdio | http", got=transport,
        )

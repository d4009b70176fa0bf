"""``kailash mcp serve FILE...``: serve saved workflows as MCP tools (stdio or streamable HTTP)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_subcommand", "cmd_mcp_serve"]


def cmd_mcp_serve(args: argparse.Namespace) -> int:
    from kailash.errors import KailashError
    from kailash.runtime import LocalRuntime
    from kailash.workflow.graph import Workflow

    workflows: dict[str, Any] = {}
    for file in args.files:
        try:
            wf = Workflow.load(file)
            wf.compile()
        except (KailashError, OSError) as exc:
            sys.stderr.write(f"error: {file}: {exc}\n")
            return 2
        workflows[wf.name if wf.name not in workflows else file] = wf
    try:
        from kailash.api.mcp_server import serve_workflows_mcp
    except ImportError as exc:
        text = str(exc) if "pip install" in str(exc) else f"{exc} (pip install 'kailash[mcp]')"
        sys.stderr.write(f"error: {text}\n")
        return 3  # the environment: an extra is missing (exit codes: kailash.cli.main)
    if args.transport == "http":
        sys.stderr.write(f"serving {len(workflows)} workflow(s) as MCP tools at http://{args.host}:{args.port}/mcp\n")
    serve_workflows_mcp(workflows, transport=args.transport, host=args.host, port=args.port, name=args.name,
                        runtime=LocalRuntime())
    return 0


def add_subcommand(subparsers: Any) -> None:
    p = subparsers.add_parser("mcp", help="Model Context Protocol: serve workflows as MCP tools")
    sub = p.add_subparsers(dest="mcp_command", required=True)
    s = sub.add_parser("serve", help="serve saved workflows as MCP tools")
    s.add_argument("files", nargs="+", metavar="FILE")
    s.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8765)
    s.add_argument("--name", default="kailash-workflows", help="the MCP server's name")
    s.set_defaults(func=cmd_mcp_serve)

"""``kailash schema [--out FILE] [--import MODULE]``: the JSON Schema of the workflow file format.

Editors validate workflow YAML/JSON files against it (types, enums and ranges of every
node's config). ``--import`` first imports modules that define custom node types, so their
config is described too. Exit codes: 0 written, 2 bad input (a module that does not import,
an unwritable file).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_subcommand", "cmd_schema"]


def add_subcommand(subparsers: Any) -> None:
    """Add ``schema`` to the ``kailash`` command's subparsers."""
    p = subparsers.add_parser("schema", help="print the JSON Schema of the workflow file format (for editors)")
    p.add_argument("--out", help="write it to this file instead of standard output")
    p.add_argument("--import", dest="modules", action="append", default=[], metavar="MODULE",
                   help="import this module first (custom node types); repeatable")
    p.set_defaults(func=cmd_schema)


def cmd_schema(args: argparse.Namespace) -> int:
    import importlib
    import json

    from kailash.workflow.schema import workflow_schema

    for name in args.modules:
        try:
            importlib.import_module(name)
        except Exception as exc:
            print(f"error: cannot import {name!r}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
    text = json.dumps(workflow_schema(), indent=2, sort_keys=False) + "\n"
    if not args.out:
        sys.stdout.write(text)
        return 0
    try:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        print(f"error: cannot write {args.out!r}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}", file=sys.stderr)
    return 0

"""Subcommands contributed by other parts of Kailash (export, serve, mcp, tenant, schedule, schema).

Each module named here defines ``add_subcommand(subparsers)`` and imports nothing
heavy at module level; a module that is not present is simply not offered.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["add_subcommands", "MODULES"]

MODULES = (
    "kailash.cli.export",
    "kailash.cli.serve",
    "kailash.cli.mcp",
    "kailash.cli.tenant",
    "kailash.cli.schedule",
    "kailash.cli.schema",
)


def add_subcommands(subparsers: Any) -> None:
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.add_subcommand(subparsers)

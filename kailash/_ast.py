"""Thread-safe wrappers for ``ast.parse`` and ``compile`` of an AST.

CPython 3.11 before 3.11.8 keeps the AST converter's recursion counter in shared
state, so two threads parsing at once can fail with "SystemError: AST constructor
recursion depth mismatch" (cpython gh-106905). Kailash compiles code in runtime worker
threads and gateway threads, so every parse and AST compile goes through one lock.
The cost is a lock acquire per compile; compiled code is cached by its users.
"""

from __future__ import annotations

import ast
import threading
from typing import Any

__all__ = ["parse", "compile_ast", "AST_LOCK"]

AST_LOCK = threading.RLock()


def parse(source: str, filename: str = "<unknown>", mode: str = "exec") -> Any:
    with AST_LOCK:
        return ast.parse(source, filename=filename, mode=mode)


def compile_ast(tree: Any, filename: str, mode: str) -> Any:
    with AST_LOCK:
        return compile(tree, filename, mode)

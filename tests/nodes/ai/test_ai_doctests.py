"""The examples in the AI and MCP modules' docstrings run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "kailash.nodes.ai.embeddings", "kailash.nodes.ai.cache", "kailash.nodes.ai.memory",
    "kailash.nodes.ai.a2a", "kailash.nodes.ai.convergence", "kailash.nodes.ai.self_organizing",
    "kailash.nodes.ai.llm_agent", "kailash.nodes.ai.providers", "kailash.nodes.ai.providers.offline",
    "kailash.nodes.ai.providers.openai", "kailash.nodes.ai.providers.local", "kailash.nodes.mcp.servers", "kailash.nodes.mcp.client",
]


@pytest.mark.parametrize("name", MODULES)
def test_module_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"

"""The docstring examples of the security modules run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["kailash.security.config", "kailash.security.paths", "kailash.security.secrets", "kailash.security.audit",
           "kailash.security.sandbox", "kailash.nodes.mixins"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0

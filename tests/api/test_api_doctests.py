"""The docstring examples of the gateway's modules run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["kailash.api.crosssite", "kailash.api.limits", "kailash.api.middleware", "kailash.api.workflow_api"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0

"""Every docstring example in the package runs and holds.

The modules are found by walking the package, so a new module's examples are run without
registering it here; a module without examples is simply not collected.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import kailash

_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(kailash.__path__, "kailash."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        tests = doctest.DocTestFinder(exclude_empty=True).find(module, info.name)
        if any(test.examples for test in tests):
            names.append(info.name)
    return names


MODULES = _modules_with_examples()


def test_the_package_has_examples():
    assert len(MODULES) >= 20


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=_FLAGS, report=True)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"

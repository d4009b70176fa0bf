"""Helpers shared by the security tests (policies with real directories, a sandbox runner)."""

from __future__ import annotations

import uuid

from kailash.security import SecurityConfig
from kailash.security.sandbox import run_sandboxed


def make_config(allowed, isolation="auto", **overrides):
    settings = dict(allowed_directories=[str(allowed)], execution_timeout=5.0, memory_limit=256 * 1024 * 1024,
                    max_file_size=1024 * 1024, isolation=isolation)
    settings.update(overrides)
    return SecurityConfig(**settings)


class Runner:
    """Runs code in the sandbox under one policy, each test with its own node key."""

    def __init__(self, config):
        self.config = config
        self.key = f"test-{uuid.uuid4().hex}"

    def __call__(self, code, inputs=None, *, config=None, imports=(), key=None):
        return run_sandboxed(key or self.key, code, list(imports), dict(inputs or {}), config or self.config,
                             "sandboxed")

    def healthy(self):
        """The host can still run sandboxed code on this node (the worker was replaced if needed)."""
        return self("result = 1 + 1") == 2

"""The sandbox package's layout: a worker process never loads the host side.

A worker imports ``kailash.security.sandbox.worker``, which runs the package's
``__init__``; that ``__init__`` only re-exports lazily, so the host-side pool (with its
atexit and at-fork hooks), the host and the runner stay out of the worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import kailash.security.sandbox as sandbox

WORKER_IMPORTS = """
import json, sys
import kailash.security.sandbox.worker
from kailash.security.sandbox.worker import _warm_up
_warm_up([])
print(json.dumps(sorted(m for m in sys.modules if m.startswith("kailash"))))
"""


def test_a_worker_loads_no_host_side_module():
    root = os.path.dirname(os.path.dirname(os.path.abspath(sandbox.__file__)))
    root = os.path.dirname(os.path.dirname(root))
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {root!r})\n" + WORKER_IMPORTS],
                         capture_output=True, text=True, check=True, timeout=60)
    loaded = set(json.loads(out.stdout))
    assert "kailash.security.sandbox.worker" in loaded and "kailash.security.sandbox.guards" in loaded
    for host_side in ("runner", "pool", "host"):
        assert f"kailash.security.sandbox.{host_side}" not in loaded
    assert not any(m.startswith(("kailash.runtime", "kailash.workflow", "kailash.nodes", "kailash.api")) for m in loaded)


def test_the_package_keeps_its_public_names():
    for name in sandbox.__all__:
        assert getattr(sandbox, name) is not None
    assert sandbox.run_sandboxed.__module__ == "kailash.security.sandbox.runner"
    assert "sandbox_info" in dir(sandbox)

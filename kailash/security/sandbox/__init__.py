"""The code sandbox: run PythonCodeNode code outside the host process.

:func:`run_sandboxed` is the one entry point. Under a :class:`SecurityConfig` the
code runs in a *worker* process forked from a pre-started template (one template per
policy), in a bounded pool of workers per policy that each host many nodes' ``self``
states (:mod:`~kailash.security.sandbox.pool`). The layers, outermost first:

1. OS isolation (:mod:`~kailash.security.sandbox.files`): under bubblewrap an empty
   read-only root showing only the interpreter, its libraries, the ``kailash`` package,
   the allowed modules and the allowed directories, with no network and its own PID
   namespace and ``/proc``; in every mode Landlock confines the worker to the same
   paths. ``isolation="bwrap"`` and tenant policies refuse to run without bubblewrap;
   ``"auto"`` falls back to ``"process"`` with a WARNING and an audit event.
2. Kernel limits (:mod:`~kailash.security.sandbox.isolation`): ``RLIMIT_AS``, ``RLIMIT_CPU``,
   ``RLIMIT_FSIZE``, no core dumps, no capabilities, not dumpable, and a seccomp filter
   refusing fork/exec, sockets, signals to other processes and raising limits.
3. A wall-clock ``execution_timeout`` enforced by the host, which kills the worker
   (the state of the nodes it hosted is then reset) and replaces it at the next call.
4. Python guards: static checks (:mod:`~kailash.security.sandbox.policy`), restricted
   builtins and module snapshots plus an audit hook (:mod:`~kailash.security.sandbox.guards`).

Only plain data crosses back (:mod:`~kailash.security.sandbox.wire`). The host survives
every failure of a worker: it sees a closed socket or a timeout, never shared state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kailash._lazy import lazy_exports

if TYPE_CHECKING:
    from kailash.security.sandbox.guards import DEFAULT_ALLOWED_IMPORTS
    from kailash.security.sandbox.runner import (
        prestart_sandbox,
        release_sandbox,
        release_sandbox_later,
        run_sandboxed,
        sandbox_info,
        shutdown_sandboxes,
    )
    from kailash.security.sandbox.runner import (
        run_unguarded_for_tests as run_unguarded_for_tests,  # not public; tests reach it here
    )

__all__ = ["run_sandboxed", "release_sandbox", "release_sandbox_later", "shutdown_sandboxes", "prestart_sandbox", "sandbox_info",
           "DEFAULT_ALLOWED_IMPORTS"]

# Lazy, so that a worker process importing ``kailash.security.sandbox.worker`` loads only
# the modules it needs and never the host side (the pool, its atexit and at-fork hooks).
_EXPORTS = {name: "kailash.security.sandbox.runner" for name in __all__ if name != "DEFAULT_ALLOWED_IMPORTS"}
_EXPORTS["run_unguarded_for_tests"] = "kailash.security.sandbox.runner"
_EXPORTS["DEFAULT_ALLOWED_IMPORTS"] = "kailash.security.sandbox.guards"

__getattr__ = lazy_exports("kailash.security.sandbox", _EXPORTS, globals())


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

"""The workflow the crash tests kill: each node appends a line to a side-effect file.

Importable by the child process the tests start (``python crash_child.py``) and by the
test itself, which resumes the killed run with the same workflow.
"""

from __future__ import annotations

import os
import time
from typing import Any

from kailash.nodes.base import Node, NodeParameter
from kailash.workflow import Workflow

NODES = 10


class SideEffectNode(Node):
    """Appends ``"<i>\\n"`` to ``$KAILASH_CRASH_FILE``, sleeps ``$KAILASH_CRASH_PAUSE`` s, returns ``data + i``."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"i": NodeParameter(type=int, required=True), "data": NodeParameter(default=0)}

    def run(self, i: int, data: Any = 0) -> dict[str, Any]:
        time.sleep(float(os.environ.get("KAILASH_CRASH_PAUSE", "0.01")))
        with open(os.environ["KAILASH_CRASH_FILE"], "a") as f:
            f.write(f"{i}\n")
        return {"result": data * 2 + i, "trail": [i, f"n{i}"]}


class PeekNode(Node):
    """Reads the run store at ``path`` through a store of its own (so nothing is flushed for
    it) after ``pause`` s, and returns the ``running`` runs it sees."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"path": NodeParameter(type=str, required=True), "pause": NodeParameter(type=float, default=0.0),
                "data": NodeParameter(default=None), "token": NodeParameter(default=None)}

    def run(self, path: str, pause: float = 0.0, data: Any = None, token: Any = None) -> dict[str, Any]:
        from kailash.runtime.store import SQLiteRunStore

        time.sleep(pause)
        store = SQLiteRunStore(path)
        try:
            return {"seen": [r.to_dict() for r in store.list_runs(status="running")]}
        finally:
            store.close()


def crash_workflow(durability: str | None = None, *, agent: bool = False) -> Workflow:
    """``n0 -> n1 -> ... -> n9`` (``durability``: the workflow's own setting, in its metadata;
    ``agent``: an agent node ``ask`` first, whose model call goes into the record)."""
    wf = Workflow("crash", metadata={"durability": durability} if durability else None)
    if agent:
        from kailash.nodes.ai.llm_agent import LLMAgentNode

        wf.add_node("ask", LLMAgentNode(provider="offline"), prompt="What is the capital of France?")
    for i in range(NODES):
        wf.add_node(f"n{i}", SideEffectNode(), i=i)
        if i:
            wf.connect(f"n{i - 1}", f"n{i}", mapping={"result": "data"})
    return wf


def expected_results() -> dict[str, dict[str, Any]]:
    out, value = {}, 0
    for i in range(NODES):
        value = value * 2 + i
        out[f"n{i}"] = {"result": value, "trail": [i, f"n{i}"]}
    return out


if __name__ == "__main__":  # the child: crash_nodes.py STORE [DURABILITY] [KILL_AT_COMMIT]
    import signal
    import sys

    from kailash.runtime import LocalRuntime

    store, durability = sys.argv[1], sys.argv[2]
    kill_at = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    if kill_at:  # die inside the k-th log commit: rows sent to SQLite, COMMIT not reached
        from kailash.runtime import runlog

        calls = [0]
        commit = runlog.RunLog._commit

        def dying_commit(self: Any, statements: Any, together: bool, sync: bool) -> None:
            calls[0] += 1
            if calls[0] == kill_at:
                with self.store._lock:
                    conn = self.store._conn
                    conn.execute("BEGIN")
                    for sql, args in statements:
                        conn.execute(sql, args)
                    os.kill(os.getpid(), signal.SIGKILL)
            commit(self, statements, together, sync)

        runlog.RunLog._commit = dying_commit  # type: ignore[method-assign]
    wf = crash_workflow(agent=bool(os.environ.get("KAILASH_CRASH_AGENT")))
    runtime = LocalRuntime(store=store, durability=durability)
    wf.compile()  # the first compile imports the plan modules: not part of the run being killed
    print("START", flush=True)
    results, run_id = runtime.execute(wf)
    print("DONE", run_id, flush=True)

"""Each node's print output and log records are captured per run and node, bounded, redacted, stored."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from typing import Any

import pytest

from kailash.nodes.base import Node, NodeParameter
from kailash.nodes.base_async import AsyncNode
from kailash.nodes.code.python import PythonCodeNode
from kailash.runtime import LocalRuntime, ParallelRuntime
from kailash.runtime.capture import LIMIT
from kailash.security.secrets import Secret, reveal
from kailash.workflow import Workflow


class Talker(Node):
    """Prints ``lines`` lines and logs a warning."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"word": NodeParameter(type=str, default="hi"), "lines": NodeParameter(type=int, default=1),
                "fail": NodeParameter(type=bool, default=False)}

    def run(self, word: str, lines: int, fail: bool) -> dict[str, Any]:
        for i in range(lines):
            print(f"{word} {i}")
        logging.getLogger("talker").warning("%s warned", word)
        if fail:
            raise ValueError(f"{word} gave up")
        return {"word": word}


class Quiet(Node):
    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"word": NodeParameter(type=str, default="")}

    def run(self, word: str) -> dict[str, Any]:
        return {"word": word}


class Barrier(Node):
    """Prints, waits until every Barrier node has printed (so they run at once), prints again."""

    barrier: threading.Barrier | None = None

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"word": NodeParameter(type=str, default="")}

    def run(self, word: str) -> dict[str, Any]:
        for i in range(50):
            print(f"{word} before {i}")
        assert Barrier.barrier is not None
        Barrier.barrier.wait(10)
        for i in range(50):
            print(f"{word} after {i}")
        return {"word": word}


class Shouter(AsyncNode):
    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"word": NodeParameter(type=str, default="")}

    async def async_run(self, word: str) -> dict[str, Any]:
        print(f"async {word}")
        await asyncio.sleep(0.01)
        print(f"async {word} again", file=sys.stderr)
        return {"word": word}


class Leaker(Node):
    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"token": NodeParameter(type=str, required=True, secret=True)}

    def run(self, token: Any) -> dict[str, Any]:
        print(f"calling with token {reveal(token)}")
        logging.getLogger("leaker").error("rejected token %s", reveal(token))
        return {"ok": True}


def test_print_and_log_records_are_stored_per_node_and_still_printed(capsys, caplog):
    wf = Workflow("talk")
    wf.add_node("a", Talker(word="alpha", lines=2))
    wf.add_node("quiet", Quiet())
    wf.add_node("code", PythonCodeNode(code="print('sandboxed', data)\nresult = data"))  # runs in the sandbox
    wf.connect("a", "quiet")
    wf.connect("quiet", "code", mapping={"word": "data"})
    runtime = LocalRuntime()
    _, run_id = runtime.execute(wf)
    output = runtime.get_run(run_id).output
    assert output["a"] == "alpha 0\nalpha 1\nWARNING talker: alpha warned\n"
    assert output["code"] == "sandboxed alpha\n"
    assert "quiet" not in output  # printed nothing: no entry
    seen = capsys.readouterr()
    assert "alpha 0\nalpha 1\n" in seen.out and "sandboxed alpha" in seen.out  # still printed as before
    assert [r.getMessage() for r in caplog.records if r.name == "talker"] == ["alpha warned"]  # handlers as before
    assert runtime.get_run(run_id).to_dict()["output"] == output


def test_outside_runs_writes_pass_through_release_unwraps_and_handlers_never_change(capsys):
    from kailash.runtime import capture

    capture.release()  # as wrapped by earlier tests' runs: put back what was there
    before = (sys.stdout, sys.stderr, logging.getLogRecordFactory())
    handlers = list(logging.getLogger().handlers)
    during: list[Any] = []

    class Peek(Node):
        def get_parameters(self) -> dict[str, NodeParameter]:
            return {}

        def run(self) -> dict[str, Any]:
            during.append(list(logging.getLogger().handlers))  # logging.basicConfig() would still configure
            return {}

    wf = Workflow("talk")
    wf.add_node("a", Talker())
    wf.add_node("peek", Peek())
    runtime = LocalRuntime()
    _, run_id = runtime.execute(wf)
    print("after the run")  # not part of any run: passes through, kept nowhere
    logging.getLogger("talker").warning("outside")
    assert "after the run\n" in capsys.readouterr().out
    assert "after the run" not in str(runtime.get_run(run_id).output)
    assert during == [handlers] and list(logging.getLogger().handlers) == handlers
    capture.release()
    assert (sys.stdout, sys.stderr, logging.getLogRecordFactory()) == before


def test_failed_node_output_is_kept():
    wf = Workflow("talk")
    wf.add_node("a", Talker(word="doomed", fail=True))
    runtime = LocalRuntime()
    with pytest.raises(Exception) as info:
        runtime.execute(wf)
    record = runtime.get_run(info.value.run_id)
    assert record.status == "failed"
    assert record.output == {"a": "doomed 0\nWARNING doomed: doomed warned\n".replace("doomed:", "talker:")}


def test_output_is_bounded_with_a_truncation_line():
    wf = Workflow("talk")
    line = "x" * 99  # 100 characters with the newline
    wf.add_node("a", Talker(word=line, lines=1000))  # ~100 KB printed
    runtime = LocalRuntime()
    _, run_id = runtime.execute(wf)
    text = runtime.get_run(run_id).output["a"]
    printed = "".join(f"{line} {i}\n" for i in range(1000)) + f"WARNING talker: {line} warned\n"
    kept, marker = text[:LIMIT], text[LIMIT:]
    assert kept == printed[:LIMIT]
    total = len(printed)
    assert marker.strip() == f"[output truncated: {total - LIMIT} more characters]"


def test_secrets_are_masked_in_captured_output():
    wf = Workflow("leak")
    wf.add_node("leak", Leaker())
    runtime = LocalRuntime()
    _, run_id = runtime.execute(wf, parameters={"leak": {"token": Secret("tok-very-secret-123")}})
    record = runtime.get_run(run_id)
    text = record.output["leak"]
    assert "calling with token" in text and "rejected token" in text
    assert "tok-very-secret-123" not in text


def test_parallel_runtime_attributes_concurrent_threads_and_async_nodes():
    Barrier.barrier = threading.Barrier(2)
    wf = Workflow("par")
    wf.add_node("left", Barrier(word="L"))
    wf.add_node("right", Barrier(word="R"))
    wf.add_node("shout", Shouter(word="S"))
    runtime = ParallelRuntime(max_concurrency=4)
    _, run_id = runtime.execute_sync(wf)
    output = runtime.get_run(run_id).output
    for word, node in (("L", "left"), ("R", "right")):
        expected = "".join(f"{word} before {i}\n" for i in range(50)) + "".join(f"{word} after {i}\n" for i in range(50))
        assert output[node] == expected  # the two ran at once (the barrier), and nothing of one went to the other
    assert output["shout"] == "async S\nasync S again\n"


def test_a_run_without_a_store_captures_nothing():
    wf = Workflow("talk")
    wf.add_node("a", Talker())
    before = sys.stdout
    seen: list[Any] = []

    class Peek(Node):
        def get_parameters(self) -> dict[str, NodeParameter]:
            return {}

        def run(self) -> dict[str, Any]:
            seen.append(sys.stdout)
            return {}

    wf.add_node("peek", Peek())
    LocalRuntime(store=None).execute(wf)
    assert seen == [before]  # no tee installed: an unrecorded run pays nothing


def test_unconfigured_logging_still_prints_once_and_is_kept_once(tmp_path):
    """Without any logging setup (no pytest handlers), a warning reaches stderr as before, kept once."""
    import json
    import os
    import subprocess

    script = tmp_path / "warn.py"
    script.write_text(
        "import json, logging\n"
        "from kailash.nodes.base import Node, NodeParameter\n"
        "from kailash.runtime import LocalRuntime\n"
        "from kailash.workflow import Workflow\n"
        "class Warn(Node):\n"
        "    def get_parameters(self): return {}\n"
        "    def run(self):\n"
        "        logging.getLogger('w').warning('disk nearly full')\n"
        "        return {}\n"
        "wf = Workflow('w'); wf.add_node('warn', Warn())\n"
        "rt = LocalRuntime(); _, run_id = rt.execute(wf)\n"
        "print(json.dumps(rt.get_run(run_id).output))\n")
    env = {**os.environ, "KAILASH_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("disk nearly full") == 1  # logging's last resort, as without capture
    assert json.loads(done.stdout.splitlines()[-1]) == {"warn": "WARNING w: disk nearly full\n"}


def test_a_node_under_a_timeout_policy_and_a_sub_workflow_are_attributed_to_the_outer_node():
    from kailash.nodes.logic.workflow import WorkflowNode

    inner = Workflow("inner")
    inner.add_node("deep", Talker(word="inner"))
    wf = Workflow("outer")
    wf.add_node("timed", Talker(word="timed"))  # runs in a timeout thread (context copied)
    wf.set_policy("timed", timeout=5, retries=1)
    wf.add_node("sub", WorkflowNode(workflow=inner))
    for runtime in (LocalRuntime(), ParallelRuntime()):
        if isinstance(runtime, ParallelRuntime):
            _, run_id = runtime.execute_sync(wf)
        else:
            _, run_id = runtime.execute(wf)
        output = runtime.get_run(run_id).output
        assert output == {"timed": "timed 0\nWARNING talker: timed warned\n",
                          "sub": "inner 0\nWARNING talker: inner warned\n"}, type(runtime).__name__

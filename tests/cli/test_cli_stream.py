"""`kailash run stream.yaml`: a real child process consumes the real websocket server until stopped.

SIGINT stops it gracefully: the event in flight finishes, the run is recorded as
completed with ``stopped_by: "signal"``, and every event the sink wrote was processed
exactly once, in order.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kailash.nodes.code.python import PythonCodeNode
from kailash.nodes.data.streaming import EventStreamNode
from kailash.nodes.data.writers import JSONWriterNode
from kailash.runtime.store import default_store
from kailash.workflow import Workflow
from tests.servers import fixtures as servers

ws_server = servers.ws_server
ROOT = Path(__file__).resolve().parents[2]


def save_stream_workflow(tmp_path: Path, url: str) -> tuple[Path, Path]:
    out = tmp_path / "seen.jsonl"
    wf = Workflow("ticks")
    wf.add_node("source", EventStreamNode(stream_url=url))
    wf.add_node("process", PythonCodeNode(code="result = {'seq': data['seq']}"))
    wf.add_node("sink", JSONWriterNode(file_path=str(out), lines=True, append=True))
    wf.connect("source", "process")
    wf.connect("process", "sink", mapping={"result": "data"})
    path = wf.save(tmp_path / "stream.yaml")
    return path, out


def kailash(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "kailash.cli.main", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=str(ROOT),
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_a_stream_run_gracefully(ws_server, tmp_path, sig):
    path, out = save_stream_workflow(tmp_path, f"{ws_server.url}/endless?interval=0.005")
    proc = kailash("run", str(path), "--progress")
    started = time.monotonic()
    try:
        deadline = started + 30
        # off a terminal, --progress prints the status as a plain line every 2 s: run past the first one
        while len(lines(out)) < 30 or time.monotonic() - started < 3.0:
            assert time.monotonic() < deadline, "the stream run did not get going"
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "stream stopped by signal" in stdout
    assert "events/s" in stderr and "streaming from 'source'" in stderr
    seqs = [x["seq"] for x in lines(out)]
    assert seqs == list(range(len(seqs)))  # each event once, in order, the last one finished
    run = default_store().list_runs(workflow="ticks")[0]
    assert run.status == "completed"
    assert run.outputs["source"]["stopped_by"] == "signal"
    assert run.outputs["source"]["events"] == len(seqs)


def test_run_to_the_end_of_the_stream_with_a_dead_letter_file(ws_server, tmp_path):
    path, out = save_stream_workflow(tmp_path, f"{ws_server.url}/events?count=6")
    dead = tmp_path / "dead.jsonl"
    proc = kailash("run", str(path), "--dead-letter", str(dead), "--max-events", "5")
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "stream stopped by max_events: 5 events, 0 failures, 0 dead-lettered" in stdout
    assert [x["seq"] for x in lines(out)] == [0, 1, 2, 3, 4]
    assert not dead.read_text()

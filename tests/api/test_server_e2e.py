"""End to end: `kailash serve` in its own process on an ephemeral port, spoken to over real sockets."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

KEY = "e2e-key-9f8e7d6c5b4a"


class ServerProcess:
    """A `kailash serve` child process; its stderr is collected by a thread."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "kailash.cli", "serve", *args, "--port", "0"],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        self.url = self._wait_for_url(timeout=30)

    def _pump(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.output.append(line)
            self.lines.put(line)

    def _wait_for_url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            m = re.search(r"running on (http://127\.0\.0\.1:\d+)", line)
            if m:
                return m.group(1)
        self.stop()
        raise AssertionError("server did not start:\n" + "".join(self.output))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


@pytest.fixture
def server(tmp_path):
    from kailash.nodes.code.python import PythonCodeNode
    from kailash.workflow import Workflow

    wf = Workflow("numbers", description="Sums a list")
    wf.add_node("make", PythonCodeNode(code="result = list(range(n))"))
    wf.add_node("total", PythonCodeNode(code="result = sum(data)"))
    wf.connect("make", "total")
    path = wf.save(tmp_path / "numbers.yaml")
    env = {**os.environ, "KAILASH_HOME": str(tmp_path / "home"), "KAILASH_API_KEYS": KEY}
    env.pop("KAILASH_DATABASE_URL", None)
    proc = ServerProcess([str(path)], env)
    try:
        yield proc
    finally:
        proc.stop()


def test_real_server_end_to_end(server):
    headers = {"X-API-Key": KEY}
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.get("/health").json()["status"] == "ok"
        assert http.get("/workflows").status_code == 401
        assert [w["name"] for w in http.get("/workflows", headers=headers).json()["workflows"]] == ["numbers"]
        done = http.post("/workflows/numbers/execute", json={"parameters": {"make": {"n": 5}}}, headers=headers)
        assert done.status_code == 200 and done.json()["results"]["total"] == {"result": 10}

        started = http.post("/workflows/numbers/execute?async=true", json={"parameters": {"make": {"n": 4}}},
                            headers=headers).json()
        events = []
        with http.stream("GET", f"/runs/{started['run_id']}/events", params={"api_key": KEY}) as stream:
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
        assert [e["event"] for e in events][-1] == "run_completed"
        assert http.get(f"/runs/{started['run_id']}", headers=headers).json()["results"]["total"] == {"result": 6}
        assert "numbers" in json.dumps(http.get("/openapi.json").json()["paths"])
        from kailash.api.routes import STUDIO_DIR

        if (STUDIO_DIR / "index.html").is_file():
            assert http.get("/studio").headers["content-type"].startswith("text/html")

        from websockets.sync.client import connect

        ws_url = server.url.replace("http://", "ws://") + f"/ws/runs/{done.json()['run_id']}"
        with connect(ws_url, additional_headers=headers, open_timeout=10) as ws:
            kinds = []
            while True:
                try:
                    kinds.append(json.loads(ws.recv(timeout=10))["event"])
                except Exception:
                    break
        assert kinds[0] == "run_started" and kinds[-1] == "run_completed"
        from websockets.exceptions import InvalidStatus

        with pytest.raises(InvalidStatus) as info:
            with connect(ws_url, open_timeout=10):
                pass
        assert info.value.response.status_code == 401

    assert server.stop() == 0
    log = "".join(server.output)
    assert KEY not in log  # the query-string key is redacted from the access log
    assert "api_key=***" in log


def test_serve_refuses_a_bad_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes:\n  - {id: a, type: NoSuchNode}\n")
    env = {**os.environ, "KAILASH_HOME": str(tmp_path / "home")}
    result = subprocess.run([sys.executable, "-m", "kailash.cli", "serve", str(bad), "--port", "0"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "NoSuchNode" in result.stderr


def test_a_workflow_name_with_spaces_is_served_under_a_url_safe_name(tmp_path):
    from kailash.nodes.code.python import PythonCodeNode
    from kailash.workflow import Workflow

    wf = Workflow("Pricing Pipeline")
    wf.add_node("price", PythonCodeNode(code="result = round(base * 1.2, 2)"))
    path = wf.save(tmp_path / "pricing.yaml")
    env = {**os.environ, "KAILASH_HOME": str(tmp_path / "home"), "KAILASH_API_KEYS": KEY}
    env.pop("KAILASH_DATABASE_URL", None)
    proc = ServerProcess([str(path)], env)
    try:
        assert any("served as 'Pricing-Pipeline'" in line for line in proc.output)
        reply = httpx.post(f"{proc.url}/workflows/Pricing-Pipeline/execute", headers={"X-API-Key": KEY},
                           json={"parameters": {"price": {"base": 10}}}, timeout=20)
        assert reply.status_code == 200, reply.text
        assert reply.json()["results"]["price"]["result"] == 12.0
    finally:
        proc.stop()

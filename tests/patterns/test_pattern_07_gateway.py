"""Seed pattern 7 (API Gateway), run as written in its own process and spoken to over HTTP.

The sample's three workflows are real (CSV processing, a small least-squares model,
a text report); the sample file is executed unchanged apart from the port (0: any
free one, read back from the server's log) and the imports the sample leaves out.
``AuthenticationMiddleware()`` with no keys generates one into ``$KAILASH_HOME``.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import httpx

SAMPLE = '''
import os
from kailash.workflow import Workflow
from kailash.nodes.data.readers import CSVReaderNode
from kailash.nodes.data.writers import JSONWriterNode
from kailash.nodes.code.python import PythonCodeNode
from kailash.api.middleware import AuthenticationMiddleware, RateLimitingMiddleware

data_workflow = Workflow("data_processing")
data_workflow.add_node("reader", CSVReaderNode(), file_path=os.environ["SALES_CSV"])
data_workflow.add_node("clean", PythonCodeNode(code="result = [r for r in data if float(r['amount']) > 0]"))
data_workflow.add_node("writer", JSONWriterNode(), file_path=os.environ["CLEAN_JSON"])
data_workflow.connect("reader", "clean")
data_workflow.connect("clean", "writer")

ml_workflow = Workflow("ml_pipeline")
ml_workflow.add_node("fit", PythonCodeNode(code="""
n = len(xs)
mx, my = sum(xs) / n, sum(ys) / n
slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
result = {"slope": slope, "intercept": my - slope * mx}
"""))
ml_workflow.add_node("predict", PythonCodeNode(code="result = data['slope'] * x_new + data['intercept']"))
ml_workflow.connect("fit", "predict")

report_workflow = Workflow("report_generation")
report_workflow.add_node("report", PythonCodeNode(
    code="result = f'{title}: ' + ', '.join(f'{k}={v}' for k, v in sorted(metrics.items()))"))

# --- the sample, as written ------------------------------------------------------------------
from kailash.api.gateway import WorkflowGateway
from kailash.api.workflow_api import WorkflowAPI

# Create gateway
gateway = WorkflowGateway(port=PORT)

# Register multiple workflows
gateway.register_workflow("data_processing", data_workflow)
gateway.register_workflow("ml_pipeline", ml_workflow)
gateway.register_workflow("report_generation", report_workflow)

# Add middleware
gateway.add_middleware(AuthenticationMiddleware())
gateway.add_middleware(RateLimitingMiddleware())

# Start gateway
gateway.start()
'''


def test_pattern_07_api_gateway(tmp_path):
    csv_path = tmp_path / "sales.csv"
    csv_path.write_text("region,amount\nnorth,120.5\nsouth,-3\neast,80\n")
    out_path = tmp_path / "clean.json"
    script = tmp_path / "gateway_sample.py"
    script.write_text(textwrap.dedent(SAMPLE).replace("port=PORT", "port=0"))
    home = tmp_path / "home"
    env = {**os.environ, "KAILASH_HOME": str(home), "SALES_CSV": str(csv_path), "CLEAN_JSON": str(out_path)}
    env.pop("KAILASH_API_KEYS", None)
    proc = subprocess.Popen([sys.executable, str(script)], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    output: list[str] = []

    def pump() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            output.append(line)
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                m = re.search(r"running on (http://127\.0\.0\.1:\d+)", lines.get(timeout=0.5))
            except queue.Empty:
                continue
            url = m.group(1) if m else None
        assert url, "gateway did not start:\n" + "".join(output)
        key = (home / "gateway_api_key").read_text().strip()
        headers = {"Authorization": f"Bearer {key}"}

        with httpx.Client(base_url=url, timeout=20) as http:
            assert http.get("/health").json()["status"] == "ok"
            assert http.post("/workflows/data_processing/execute", json={}).status_code == 401
            names = [w["name"] for w in http.get("/workflows", headers=headers).json()["workflows"]]
            assert sorted(names) == ["data_processing", "ml_pipeline", "report_generation"]

            data = http.post("/workflows/data_processing/execute", json={}, headers=headers)
            assert data.status_code == 200, data.text
            assert [r["region"] for r in data.json()["results"]["clean"]["result"]] == ["north", "east"]
            assert [r["region"] for r in json.loads(out_path.read_text())] == ["north", "east"]

            ml = http.post("/workflows/ml_pipeline/execute", headers=headers, json={"parameters": {
                "fit": {"xs": [1, 2, 3, 4], "ys": [3, 5, 7, 9]}, "predict": {"x_new": 10}}})
            assert ml.json()["results"]["predict"]["result"] == 21.0

            report = http.post("/workflows/report_generation/execute", headers=headers, json={"parameters": {
                "report": {"title": "Q3", "metrics": {"revenue": 200.5, "orders": 3}}}})
            assert report.json()["results"]["report"]["result"] == "Q3: orders=3, revenue=200.5"

            missing = http.post("/workflows/ml_pipeline/execute", headers=headers, json={"parameters": {}})
            assert missing.status_code == 422 and missing.json()["error"]["node_id"] == "fit"

            spec = http.get("/openapi.json").json()
            assert {"/workflows/data_processing/execute", "/workflows/ml_pipeline/execute",
                    "/workflows/report_generation/execute"} <= set(spec["paths"])
            runs = http.get("/runs", headers=headers).json()["runs"]
            assert {r["workflow"] for r in runs} == {"data_processing", "ml_pipeline", "report_generation"}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    log = "".join(output)
    assert key not in log
    assert "gateway_api_key" in log  # the log says where the generated key is, never what it is

"""`kailash run` on a real Dask cluster: KAILASH_DASK_ADDRESS / --dask pick DaskRuntime."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kailash.nodes.code.python import PythonCodeNode
from kailash.workflow import Workflow

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = shutil.which("kailash", path=str(Path(sys.executable).parent))
COMMAND = [SCRIPT] if SCRIPT else [sys.executable, "-m", "kailash.cli"]

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    """A scheduler on 127.0.0.1 (any free port) with one worker process."""
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  scheduler_port=0, dashboard_address=None, silence_logs=logging.CRITICAL) as c, \
            distributed.Client(c, set_as_default=False) as client:
        yield c.scheduler_address, set(client.run(os.getpid).values())


@pytest.fixture
def pid_file(tmp_path):
    wf = Workflow("where")
    wf.add_node("where", PythonCodeNode(imports=["os"], code="result = os.getpid()"))
    wf.save(tmp_path / "where.yaml")
    return tmp_path / "where.yaml"


def run(*args: str, home, env: dict[str, str]) -> tuple[subprocess.Popen[str], str, str]:
    full = {k: v for k, v in os.environ.items() if k != "KAILASH_DASK_ADDRESS"}
    full.update(KAILASH_HOME=str(home), **env)
    proc = subprocess.Popen([*COMMAND, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=full, cwd=ROOT)
    out, err = proc.communicate(timeout=90)
    return proc, out, err


def test_env_address_runs_the_nodes_on_the_cluster(cluster, pid_file, _isolated_home):
    address, worker_pids = cluster
    proc, out, err = run("run", str(pid_file), "--json", home=_isolated_home, env={"KAILASH_DASK_ADDRESS": address})
    assert proc.returncode == 0, err
    assert f"runtime: DaskRuntime at {address}" in err.splitlines()
    pid = json.loads(out)["results"]["where"]["result"]
    assert pid in worker_pids and pid != proc.pid  # ran in the Dask worker, not in the CLI process


def test_without_an_address_the_run_stays_in_the_cli_process(pid_file, _isolated_home):
    proc, out, err = run("run", str(pid_file), "--json", home=_isolated_home, env={})
    assert proc.returncode == 0, err
    assert json.loads(out)["results"]["where"]["result"] == proc.pid and "DaskRuntime" not in err


def test_flag_wins_over_the_env(cluster, pid_file, _isolated_home):
    address, worker_pids = cluster
    proc, out, err = run("run", str(pid_file), "--json", "--dask", address, home=_isolated_home,
                         env={"KAILASH_DASK_ADDRESS": "tcp://127.0.0.1:9"})
    assert proc.returncode == 0, err
    assert json.loads(out)["results"]["where"]["result"] in worker_pids


def test_an_unreachable_scheduler_is_one_line_exit_3_naming_the_address(pid_file, _isolated_home):
    proc, out, err = run("run", str(pid_file), home=_isolated_home, env={"KAILASH_DASK_ADDRESS": "tcp://127.0.0.1:9"})
    assert proc.returncode == 3, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "tcp://127.0.0.1:9" in lines[0], err
    assert "Traceback" not in err and out == ""


def test_serve_with_an_unreachable_scheduler_is_one_line_exit_3(pid_file, _isolated_home):
    proc, out, err = run("serve", str(pid_file), "--port", "0", "--no-tenants", home=_isolated_home,
                         env={"KAILASH_DASK_ADDRESS": "tcp://127.0.0.1:9"})
    assert proc.returncode == 3, err
    lines = [line for line in err.strip().splitlines() if not line.startswith("note:")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "tcp://127.0.0.1:9" in lines[0], err


def test_serve_takes_the_address_from_the_env_and_runs_there(cluster, pid_file, monkeypatch, capsys, _isolated_home):
    from kailash.api.gateway import WorkflowGateway
    from kailash.cli.main import main

    address, worker_pids = cluster
    seen: dict[str, object] = {}

    def serve_briefly(self, **options):  # instead of blocking in uvicorn: run the served workflow once
        factory = self.runs.runtime_factory
        try:
            runtime = factory(store=None, observers=[], tenant=None, record_outputs="failed")
            seen["pid"] = runtime.execute(self.registered["where"].workflow)[0]["where"]["result"]
        finally:
            factory.close()

    monkeypatch.setenv("KAILASH_DASK_ADDRESS", address)
    monkeypatch.setattr(WorkflowGateway, "start", serve_briefly)
    assert main(["serve", str(pid_file), "--no-tenants", "--port", "0", "--no-queue", "--no-schedules"]) == 0
    assert f"runtime: DaskRuntime at {address}" in capsys.readouterr().err
    assert seen["pid"] in worker_pids and seen["pid"] != os.getpid()

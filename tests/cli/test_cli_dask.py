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

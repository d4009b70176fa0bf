"""DaskRuntime across separate hosts: a scheduler, two workers and the submitting client, each
in its own network namespace (its own address, reached over a bridge), each worker in its own
working directory. See ``docs/deploy.md`` ("Dask across hosts") for what is installed where.
"""

from __future__ import annotations

import collections
import os
import signal
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _effects(path: Path) -> list[tuple[str, str, str, int]]:
    if not path.exists():
        return []
    return [(t, n, h, int(p)) for t, n, h, p in (ln.split() for ln in path.read_text().splitlines())]


def _wait_effects(path: Path, pred, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pred(_effects(path)):
        assert time.monotonic() < deadline, f"side effects so far: {_effects(path)}"
        time.sleep(0.02)


def test_node_classes_code_files_and_results_cross_hosts(dask_cluster, tmp_path):
    shared = tmp_path / "shared"  # a file system every host mounts (an absolute path in node config)
    shared.mkdir()
    (shared / "in.txt").write_text("hello from the shared volume")
    dask_cluster.start_scheduler()
    dask_cluster.start_worker("w1")
    dask_cluster.start_worker("w2")
    dask_cluster.wait_workers(2)
    out = dask_cluster.result(dask_cluster.client("cross", KXC_FILE=str(shared / "in.txt")), 60)
    results = out["results"]
    assert out["status"] == "completed"
    assert results["read"]["data"] == "hello from the shared volume"
    where = results["where"]["result"]  # a node class installed on the workers
    assert where["text"] == "HELLO FROM THE SHARED VOLUME" and where["host"] in ("w1", "w2")
    assert where["cwd"] == str(tmp_path / f"{where['host']}-cwd")  # the worker's own working directory
    assert results["code"]["result"]["n"] == 28 and results["code"]["result"]["host"] in ("w1", "w2")
    assert results["signed"]["result"]["signed"].endswith("!")  # a class from the client's __main__
    fan_hosts = {results[f"fan{i}"]["result"]["host"] for i in range(4)}
    ran_on = fan_hosts | {where["host"], results["code"]["result"]["host"], results["signed"]["result"]["host"]}
    assert ran_on == {"w1", "w2"}  # both worker hosts ran nodes; the client host ran none


def test_a_worker_without_a_nodes_module_names_the_node_and_the_module(dask_cluster):
    dask_cluster.start_scheduler()
    dask_cluster.start_worker("w1")
    dask_cluster.wait_workers(1)
    out = dask_cluster.result(dask_cluster.client("missing"), 60)
    err = out["error"]
    assert err is not None and err["type"] == "NodeExecutionError", err
    assert "'private'" in err["message"] and "kxc_private" in err["message"], err["message"]
    assert "install" in err["message"]

"""DaskRuntime across separate hosts: a scheduler, two workers and the submitting client, each
in its own network namespace (its own address, reached over a bridge), each worker in its own
working directory. See ``docs/deploy.md`` ("Dask across hosts") for what is installed where.
"""

from __future__ import annotations

import collections
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


def _fan(dask_cluster, tmp_path, n: int, delay: float, **extra: str):
    effects = tmp_path / "effects.txt"
    dask_cluster.start_scheduler()
    dask_cluster.start_worker("w1", KXC_EFFECTS=str(effects))
    dask_cluster.start_worker("w2", KXC_EFFECTS=str(effects))
    dask_cluster.wait_workers(2)
    client = dask_cluster.client("fan", KXC_N=str(n), KXC_DELAY=str(delay), **extra)
    _wait_effects(effects, lambda e: any(h == "w2" for _, _, h, _ in e) and len(e) >= 3, 30)
    return effects, client


def _check_once_except_on(lost: str, effects: list[tuple[str, str, str, int]], n: int) -> None:
    """Every node ran; a node ran twice only if its first attempt was on the lost host."""
    by_node = collections.defaultdict(list)
    for _, node, host, _ in effects:
        by_node[node].append(host)
    assert set(by_node) == {f"s{i}" for i in range(n)}
    for node, ran in by_node.items():
        assert len(ran) <= 2, (node, ran)
        if len(ran) == 2:
            assert ran[0] == lost and ran[1] != lost, (node, ran)


@pytest.mark.parametrize("fault", ["killed", "cut off"])
def test_a_lost_worker_host_mid_run_the_run_completes_on_the_other(dask_cluster, hosts, tmp_path, fault):
    effects, client = _fan(dask_cluster, tmp_path, 8, 1.0)
    at_fault = _effects(effects)
    if fault == "killed":
        hosts.kill("w2")  # SIGKILL: the scheduler sees the connection close
    else:
        hosts.cut("w2")  # no FIN, no RST: noticed when its heartbeats stop (worker-ttl)
    out = dask_cluster.result(client, 45)
    assert out["status"] == "completed", out
    assert out["join"] == list(range(8))
    assert out["record"]["status"] == "completed"
    after = _effects(effects)
    _check_once_except_on("w2", after, 8)
    assert any(h == "w2" for _, _, h, _ in at_fault)
    print(f"{fault}: completed in {out['seconds']:.1f} s; {len(after) - 8} node(s) ran again")


def test_the_scheduler_killed_mid_run_fails_fast_and_the_run_resumes(dask_cluster, hosts, tmp_path):
    resume_at = tmp_path / "resume-at"
    effects, client = _fan(dask_cluster, tmp_path, 8, 1.0, KXC_RESUME_AT=str(resume_at))
    _wait_effects(effects, lambda e: len(e) >= 5, 30)  # the first round finished, the second running
    time.sleep(0.4)  # the first round's outputs are back on the client
    killed_at = time.monotonic()
    dask_cluster.procs["sched"].send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 30
    out_file = tmp_path / "client.out"
    while '"waiting"' not in out_file.read_text():
        assert client.poll() is None, dask_cluster.logs()
        assert time.monotonic() < deadline, f"the client did not notice the lost scheduler\n{dask_cluster.logs()}"
        time.sleep(0.05)
    noticed = time.monotonic() - killed_at
    at_failure = _effects(effects)
    # a new cluster: scheduler and workers started again (the old workers lost their scheduler)
    hosts.kill("w1")
    hosts.kill("w2")
    dask_cluster.port = dask_cluster.port + 1 if dask_cluster.port < 65000 else 20000
    dask_cluster.address = f"tcp://{hosts['sched'].ip}:{dask_cluster.port}"
    dask_cluster.start_scheduler()
    dask_cluster.start_worker("w1", KXC_EFFECTS=str(effects))
    resume_at.write_text(dask_cluster.address)
    out = dask_cluster.result(client, 60)
    assert out["status"] == "failed" and out["record"]["status"] in ("failed", "interrupted"), out
    err = out["error"]
    assert err["type"] == "ClusterConnectionError", err
    assert "scheduler" in err["message"] and "resume" in err["message"], err
    assert noticed < 15, noticed
    assert out["resumed"]["join"] == list(range(8)) and out["resumed"]["status"] == "completed"
    finished = {n for n, s in out["record"]["nodes"].items() if s == "completed"}
    assert finished, out["record"]
    counts = collections.Counter(node for _, node, _, _ in _effects(effects))
    for node in finished:  # a node finished before the loss is reused, not run again
        assert counts[node] == 1, (node, counts)
    assert set(counts) == {f"s{i}" for i in range(8)}
    assert len(at_failure) <= len(_effects(effects))
    print(f"scheduler loss noticed in {noticed:.1f} s; {len(finished)} finished node(s) reused")


def test_every_worker_host_lost_fails_the_run_naming_the_lost_work_and_it_resumes(dask_cluster, hosts, tmp_path):
    effects, resume_at = tmp_path / "effects.txt", tmp_path / "resume-at"
    dask_cluster.start_scheduler()
    dask_cluster.start_worker("w1", KXC_EFFECTS=str(effects))
    dask_cluster.wait_workers(1)
    client = dask_cluster.client("fan", KXC_N="6", KXC_DELAY="1.0", KXC_NO_WORKERS="2",
                                 KXC_RESUME_AT=str(resume_at))
    _wait_effects(effects, lambda e: len(e) >= 3, 30)  # the first pair finished, the second running
    time.sleep(0.3)
    killed_at = time.monotonic()
    hosts.kill("w1")  # the only worker host: Dask alone would keep the nodes queued for ever
    deadline = time.monotonic() + 20
    while '"waiting"' not in (tmp_path / "client.out").read_text():
        assert client.poll() is None, dask_cluster.logs()
        assert time.monotonic() < deadline, f"the run hung without workers\n{dask_cluster.logs()}"
        time.sleep(0.05)
    noticed = time.monotonic() - killed_at
    dask_cluster.start_worker("w2", KXC_EFFECTS=str(effects))  # a new worker host joins the same scheduler
    resume_at.write_text(dask_cluster.address)
    out = dask_cluster.result(client, 60)
    err = out["error"]
    assert err["type"] == "ClusterConnectionError" and "no workers" in err["message"], err
    assert f"node '{err['node_id']}'" in err["message"] and "resume" in err["message"]
    assert out["record"]["status"] == "failed"
    finished = {n for n, s in out["record"]["nodes"].items() if s == "completed"}
    assert finished and out["resumed"]["join"] == list(range(6))
    counts = collections.Counter(node for _, node, _, _ in _effects(effects))
    assert all(counts[n] == 1 for n in finished), counts  # finished nodes were reused, not run again
    assert {h for _, n, h, _ in _effects(effects) if n not in finished} >= {"w2"}
    print(f"no workers noticed after {noticed:.1f} s (no_workers_timeout 2 s)")

"""Two gateway replicas on two hosts (network namespaces), one PostgreSQL, a round-robin client.

PostgreSQL listens on loopback only: a relay (``socat``) in the root namespace, bound to the
bridge address, forwards the hosts' connections to it (so they arrive from 127.0.0.1).
Runs, run history, schedules and tenant keys read the same from either replica; one replica
SIGKILLed mid-run, the other finishes every run (taking over the dead one's by lease) and keeps
firing the schedules.
"""

from __future__ import annotations

import collections
import itertools
import os
import shutil
import signal
import subprocess
import time
import uuid

import httpx
import pytest

from tests.api.test_queue_processes import PG_URL, _check_exactly_once, _effects, _wait_lines
from tests.cluster.conftest import HERE, PY, ROOT, env_for, wait_port

pytestmark = pytest.mark.slow
STEPS = ("a", "b", "c")


@pytest.fixture
def postgres(hosts, tmp_path):
    """``(url seen from the hosts, registry schema, default schema)``; the relay and schemas go after."""
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except Exception as exc:
        pytest.skip(f"no PostgreSQL at {PG_URL}: {exc}")
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (the relay to PostgreSQL on loopback)")
    tag = uuid.uuid4().hex[:10]
    schemas = (f"kx_reg_{tag}", f"kx_def_{tag}")
    with __import__("socket").socket() as s:
        s.bind((hosts.gateway, 0))
        port = s.getsockname()[1]
    relay = subprocess.Popen(["socat", f"TCP-LISTEN:{port},bind={hosts.gateway},reuseaddr,fork",
                              "TCP:127.0.0.1:5432"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"postgresql://postgres@{hosts.gateway}:{port}/test", schemas[0], schemas[1]
    finally:
        relay.kill()
        relay.wait(10)
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            for name in schemas:
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
            for (name,) in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s",
                                        (f"t_kx{tag}%",)).fetchall():
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def test_two_gateway_hosts_share_runs_history_schedules_and_keys_and_survive_one_killed(hosts, postgres, tmp_path):
    from kailash.api.postgres import PostgresStorage
    from kailash.api.tenancy import TenantRegistry

    url, registry_schema, default_schema = postgres
    tenant_id = f"kx{registry_schema[-10:]}"
    registry = TenantRegistry(storage=PostgresStorage(PG_URL, registry_schema=registry_schema,
                                                      default_schema=default_schema))
    _, tenant_key = registry.create_tenant(tenant_id)
    registry.storage.close()
    op_key = "op-" + uuid.uuid4().hex
    effects = tmp_path / "effects.txt"
    env = {"KAILASH_DATABASE_URL": url, "QUEUE_TEST_REGISTRY": registry_schema, "QUEUE_TEST_SCHEMA": default_schema,
           "QUEUE_TEST_EFFECTS": str(effects), "QUEUE_TEST_DELAY": "0.1", "KAILASH_QUEUE_LEASE": "2",
           "GW_OPERATOR_KEY": op_key, "QUEUE_TEST_GO": str(tmp_path / "go")}
    procs = {}
    for name in ("gw1", "gw2"):
        home = tmp_path / f"{name}-home"
        home.mkdir()
        procs[name] = hosts.start(name, [PY, str(HERE / "gateway_server.py"), hosts[name].ip, "8000"],
                                  env=env_for(name, ROOT / "tests" / "api", KAILASH_HOME=str(home), **env),
                                  cwd=home, log=tmp_path / f"{name}.log")
    try:
        for name in ("gw1", "gw2"):
            try:
                wait_port(hosts, name, 8000, 60)
            except AssertionError:
                raise AssertionError((tmp_path / f"{name}.log").read_text()[-3000:]) from None
        urls = [f"http://{hosts[n].ip}:8000" for n in ("gw1", "gw2")]
        op = {"X-API-Key": op_key}
        clients = [httpx.Client(base_url=u, timeout=10) for u in urls]
        turn = itertools.cycle(clients)  # the round-robin "load balancer"

        # tenant keys: the shared registry authenticates on either replica
        for c in clients:
            assert c.get("/runs", headers={"X-API-Key": tenant_key}).status_code == 200
            assert c.get("/runs", headers={"X-API-Key": tenant_key + "x"}).status_code == 401

        # runs, round robin; they wait for `go` so that a kill finds runs queued and in flight
        tokens = {}
        for i in range(40):
            reply = next(turn).post("/workflows/effects/execute?async=true", headers=op,
                                    json={"parameters": {s: {"token": f"r{i:02d}"} for s in STEPS}})
            assert reply.status_code == 202, reply.text
            tokens[reply.json()["run_id"]] = f"r{i:02d}"
        for run_id in tokens:  # every run, queued or started, reads the same from either replica
            seen = [c.get(f"/runs/{run_id}", headers=op).json() for c in clients]
            assert seen[0]["run_id"] == seen[1]["run_id"] == run_id and seen[0]["workflow"] == "effects"
        deadline = time.monotonic() + 10
        while True:  # the history (runs started so far) is the same list from either, once claims settle
            history = [[r["run_id"] for r in c.get("/runs?limit=500", headers=op).json()["runs"]] for c in clients]
            if sorted(history[0]) == sorted(history[1]) and history[0]:  # the same runs (order: equal starts tie)
                break
            assert time.monotonic() < deadline, history
            time.sleep(0.2)
        assert set(history[0]) <= set(tokens)

        # a schedule made on one replica is the one the other serves and fires
        made = clients[0].post("/schedules", headers=op, json={
            "workflow": "effects", "every": 1, "parameters": {s: {"token": "sched"} for s in STEPS}})
        assert made.status_code == 201, made.text
        sid = made.json()["id"]
        assert clients[1].get(f"/schedules/{sid}", headers=op).json()["workflow"] == "effects"
        assert [s["id"] for s in clients[1].get("/schedules", headers=op).json()["schedules"]] == [sid]

        deadline = time.monotonic() + 10
        while True:  # both replicas tick; the fires (one run per fire time) read the same from either
            fired = [c.get(f"/schedules/{sid}/fires", headers=op).json()["fires"] for c in clients]
            if fired[0] and fired[0] == fired[1]:
                break
            assert time.monotonic() < deadline, fired
            time.sleep(0.2)
        (tmp_path / "go").touch()
        _wait_lines(effects, 40, 60)  # about a third of the node executions
        killed = procs["gw1"].pid
        os.kill(killed, signal.SIGKILL)
        procs["gw1"].wait(10)
        survivor = clients[1]
        deadline = time.monotonic() + 60
        records: dict[str, dict] = {}
        while len(records) < len(tokens):
            for run_id in tokens:
                if run_id not in records:
                    d = survivor.get(f"/runs/{run_id}", headers=op).json()
                    if d.get("status") in ("completed", "failed"):
                        records[run_id] = d
            assert time.monotonic() < deadline, f"{len(tokens) - len(records)} run(s) never finished"
            time.sleep(0.2)
        runs_only = [e for e in _effects(effects) if e[0] != "sched"]
        final = {r["run_id"] for r in survivor.get("/runs?limit=500", headers=op).json()["runs"]}
        assert final >= set(tokens)  # the history has every run, the dead replica's too
        _check_exactly_once(runs_only, records, tokens, killed)
        ran = collections.Counter(p for _, _, p in runs_only)
        assert killed in ran and procs["gw2"].pid in ran  # both replicas worked the queue

        # the schedule keeps firing on the survivor, each fire once
        fires_before = len(survivor.get(f"/schedules/{sid}/fires", headers=op).json()["fires"])
        time.sleep(2.5)
        fires = survivor.get(f"/schedules/{sid}/fires", headers=op).json()["fires"]
        assert len(fires) > fires_before
        times = [f["fire_at"] for f in fires]
        assert len(times) == len(set(times)), fires  # never fired twice for one time
        assert len({f["run_id"] for f in fires}) == len(fires)
        assert survivor.delete(f"/schedules/{sid}", headers=op).status_code == 204
        for c in clients:
            c.close()
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)

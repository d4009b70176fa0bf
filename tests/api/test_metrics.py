"""``GET /metrics``: Prometheus text format with runs by status, node durations and queue depth."""

from __future__ import annotations

import re

from gateway_test_helpers import HEADERS

LINE = re.compile(r'^([a-z_]+)(\{([a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*)\})? (-?[0-9.e+-]+|\+Inf)$')


def scrape(client) -> dict[tuple[str, frozenset], float]:
    reply = client.get("/metrics", headers=HEADERS)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    series: dict[tuple[str, frozenset], float] = {}
    types = {}
    for line in reply.text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
            continue
        if line.startswith("#"):
            continue
        m = LINE.match(line)
        assert m, f"not Prometheus text format: {line!r}"
        labels = frozenset(re.findall(r'([a-z_]+)="([^"]*)"', m.group(3) or ""))
        series[(m.group(1), labels)] = float(m.group(5))
    assert types == {"kailash_runs_total": "counter", "kailash_runs_in_progress": "gauge",
                     "kailash_queue_depth": "gauge", "kailash_node_duration_seconds": "histogram"}
    return series


def test_runs_by_status_and_node_duration_histograms(client):
    for x in (1, 2):
        assert client.post("/workflows/double/execute", json={"parameters": {"make": {"x": x}}},
                           headers=HEADERS).status_code == 200
    assert client.post("/workflows/failing/execute", json={}, headers=HEADERS).status_code == 422
    s = scrape(client)
    assert s[("kailash_runs_total", frozenset({("workflow", "double"), ("status", "completed")}))] == 2
    assert s[("kailash_runs_total", frozenset({("workflow", "failing"), ("status", "failed")}))] == 1
    assert s[("kailash_runs_in_progress", frozenset())] == 0
    assert s[("kailash_queue_depth", frozenset())] == 0
    make = {("workflow", "double"), ("node", "make")}
    assert s[("kailash_node_duration_seconds_count", frozenset(make))] == 2
    assert s[("kailash_node_duration_seconds_bucket", frozenset(make | {("le", "+Inf")}))] == 2
    assert 0 < s[("kailash_node_duration_seconds_sum", frozenset(make))] < 60
    buckets = sorted((float(dict(k[1])["le"]), v) for k, v in s.items()
                     if k[0] == "kailash_node_duration_seconds_bucket" and make <= k[1] and dict(k[1])["le"] != "+Inf")
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    assert buckets[-1][1] == 2  # both took under 300 s
    ok = {("workflow", "failing"), ("node", "ok")}
    assert s[("kailash_node_duration_seconds_count", frozenset(ok))] == 1  # the node that finished before the failure


def test_queue_depth_comes_from_the_callable_the_gateway_is_given(gateway, client):
    gateway.metrics.queue_depth = lambda: 7
    assert scrape(client)[("kailash_queue_depth", frozenset())] == 7


def test_metrics_need_a_key(client):
    assert client.get("/metrics").status_code == 401


def test_a_tenants_key_may_not_read_every_tenants_metrics(tmp_path):
    from starlette.testclient import TestClient

    from kailash.api.gateway import WorkflowGateway
    from kailash.api.tenancy import TenantRegistry

    registry = TenantRegistry(home=tmp_path / "tenants-home")
    _, key = registry.create_tenant("acme-metrics")
    gw = WorkflowGateway(port=0, tenants=registry, api_keys=[HEADERS["X-API-Key"]])
    with TestClient(gw.app) as client:
        refused = client.get("/metrics", headers={"X-API-Key": key})
        assert refused.status_code == 403 and refused.json()["code"] == "metrics_refused"
        assert client.get("/metrics", headers=HEADERS).status_code == 200

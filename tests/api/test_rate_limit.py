"""Rate limits: 429 with Retry-After, per caller, in memory and in Redis (shared by processes)."""

from __future__ import annotations

import logging
import socket
import uuid

import pytest
from gateway_test_helpers import API_KEY, HEADERS, make_workflows
from starlette.testclient import TestClient

from kailash.api.gateway import WorkflowGateway
from kailash.api.middleware import AuthenticationMiddleware, RateLimitingMiddleware

REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_or_skip():
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except Exception as exc:  # pragma: no cover - the machine's Redis is expected to be up
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    return redis


def _gateway(limiter, keys=(API_KEY, "second-key")):
    gw = WorkflowGateway(port=0)
    gw.register_workflow("double", make_workflows()["double"])
    gw.add_middleware(limiter)  # added before authentication on purpose: order must not matter
    gw.add_middleware(AuthenticationMiddleware(api_keys=list(keys)))
    return gw


def test_requests_over_the_limit_get_429_with_retry_after():
    with TestClient(_gateway(RateLimitingMiddleware(requests_per_minute=3)).app) as c:
        codes = [c.get("/workflows", headers=HEADERS).status_code for _ in range(3)]
        assert codes == [200, 200, 200]
        over = c.get("/workflows", headers=HEADERS)
        assert over.status_code == 429
        assert over.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(over.headers["retry-after"]) <= 20  # one request every 20 s at 3/min
        assert over.headers["x-ratelimit-limit"] == "3"
        # another key has its own allowance; /health is never limited
        assert c.get("/workflows", headers={"X-API-Key": "second-key"}).status_code == 200
        assert all(c.get("/health").status_code == 200 for _ in range(5))


def test_default_limit_is_generous_and_constructible_without_arguments():
    limiter = RateLimitingMiddleware()
    assert limiter.requests_per_minute >= 60
    with TestClient(_gateway(limiter).app) as c:
        assert all(c.get("/workflows", headers=HEADERS).status_code == 200 for _ in range(30))


def test_unauthenticated_callers_are_limited_by_address():
    with TestClient(_gateway(RateLimitingMiddleware(requests_per_minute=2, exempt_paths=())).app) as c:
        assert [c.get("/nodes/PythonCodeNode").status_code for _ in range(3)] == [200, 200, 429]


def test_bad_limits_are_refused():
    with pytest.raises(ValueError, match="requests_per_minute must be a positive int"):
        RateLimitingMiddleware(requests_per_minute=0)


def test_burst_then_steady_rate():
    import asyncio

    limiter = RateLimitingMiddleware(requests_per_minute=6000, burst=2)  # one every 10 ms after 2 at once

    async def go():
        waits = [await limiter.retry_after("b", 6000, burst=2) for _ in range(3)]
        assert waits[:2] == [0.0, 0.0] and 0 < waits[2] <= 0.011
        await asyncio.sleep(0.02)
        assert await limiter.retry_after("b", 6000, burst=2) == 0.0

    asyncio.run(go())


def test_redis_counters_are_shared_between_gateways():
    redis = _redis_or_skip()
    prefix = f"kailash-test:{uuid.uuid4().hex}"
    one = _gateway(RateLimitingMiddleware(requests_per_minute=4, redis_url=REDIS_URL, key_prefix=prefix))
    two = _gateway(RateLimitingMiddleware(requests_per_minute=4, redis_url=REDIS_URL, key_prefix=prefix))
    try:
        with TestClient(one.app) as a, TestClient(two.app) as b:
            codes = [(a if i % 2 else b).get("/workflows", headers=HEADERS).status_code for i in range(5)]
            assert codes == [200, 200, 200, 200, 429]  # four between them, not four each
            assert int(a.get("/workflows", headers=HEADERS).headers["retry-after"]) >= 1
        keys = redis.Redis.from_url(REDIS_URL).keys(f"{prefix}:*")
        assert len(keys) == 1 and API_KEY.encode() not in keys[0]  # the key's digest id, never the key
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for k in client.keys(f"{prefix}:*"):
            client.delete(k)


def test_unreachable_redis_falls_back_to_process_counting(caplog):
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    limiter = RateLimitingMiddleware(requests_per_minute=2, redis_url=f"redis://127.0.0.1:{port}/0")
    with caplog.at_level(logging.WARNING, logger="kailash.api"), TestClient(_gateway(limiter).app) as c:
        assert [c.get("/workflows", headers=HEADERS).status_code for _ in range(3)] == [200, 200, 429]
    assert caplog.text.count("Redis unavailable") == 1


def test_rate_limiting_middleware_on_a_plain_starlette_app():
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    app = Starlette(routes=[Route("/x", lambda r: PlainTextResponse("x"))])
    app.add_middleware(RateLimitingMiddleware, requests_per_minute=1)
    with TestClient(app) as c:
        assert c.get("/x").status_code == 200
        assert c.get("/x").status_code == 429


# -- guessing keys, and who the client is -------------------------------------------------------

def _keyed_gateway(**options):
    gw = WorkflowGateway(port=0, api_keys=[API_KEY], **options)
    gw.register_workflow("double", make_workflows()["double"])
    return gw


def test_invalid_keys_lock_the_address_out_before_the_key_is_checked():
    with TestClient(_keyed_gateway().app, client=("198.51.100.7", 4000)) as c:
        codes = [c.get("/workflows", headers={"X-API-Key": f"guess-{i:04d}"}).status_code for i in range(11)]
        assert codes == [401] * 11  # ten free guesses; the eleventh is answered, then the lockout starts
        locked = c.get("/workflows", headers={"X-API-Key": "guess-again"})
        assert locked.status_code == 429
        assert locked.json()["error"]["code"] == "too_many_invalid_keys"
        assert int(locked.headers["retry-after"]) >= 1
        # while locked out, even the right key gets 429: guessing on tells right from wrong no more
        assert c.get("/workflows", headers=HEADERS).status_code == 429
    with TestClient(_keyed_gateway().app, client=("198.51.100.8", 4000)) as other:
        assert other.get("/workflows", headers=HEADERS).status_code == 200  # other addresses are not affected


def test_lockouts_double_and_a_valid_key_does_not_reset_them():
    import time

    gw = WorkflowGateway(port=0)
    gw.add_middleware(AuthenticationMiddleware(api_keys=[API_KEY], max_failed_keys=1))
    with TestClient(gw.app, client=("198.51.100.9", 4000)) as c:
        assert c.get("/workflows", headers=HEADERS).status_code == 200
        assert [c.get("/runs", headers={"X-API-Key": f"bad-{i}"}).status_code for i in range(3)] == [401, 401, 429]
        time.sleep(1.1)
        assert c.get("/runs", headers={"X-API-Key": "bad-3"}).status_code == 401  # the next failure...
        assert int(c.get("/runs", headers=HEADERS).headers["retry-after"]) == 2  # ...locks for twice as long


def test_ipv6_clients_count_by_their_64_network():
    gw = _keyed_gateway()
    for i, host in enumerate(f"2001:db8::{n:x}" for n in range(1, 13)):  # a new address per guess, one /64
        with TestClient(gw.app, client=(host, 4000)) as c:
            status = c.get("/workflows", headers={"X-API-Key": f"guess-{i}"}).status_code
    assert status == 429


def _serve(gw):
    return gw.serve_in_thread()


def test_forwarded_for_from_an_untrusted_peer_does_not_make_a_new_bucket():
    import httpx

    gw = _keyed_gateway()
    gw.add_middleware(RateLimitingMiddleware(requests_per_minute=2, exempt_paths=()))
    running = _serve(gw)
    try:
        codes = [httpx.get(f"{running.url}/nodes/PythonCodeNode", headers={"X-Forwarded-For": f"203.0.113.{i}"})
                 .status_code for i in range(4)]
        assert codes == [200, 200, 429, 429]
        guesses = [httpx.get(f"{running.url}/workflows", headers={"X-API-Key": f"guess-{i}",
                                                                   "X-Forwarded-For": f"203.0.113.{i}"}).status_code
                   for i in range(12)]
        assert guesses[-1] == 429  # the lockout follows the socket's address, not the header
    finally:
        running.stop()


def test_forwarded_for_is_believed_from_trusted_proxies_only():
    import httpx

    gw = _keyed_gateway(trusted_proxies=["127.0.0.0/8"])
    gw.add_middleware(RateLimitingMiddleware(requests_per_minute=2, exempt_paths=()))
    running = _serve(gw)
    try:
        def get(chain):
            return httpx.get(f"{running.url}/nodes/PythonCodeNode", headers={"X-Forwarded-For": chain}).status_code

        # the proxy (us, on loopback) names the client; the client's own claims to its left are ignored
        assert [get("203.0.113.5") for _ in range(3)] == [200, 200, 429]
        assert [get(f"10.9.9.{i}, 203.0.113.6") for i in range(3)] == [200, 200, 429]
        assert get("203.0.113.7, 127.0.0.1") == 200  # a chain of trusted proxies is walked through
    finally:
        running.stop()


def test_trusted_proxies_are_checked():
    with pytest.raises(ValueError, match="trusted_proxies: 'proxy.example' is not an IP address or network"):
        WorkflowGateway(port=0, trusted_proxies=["proxy.example"])

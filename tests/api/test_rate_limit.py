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

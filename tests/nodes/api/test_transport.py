"""The shared HTTP machinery: token bucket, retry policy, Retry-After, the exchange steps."""

from __future__ import annotations

import email.utils
import pickle
import time

import httpx
import pytest

from kailash.nodes.api._transport import (
    RetryPolicy,
    Send,
    Sleep,
    TokenBucket,
    _retry_after,
    display_url,
    exchange,
)
from kailash.security.secrets import Secret, plain_secret_values, render_template, template_fields


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_spaces_requests_at_the_rate():
    clock = FakeClock()
    bucket = TokenBucket(60, clock=clock)  # one per second
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(1.0)
    assert bucket.reserve() == pytest.approx(2.0)  # reservations queue up
    clock.now += 10  # refills, capped at the burst size
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(1.0)


def test_token_bucket_burst_allows_that_many_at_once():
    clock = FakeClock()
    bucket = TokenBucket(120, burst=3, clock=clock)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve() == pytest.approx(0.5)


def test_token_bucket_survives_pickling():
    bucket = pickle.loads(pickle.dumps(TokenBucket(60)))
    assert bucket.reserve() == 0.0


def test_retry_policy_doubles_and_caps():
    policy = RetryPolicy(retries=5, backoff=0.5, max_backoff=3.0, jitter=False)
    assert [policy.delay(a) for a in range(4)] == [0.5, 1.0, 2.0, 3.0]
    assert policy.delay(0, retry_after=2.5) == 2.5
    assert policy.delay(0, retry_after=100) == 3.0  # never longer than max_backoff


def _response(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("GET", "http://x/"))


def test_retry_after_seconds_and_http_date():
    assert _retry_after(_response(429, {"Retry-After": "3"})) == 3.0
    later = email.utils.formatdate(time.time() + 20, usegmt=True)
    assert 15 < _retry_after(_response(503, {"Retry-After": later})) <= 20
    assert _retry_after(_response(503)) is None
    assert _retry_after(_response(503, {"Retry-After": "soon"})) is None


def test_exchange_retries_5xx_then_returns_success():
    request = httpx.Request("GET", "http://x/")
    steps = exchange(request, RetryPolicy(retries=2, backoff=0.1, jitter=False), None)
    assert isinstance(next(steps), Send)
    assert steps.send(_response(502)) == Sleep(0.1)
    assert isinstance(next(steps), Send)
    assert steps.send(_response(503, {"Retry-After": "1"})) == Sleep(1.0)
    assert isinstance(next(steps), Send)
    with pytest.raises(StopIteration) as stop:
        steps.send(_response(200))
    assert stop.value.value.attempts == 3
    assert stop.value.value.response.status_code == 200


def test_exchange_gives_back_the_last_error_response_when_retries_run_out():
    steps = exchange(httpx.Request("GET", "http://x/"), RetryPolicy(retries=1, backoff=0.1, jitter=False), None)
    next(steps)
    assert steps.send(_response(500)) == Sleep(0.1)
    next(steps)
    with pytest.raises(StopIteration) as stop:
        steps.send(_response(500))
    assert stop.value.value.response.status_code == 500


def test_exchange_does_not_retry_client_errors():
    steps = exchange(httpx.Request("GET", "http://x/"), RetryPolicy(retries=3), None)
    next(steps)
    with pytest.raises(StopIteration) as stop:
        steps.send(_response(404))
    assert stop.value.value.attempts == 1


def test_exchange_reraises_connection_errors_after_retries():
    steps = exchange(httpx.Request("GET", "http://x/"), RetryPolicy(retries=1, backoff=0.2, jitter=False), None)
    next(steps)
    assert steps.throw(httpx.ConnectError("refused")) == Sleep(0.2)
    next(steps)
    with pytest.raises(httpx.ConnectError) as info:
        steps.throw(httpx.ConnectError("refused"))
    assert info.value.attempts == 2


def test_exchange_waits_for_the_rate_limit_before_sending():
    clock = FakeClock()
    bucket = TokenBucket(60, clock=clock)
    bucket.reserve()  # the only token is taken
    steps = exchange(httpx.Request("GET", "http://x/"), RetryPolicy(), bucket)
    assert next(steps) == Sleep(pytest.approx(1.0))
    assert isinstance(next(steps), Send)


def test_display_url_hides_credentials_and_query():
    assert display_url("https://user:pw@api.example.com:8443/v1/items?api_key=abc") == \
        "https://api.example.com:8443/v1/items"


def test_render_template_keeps_secrets_secret():
    value = render_template("Bearer {token}", {"token": Secret("t0ken-value")})
    assert isinstance(value, Secret)
    assert str(value) == "***" and f"{value}" == "***"
    assert value.reveal() == "Bearer t0ken-value"
    assert render_template("/users/{id}", {"id": 7}) == "/users/7"
    assert template_fields("{a}/{b}/{{literal}}/{a}") == ["a", "b"]
    with pytest.raises(KeyError):
        render_template("{missing}", {})


def test_plain_secret_values_finds_nested_secrets_but_not_the_scheme():
    found = plain_secret_values({"h": {"Authorization": Secret("Bearer abcdef123")}}, [Secret("k-999999")])
    assert {"Bearer abcdef123", "abcdef123", "k-999999"} <= found
    assert "Bearer" not in found

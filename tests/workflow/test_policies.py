"""Failure policies: building and validating them (data, in ``kailash.workflow.policies``),
saving them, and how each part behaves when a runtime applies them (``kailash.runtime.policies``)."""

from __future__ import annotations

import threading
import time

import pytest

from kailash.errors import (
    NodeConfigurationError,
    NodeExecutionError,
    NodeTimeoutError,
    SerializationError,
    WorkflowValidationError,
)
from kailash.nodes.base import Node, NodeParameter
from kailash.nodes.code.python import PythonCodeNode
from kailash.runtime import LocalRuntime
from kailash.runtime.policies import CircuitBreaker, ResultCache, fingerprint, policy_state
from kailash.security.secrets import Secret
from kailash.workflow import Workflow
from kailash.workflow.policies import BreakerPolicy, CachePolicy, CircuitOpenError, NodePolicy, RetryPolicy


class Counter(Node):
    """Counts its calls in node state; fails while ``calls <= fail_until``."""

    def get_parameters(self):
        return {"fail_until": NodeParameter(type=int, default=0), "x": NodeParameter(default=None),
                "error": NodeParameter(type=str, default="io")}

    def run(self, fail_until=0, x=None, error="io"):
        self.state.calls = getattr(self.state, "calls", 0) + 1
        if self.state.calls <= fail_until:
            if error == "config":
                raise NodeConfigurationError("bad config", node_id=self.name)
            raise OSError(f"flaky {self.state.calls}")
        return {"result": self.state.calls, "x": x}


class Spinner(Node):
    """A pure-Python busy loop that runs until ``release`` is set; counts iterations in node state."""

    release = threading.Event()

    def run(self):
        self.state.spins = 0
        while not self.release.is_set():
            self.state.spins += 1
        return {"result": self.state.spins}


def one(node: Node, name: str = "n") -> Workflow:
    wf = Workflow("policy-test")
    wf.add_node(name, node)
    return wf


# -- building, validating, saving -------------------------------------------------------------------

def test_set_policy_builds_a_frozen_policy_and_recompiles():
    wf = one(Counter())
    plan = wf.compile()
    assert plan.by_id["n"].direct and plan.by_id["n"].policy is None  # the hot path stays direct
    policy = wf.set_policy("n", retries=2, backoff=0.1, jitter=False, timeout=3, circuit_breaker=4, cache_ttl=30)
    assert isinstance(policy, NodePolicy)
    step = wf.compile().by_id["n"]
    assert step.policy is policy and not step.direct
    assert policy.retry == RetryPolicy(retries=2, backoff=0.1, max_backoff=60.0, jitter=False)
    assert policy.timeout.seconds == 3.0
    assert isinstance(policy.circuit_breaker, BreakerPolicy) and policy.circuit_breaker.failure_threshold == 4
    assert isinstance(policy.cache, CachePolicy) and policy.cache.ttl == 30.0
    with pytest.raises(AttributeError):
        policy.retry = None  # type: ignore[misc]
    with pytest.raises(AttributeError):
        step.policy = None  # type: ignore[misc]  # the plan is immutable too
    state = policy_state(policy)  # the runtime's live objects for the spec, made once
    assert state is policy_state(policy) and isinstance(state.breaker, CircuitBreaker)
    assert isinstance(state.cache, ResultCache) and state.cache.ttl == 30.0
    assert wf.set_policy("n") is None  # no options: the policy is removed
    assert "n" not in wf.policies and wf.compile().by_id["n"].direct


def test_policy_on_unknown_node_is_refused_with_close_matches():
    wf = one(Counter(), "fetch_orders")
    with pytest.raises(WorkflowValidationError, match=r"no node 'fetch_order' .*did you mean 'fetch_orders'") as info:
        wf.set_policy("fetch_order", retries=1)
    assert info.value.node_id == "fetch_order"


@pytest.mark.parametrize("options, message", [
    ({"timeout": -1}, r"timeout must be a positive number of seconds, got -1"),
    ({"timeout": 0}, r"timeout must be a positive number of seconds, got 0"),
    ({"retries": -2}, r"retries must be an integer >= 0, got -2"),
    ({"retries": 1.5}, r"retries must be an integer >= 0"),
    ({"backoff": -0.1}, r"backoff must be >= 0"),
    ({"cache_ttl": "soon"}, r"cache_ttl must be a number of seconds, got str"),
    ({"circuit_breaker": {"threshold": 3}}, r"circuit_breaker has unknown option\(s\) threshold"),
    ({"circuit_breaker": 0}, r"failure_threshold must be an integer >= 1, got 0"),
])
def test_bad_policy_values_are_reported_with_node_and_parameter(options, message):
    wf = one(Counter())
    with pytest.raises(WorkflowValidationError, match=message) as info:
        wf.set_policy("n", **options)
    assert "invalid policy for node 'n'" in str(info.value)
    assert info.value.node_id == "n"
    assert "n" not in wf.policies


def test_every_problem_is_reported_at_once():
    with pytest.raises(WorkflowValidationError) as info:
        one(Counter()).set_policy("n", retries=-1, timeout=-1, cache_ttl=0)
    assert len(info.value.problems) == 3


def test_policies_survive_save_and_load(tmp_path):
    wf = Workflow("saved")
    wf.add_node("fetch", PythonCodeNode(code="result = 1"))
    wf.set_policy("fetch", retries=3, backoff=0.25, jitter=False, timeout=10,
                  circuit_breaker={"failure_threshold": 2, "reset_timeout": 5}, cache_ttl=60)
    for fmt in ("yaml", "json"):
        path = wf.save(tmp_path / f"wf.{fmt}")
        loaded = Workflow.load(path)
        assert loaded.policies["fetch"].to_dict() == wf.policies["fetch"].to_dict() == {
            "retries": 3, "backoff": 0.25, "max_backoff": 60.0, "jitter": False, "timeout": 10.0,
            "circuit_breaker": {"failure_threshold": 2, "reset_timeout": 5.0}, "cache_ttl": 60.0,
        }
        # a loaded workflow has its own breaker: state is per workflow object
        assert policy_state(loaded.policies["fetch"]).breaker is not policy_state(wf.policies["fetch"]).breaker


def test_loading_a_bad_policy_names_node_and_option():
    base = {"name": "w", "nodes": [{"id": "a", "type": "PythonCodeNode", "config": {"code": "result = 1"}}]}
    with pytest.raises(SerializationError, match=r"policy for node 'a' has unknown option\(s\) 'retry'"):
        Workflow.from_dict({**base, "policies": {"a": {"retry": 3}}})
    with pytest.raises(SerializationError, match=r"timeout must be a positive number of seconds, got -5"):
        Workflow.from_dict({**base, "policies": {"a": {"timeout": -5}}})
    with pytest.raises(SerializationError, match=r"set_policy: no node 'b'"):
        Workflow.from_dict({**base, "policies": {"b": {"timeout": 5}}})


# -- retries -----------------------------------------------------------------------------------------

def test_backoff_is_exponential_capped_and_jittered():
    plain = RetryPolicy(retries=5, backoff=0.5, max_backoff=3.0, jitter=False)
    assert [plain.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    jittered = RetryPolicy(retries=5, backoff=1.0, max_backoff=60.0, jitter=True)
    assert jittered.delay(3, rand=0.0) == 2.0 and jittered.delay(3, rand=0.999) == pytest.approx(3.998)
    samples = {jittered.delay(2) for _ in range(50)}
    assert all(1.0 <= s <= 2.0 for s in samples) and len(samples) > 1


def test_retries_until_success_and_reports_attempts_on_exhaustion():
    node = Counter(fail_until=2)
    wf = one(node)
    wf.set_policy("n", retries=2, backoff=0.001)
    results, _ = LocalRuntime().execute(wf)
    assert results["n"]["result"] == 3

    wf2 = one(Counter(fail_until=10))
    wf2.set_policy("n", retries=2, backoff=0.001)
    with pytest.raises(NodeExecutionError, match=r"OSError: flaky 3 \(failed 3 attempts\)") as info:
        LocalRuntime().execute(wf2)
    assert info.value.attempts == 3 and info.value.node_id == "n"


def test_configuration_errors_are_not_retried():
    node = Counter(fail_until=5, error="config")
    wf = one(node)
    wf.set_policy("n", retries=3, backoff=0.001)
    with pytest.raises(NodeConfigurationError, match="bad config"):
        LocalRuntime().execute(wf)
    assert node.state.calls == 1


# -- timeouts ----------------------------------------------------------------------------------------

def test_timed_out_sync_node_is_reported_and_abandoned_not_interrupted():
    node = Spinner()
    wf = one(node, "spin")
    wf.add_node("after", PythonCodeNode(code="result = data"))
    wf.connect("spin", "after")
    wf.set_policy("spin", timeout=0.2)
    Spinner.release.clear()
    try:
        t0 = time.monotonic()
        with pytest.raises(NodeTimeoutError, match=r"node 'spin' \(Spinner\) timed out after 0.2 s; it was abandoned") as info:
            LocalRuntime().execute(wf)
        assert time.monotonic() - t0 < 2  # the run did not wait for the node
        assert isinstance(info.value, TimeoutError) and info.value.parameter == "timeout"
        assert "result" not in info.value.results.get("spin", {})  # its late result is never used
        spins = node.state.spins
        time.sleep(0.05)
        assert node.state.spins > spins  # no exception was injected: the thread runs on
    finally:
        Spinner.release.set()
    deadline = time.monotonic() + 5
    while any(t.name == "kailash-node-timeout" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(t.name == "kailash-node-timeout" for t in threading.enumerate())  # ends when the node returns


def test_no_module_injects_exceptions_into_threads():
    import pathlib

    import kailash

    root = pathlib.Path(kailash.__file__).parent
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py") if "SetAsyncExc" in p.read_text()]
    assert offenders == []


def test_timeout_applies_to_each_attempt():
    class SlowOnce(Node):
        def run(self):
            self.state.calls = getattr(self.state, "calls", 0) + 1
            if self.state.calls == 1:
                time.sleep(2)
            return {"result": self.state.calls}

    wf = one(SlowOnce())
    wf.set_policy("n", timeout=0.2, retries=1, backoff=0.001)
    assert LocalRuntime().execute(wf)[0]["n"]["result"] == 2


# -- circuit breaker ---------------------------------------------------------------------------------

def test_circuit_breaker_opens_half_opens_and_closes():
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=0.2)
    node = Counter(fail_until=3)
    wf = one(node)
    wf.set_policy("n", circuit_breaker=breaker)
    runtime = LocalRuntime()
    for i in (1, 2):
        with pytest.raises(NodeExecutionError, match=f"flaky {i}"):
            runtime.execute(wf)
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError, match=r"circuit breaker is open after 2 consecutive failures "
                                               r"\(last: .*flaky 2.*\); not calling it for another"):
        runtime.execute(wf)
    assert node.state.calls == 2  # not called while open
    time.sleep(0.25)
    assert breaker.state == "half-open"
    with pytest.raises(NodeExecutionError, match="flaky 3"):  # the trial call fails: open again
        runtime.execute(wf)
    assert breaker.state == "open"
    time.sleep(0.25)
    assert runtime.execute(wf)[0]["n"]["result"] == 4  # trial succeeds: closed
    assert breaker.state == "closed" and breaker.failures == 0


def test_one_breaker_can_guard_several_nodes():
    shared = CircuitBreaker(failure_threshold=1, reset_timeout=60)
    wf = Workflow("two")
    wf.add_node("a", Counter(fail_until=9))
    wf.add_node("b", Counter())
    wf.set_policy("a", circuit_breaker=shared)
    wf.set_policy("b", circuit_breaker=shared)
    with pytest.raises(NodeExecutionError):
        LocalRuntime().execute(wf)
    with pytest.raises(CircuitOpenError):
        LocalRuntime().execute(wf)


# -- result cache ------------------------------------------------------------------------------------

def test_cache_is_keyed_by_inputs_and_expires():
    node = Counter()
    wf = one(node)
    policy = policy_state(wf.set_policy("n", cache_ttl=0.3))
    rt = LocalRuntime()
    assert rt.execute(wf, {"n": {"x": 1}})[0]["n"]["result"] == 1
    assert rt.execute(wf, {"n": {"x": 1}})[0]["n"]["result"] == 1  # cached
    assert rt.execute(wf, {"n": {"x": 2}})[0]["n"]["result"] == 2  # other inputs
    assert policy.cache.hits == 1
    time.sleep(0.35)
    assert rt.execute(wf, {"n": {"x": 1}})[0]["n"]["result"] == 3  # expired


def test_fingerprint_separates_values_types_and_secrets():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 1.0}) != fingerprint({"a": "1"})
    assert fingerprint({"a": [1]}) != fingerprint({"a": (1,)})
    assert fingerprint({"k": Secret("one")}) != fingerprint({"k": Secret("two")})
    assert fingerprint({"k": Secret("one")}) == fingerprint({"k": Secret("one")})
    assert fingerprint({"lock": threading.Lock()}) is None  # not cacheable: the node just runs


def test_cache_keeps_at_most_max_entries():
    cache = ResultCache(ttl=60, max_entries=2)
    for k in "abc":
        cache.put(k, {"v": k})
    assert len(cache) == 2 and cache.get("a") is None and cache.get("c") == {"v": "c"}


def test_policy_problems_are_data_naming_node_parameter_and_expectation():
    from kailash.errors import WorkflowValidationError
    from kailash.workflow.policies import make_policy

    with pytest.raises(WorkflowValidationError) as info:
        make_policy("fetch", retries=-1, timeout="soon", circuit_breaker={"failure_threshold": 0})
    found = {(p.node_id, p.parameter, p.expected) for p in info.value.problems}
    assert found == {("fetch", "retries", "an integer >= 0"), ("fetch", "timeout", "a number of seconds"),
                     ("fetch", "circuit_breaker.failure_threshold", "an integer >= 1")}
    assert info.value.parameter == "retries"
    assert "set_policy('fetch'): retries must be an integer >= 0, got -1" in str(info.value)



def test_a_cancelled_half_open_trial_does_not_leave_the_circuit_open_for_good():
    import asyncio

    from kailash.nodes.base_async import AsyncNode
    from kailash.runtime import ParallelRuntime

    class Flaky(AsyncNode):
        calls = 0

        async def async_run(self):
            type(self).calls += 1
            if type(self).calls == 1:
                raise OSError("down")
            if type(self).calls == 2:
                await asyncio.sleep(30)  # the trial call hangs: its caller gives up (cancels)
            return {"result": type(self).calls}

    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=0.1)
    wf = one(Flaky())
    wf.set_policy("n", circuit_breaker=breaker)

    async def scenario():
        runtime = ParallelRuntime()
        with pytest.raises(NodeExecutionError, match="down"):
            await runtime.execute(wf)
        assert breaker.state == "open"
        await asyncio.sleep(0.15)
        trial = asyncio.ensure_future(runtime.execute(wf))
        while Flaky.calls < 2:
            await asyncio.sleep(0.01)
        trial.cancel()
        with pytest.raises(asyncio.CancelledError):
            await trial
        # the cancelled trial proved nothing: the circuit is still open past its timeout,
        # and the next call is let through as the new trial (before the fix: refused for good)
        assert breaker.state == "half-open"
        results, _ = await runtime.execute(wf)
        return results

    results = asyncio.run(scenario())
    assert results["n"]["result"] == 3
    assert breaker.state == "closed"


def test_a_sync_half_open_trial_interrupted_by_ctrl_c_frees_the_trial_slot():
    class Interrupted(Node):
        calls = 0

        def run(self):
            type(self).calls += 1
            if type(self).calls == 1:
                raise OSError("down")
            if type(self).calls == 2:
                raise KeyboardInterrupt  # Ctrl-C during the trial: no outcome
            return {"result": type(self).calls}

    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=0.05)
    wf = one(Interrupted())
    wf.set_policy("n", circuit_breaker=breaker)
    runtime = LocalRuntime(store=None)
    with pytest.raises(NodeExecutionError, match="down"):
        runtime.execute(wf)
    time.sleep(0.1)
    with pytest.raises(KeyboardInterrupt):
        runtime.execute(wf)
    assert breaker.state == "half-open" and breaker.failures == 1  # nothing recorded, still past its timeout
    assert runtime.execute(wf)[0]["n"]["result"] == 3  # the next call is the trial, and closes the circuit
    assert breaker.state == "closed"


def test_breaker_release_frees_the_trial_slot_without_recording():
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=0.0)
    breaker.record(False, "boom")
    breaker.before("n")  # the trial is let through
    with pytest.raises(CircuitOpenError):
        breaker.before("n")  # only one trial at a time
    breaker.release()
    breaker.before("n")  # a released trial: the next call is the trial
    assert breaker.failures == 1 and breaker.last_error == "boom"

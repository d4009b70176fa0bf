"""Runtime test fixtures: one runner per runtime, and one embedded Dask cluster for the session.

Dask starts slowly on two cores, so the cluster is started once (on first use) and
every Dask test gets a fresh ``DaskRuntime`` on the shared client, bound to that
test's ``KAILASH_HOME``.
"""

from __future__ import annotations

from typing import Any

import pytest

RUNTIMES = ["local", "parallel", "dask", "testing"]


@pytest.fixture(scope="session")
def dask_client():
    pytest.importorskip("distributed")
    from kailash.runtime.distributed import DaskRuntime

    runtime = DaskRuntime(store=None)  # the embedded 2-worker LocalCluster
    try:
        yield runtime.client
    finally:
        runtime.close()


class Runner:
    """One runtime behind the same small interface, so a test can run on all of them."""

    def __init__(self, kind: str, runtime: Any) -> None:
        self.kind = kind
        self.runtime = runtime

    def run(self, workflow: Any, parameters: dict[str, Any] | None = None) -> Any:
        if self.kind == "testing":
            return self.runtime.execute(workflow, parameters)
        if self.kind == "parallel":
            results, run_id = self.runtime.execute_sync(workflow, parameters)
        else:
            results, run_id = self.runtime.execute(workflow, parameters)
        assert results.run_id == run_id
        return results

    def resume(self, run_id: str, workflow: Any, **kwargs: Any) -> tuple[Any, str]:
        from kailash.runtime.resume import resume

        return resume(run_id, workflow, runtime=self.runtime, **kwargs)

    def record(self, run_id: str) -> Any:
        from kailash.runtime.store import default_store

        return default_store().get_run(run_id)


def make_runner(kind: str, request: Any) -> Runner:
    if kind == "local":
        from kailash.runtime import LocalRuntime

        return Runner(kind, LocalRuntime())
    if kind == "parallel":
        from kailash.runtime import ParallelRuntime

        runtime = ParallelRuntime(max_concurrency=8)
        request.addfinalizer(runtime.close)
        return Runner(kind, runtime)
    if kind == "dask":
        from kailash.runtime import DaskRuntime

        return Runner(kind, DaskRuntime(client=request.getfixturevalue("dask_client")))
    from kailash.runtime.testing import TestRuntime

    return Runner(kind, TestRuntime(store="default"))


@pytest.fixture(params=RUNTIMES)
def runner(request) -> Runner:
    return make_runner(request.param, request)


@pytest.fixture(params=RUNTIMES)
def recording_runner(request) -> Runner:
    """Every runtime, recording runs (TestRuntime records only when given ``store=``, as here)."""
    return make_runner(request.param, request)


@pytest.fixture
def reference(request) -> Runner:
    """LocalRuntime: what every runtime must agree with."""
    return make_runner("local", request)

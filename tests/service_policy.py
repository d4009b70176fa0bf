"""In CI (``CI=true``) a test that would skip because a service it needs is missing fails instead.

Service-backed tests skip on a developer's machine without PostgreSQL, Redis, a broker or
their client libraries; in CI that skip would hide that the run tested less than it says.
Loaded by ``tests/conftest.py`` (and usable as a plugin: ``pytest -p tests.service_policy``).
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

#: skip reasons that name a service (or its client library) the test suite expects in CI
SERVICE = re.compile(r"PostgreSQL|Postgres|Redis|RabbitMQ|AMQP|MariaDB|MySQL|Mosquitto|MQTT|NATS|"
                     r"could not import '(psycopg|psycopg_pool|redis|aio_pika|nats|paho|pymysql)", re.IGNORECASE)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Any:
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail") or not in_ci():
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if SERVICE.search(reason):
        report.outcome = "failed"
        report.longrepr = (f"CI=true: a service this test needs is missing, which fails the run instead of "
                           f"skipping it: {reason}")

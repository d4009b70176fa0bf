"""Running a gateway under uvicorn (in the foreground, or in a thread), and its lifespan.

Also keeps API keys out of the access log: a browser's ``EventSource``/``WebSocket``
sends its key as ``?api_key=``, which the access-log filter shows as ``api_key=***``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["RunningGateway", "uvicorn_server", "serve_in_thread", "lifespan"]

logger = logging.getLogger("kailash.api")


@dataclass(kw_only=True)
class RunningGateway:
    """A gateway serving from a background thread (see :meth:`WorkflowGateway.serve_in_thread`)."""

    url: str
    port: int
    server: Any
    thread: threading.Thread

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and wait for the thread to end."""
        self.server.should_exit = True
        self.thread.join(timeout)


@contextlib.asynccontextmanager
async def lifespan(gateway: Any) -> Any:
    """The gateway's startup and shutdown: keys ready, the queue worker and the schedule tick started first; runs, Redis and owned storage closed last."""
    import asyncio

    auth = gateway.authentication
    if auth is not None:
        auth.prepare()  # generate the key file now, not on the first request with a key
    worker = await asyncio.to_thread(gateway.queue_worker)
    if worker is not None:  # runs queued before this gateway started (or left by one that died) start now
        worker.loop = asyncio.get_running_loop()
        worker.start()
    ticking = None
    if gateway.schedule_tick is not None:
        from kailash.api.scheduling import schedule_loop

        ticking = asyncio.create_task(schedule_loop(gateway), name="kailash-schedules")
    try:
        yield
    finally:
        if ticking is not None:
            ticking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticking
        await gateway.aclose()


def uvicorn_server(gateway: Any, **config: Any) -> Any:
    """A ``uvicorn.Server`` for ``gateway`` (its host, port and log level), after checking its exposure."""
    from kailash.api.gateway import require_fastapi

    require_fastapi()
    import uvicorn

    gateway.check_exposure()
    if gateway.keyless:
        logger.warning("serving WITHOUT API keys: any program or user on this machine can run code as this "
                       "process; pages from other origins and other Host names are refused")
    # the client address comes from trusted_proxies alone: uvicorn's own X-Forwarded-For
    # handling would believe any local caller (each request a new rate-limit bucket)
    config.setdefault("proxy_headers", False)

    options = {"host": gateway.host, "port": gateway.port, "log_level": gateway.log_level, "lifespan": "on"}
    cfg = uvicorn.Config(gateway.app, **{**options, **config})
    server = uvicorn.Server(cfg)
    _redact_access_log()  # after Config, which (re)configures uvicorn's loggers
    return server


def announce_when_started(server: Any, sockets: list[Any]) -> None:
    """Log uvicorn's "running on" line for a server given bound ``sockets`` (uvicorn says it only when
    it binds itself), once its startup has finished."""
    def wait() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.02)
        if server.started and not server.should_exit:
            host, port = sockets[0].getsockname()[:2]
            url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
            logging.getLogger("uvicorn.error").info("Uvicorn running on %s (Press CTRL+C to quit)", url)

    threading.Thread(target=wait, name="kailash-announce", daemon=True).start()


def serve_in_thread(gateway: Any, timeout: float = 15.0, **config: Any) -> RunningGateway:
    """Start ``gateway`` in a daemon thread; return once it accepts connections."""
    server = uvicorn_server(gateway, **config)
    thread = threading.Thread(target=server.run, name="kailash-gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the gateway did not start on {gateway.host}:{gateway.port} within {timeout} s")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return RunningGateway(url=f"http://{gateway.host}:{port}", port=port, server=server, thread=thread)


_QUERY_KEY = re.compile(r"(api_key=)[^&\s]*")


class _RedactKeys(logging.Filter):
    """Access-log lines never show an ``api_key`` query parameter."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_QUERY_KEY.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = _QUERY_KEY.sub(r"\1***", record.msg)
        return True


def _redact_access_log() -> None:
    log = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _RedactKeys) for f in log.filters):
        log.addFilter(_RedactKeys())

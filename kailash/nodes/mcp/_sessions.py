"""Live MCP sessions, kept open and reused across node runs.

MCP sessions are async context managers tied to one event loop, while nodes run from
sync code (often a fresh ``asyncio.run`` each time). So the pool owns one background
event loop on a daemon thread; each server gets a holder task there that opens the
transport (stdio subprocess or streamable HTTP) and the ``ClientSession``, then waits
until closed. Callers submit coroutines with a timeout from any thread. A session
whose server died is dropped so the next call reconnects. Sessions close at
interpreter exit, or with :func:`close_sessions`.

The ``mcp`` SDK is imported here, on first connection.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import tempfile
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from kailash.nodes.mcp.servers import MCPServerConfig, MCPServerError

__all__ = ["SessionPool", "get_pool", "close_sessions"]

T = TypeVar("T")


def require_mcp() -> Any:
    try:
        import mcp
    except ImportError as exc:
        raise ImportError("MCP support needs the official MCP SDK: pip install 'kailash[mcp]'") from exc
    return mcp


class _Live:
    """One open session and what is needed to close it."""

    def __init__(self, config: MCPServerConfig) -> None:
        self.config = config
        self.ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.session: Any = None
        self.stderr = tempfile.TemporaryFile(mode="w+b")
        self.dead = False

    def stderr_tail(self, limit: int = 400) -> str:
        with contextlib.suppress(OSError, ValueError):
            self.stderr.flush()
            size = self.stderr.seek(0, os.SEEK_END)
            self.stderr.seek(max(0, size - limit))
            return self.stderr.read().decode("utf-8", "replace").strip()
        return ""


class SessionPool:
    """Open MCP sessions by server identity, served from one background event loop."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._live: dict[tuple[Any, ...], _Live] = {}

    # -- loop --------------------------------------------------------------------------
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or not self._loop.is_running():
                loop = asyncio.new_event_loop()
                started = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(started.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=serve, name="kailash-mcp-sessions", daemon=True)
                self._thread.start()
                started.wait(10)
                self._loop = loop
            return self._loop

    def submit(self, factory: Callable[[], Awaitable[T]], timeout: float) -> T:
        """Run ``factory()`` on the pool's loop and wait at most ``timeout`` seconds."""
        loop = self._ensure_loop()
        if threading.current_thread() is self._thread:  # pragma: no cover - misuse guard
            raise RuntimeError("SessionPool.submit called from its own event loop")

        async def runner() -> T:
            return await asyncio.wait_for(factory(), timeout)

        future = asyncio.run_coroutine_threadsafe(runner(), loop)
        try:
            return future.result(timeout + 5)
        except TimeoutError:
            future.cancel()
            raise

    # -- sessions (run on the loop) ------------------------------------------------------
    async def session(self, config: MCPServerConfig, connect_timeout: float) -> Any:
        """The open session for ``config``, connecting on first use."""
        live = self._live.get(config.key)
        if live is not None and (live.dead or (live.task is not None and live.task.done())):
            self._live.pop(config.key, None)
            live = None
        if live is None:
            live = _Live(config)
            self._live[config.key] = live
            live.task = asyncio.get_running_loop().create_task(self._hold(live))
        try:
            return await asyncio.wait_for(asyncio.shield(live.ready), connect_timeout)
        except TimeoutError:
            self._drop(live)
            raise MCPServerError(
                f"MCP server {config.describe()} did not finish the MCP handshake within {connect_timeout:g}s"
                + _tail(live),
                server=config.name, expected=f"a handshake within {connect_timeout:g}s",
            ) from None
        except MCPServerError:
            self._drop(live)
            raise

    async def _hold(self, live: _Live) -> None:
        mcp = require_mcp()
        cfg = live.config
        try:
            async with contextlib.AsyncExitStack() as stack:
                if cfg.url:
                    from mcp.client.streamable_http import streamable_http_client

                    streams = await stack.enter_async_context(streamable_http_client(cfg.url))
                else:
                    params = mcp.StdioServerParameters(command=cfg.command, args=list(cfg.args),
                                                       env=cfg.env_dict() or None, cwd=cfg.cwd)
                    streams = await stack.enter_async_context(mcp.stdio_client(params, errlog=live.stderr))
                read, write = streams[0], streams[1]
                session = await stack.enter_async_context(mcp.ClientSession(read, write))
                await session.initialize()
                live.session = session
                if not live.ready.done():
                    live.ready.set_result(session)
                await live.stop.wait()
        except BaseException as exc:  # reported to whoever waits on ready; the task itself ends
            live.dead = True
            if not live.ready.done():
                live.ready.set_exception(_connect_error(cfg, exc, live))
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
        finally:
            live.dead = True
            with contextlib.suppress(OSError):
                live.stderr.close()

    def _drop(self, live: _Live) -> None:
        live.dead = True
        live.stop.set()
        if self._live.get(live.config.key) is live:
            self._live.pop(live.config.key, None)

    def mark_broken(self, config: MCPServerConfig) -> None:
        """Forget a session whose connection failed, so the next use reconnects (loop side)."""
        live = self._live.get(config.key)
        if live is not None:
            self._drop(live)

    def stderr_tail(self, config: MCPServerConfig) -> str:
        live = self._live.get(config.key)
        return live.stderr_tail() if live else ""

    # -- closing -------------------------------------------------------------------------
    def close(self, config: MCPServerConfig | None = None, timeout: float = 10.0) -> None:
        """Close one server's session, or all of them."""
        if self._loop is None or not self._loop.is_running():
            return

        async def closer() -> None:
            targets = [live for k, live in list(self._live.items()) if config is None or k == config.key]
            for live in targets:
                self._drop(live)
            tasks = [live.task for live in targets if live.task is not None]
            if tasks:
                await asyncio.wait(tasks, timeout=timeout)

        with contextlib.suppress(Exception):
            self.submit(closer, timeout + 1)

    def open_servers(self) -> list[str]:
        """Names of servers with a live session."""
        return sorted(live.config.name for live in self._live.values() if not live.dead)


def _tail(live: _Live) -> str:
    tail = live.stderr_tail()
    return f"; server stderr: {tail[-300:]}" if tail else ""


def _connect_error(cfg: MCPServerConfig, exc: BaseException, live: _Live) -> MCPServerError:
    if isinstance(exc, FileNotFoundError) and cfg.command:
        msg = f"cannot start MCP server {cfg.describe()}: command '{cfg.command}' not found"
    elif isinstance(exc, PermissionError) and cfg.command:
        msg = f"cannot start MCP server {cfg.describe()}: command '{cfg.command}' is not executable"
    elif isinstance(exc, asyncio.CancelledError):
        msg = f"connection to MCP server {cfg.describe()} was cancelled"
    else:
        detail = _flatten(exc)
        msg = f"MCP server {cfg.describe()} failed during the MCP handshake ({detail}); it may have exited at once"
    err = MCPServerError(msg + _tail(live), server=cfg.name)
    if isinstance(exc, Exception):
        err.__cause__ = exc
    return err


def _flatten(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


_pool: SessionPool | None = None
_pool_lock = threading.Lock()


def get_pool() -> SessionPool:
    """The process-wide session pool."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = SessionPool()
            atexit.register(_pool.close, None, 5.0)
        return _pool


def close_sessions(server: Any = None) -> None:
    """Close the reused session of ``server`` (a config, dict, URL or name), or all sessions."""
    if _pool is None:
        return
    _pool.close(MCPServerConfig.from_any(server) if server is not None else None)

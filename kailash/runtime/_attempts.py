"""Running one attempt of a node under a time limit, and fingerprinting inputs for the cache.

The helpers :mod:`kailash.runtime.policies` uses. A timed sync node runs in its own
daemon thread (its context copied); at the deadline the caller stops waiting and raises
:class:`~kailash.errors.NodeTimeoutError`. Python offers no safe way to stop a thread,
so the node is *abandoned*: its thread keeps running until the node returns, and what
it returns (or raises) is discarded. A node that must stop promptly should check a
deadline itself or be an ``AsyncNode`` (async nodes are cancelled at the deadline).
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import pickle
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from kailash.errors import NodeTimeoutError
from kailash.security.secrets import Secret

if TYPE_CHECKING:
    from kailash.nodes.base import Node

__all__ = ["fingerprint", "start_thread", "attempt_sync", "attempt_async"]


def fingerprint(inputs: dict[str, Any]) -> str | None:
    """A stable hash of ``inputs`` (``None`` when some value cannot be fingerprinted)."""
    h = hashlib.sha256()
    try:
        _feed(h, inputs)
    except Exception:  # an input without a stable encoding: do not cache
        return None
    return h.hexdigest()


def _feed(h: Any, v: Any) -> None:
    if v is None or isinstance(v, (bool, int, float, str)):
        h.update(f"{type(v).__name__}:{v!r};".encode())
    elif isinstance(v, dict):
        h.update(b"{")
        for k in sorted(v, key=repr):
            _feed(h, k)
            _feed(h, v[k])
        h.update(b"}")
    elif isinstance(v, (list, tuple)):
        h.update(b"[" if isinstance(v, list) else b"(")
        for x in v:
            _feed(h, x)
        h.update(b"]")
    elif isinstance(v, bytes):
        h.update(b"b:" + hashlib.sha256(v).digest())
    elif isinstance(v, Secret):
        h.update(b"s:" + hashlib.sha256(repr(v.reveal()).encode()).digest())
    else:
        h.update(b"p:" + hashlib.sha256(pickle.dumps(v)).digest())


def start_thread(fn: Any, *args: Any) -> Future[Any]:
    """Run ``fn(*args)`` in a new daemon thread (context copied); return its future.

    The thread is never interrupted: a caller that stops waiting abandons it.
    """
    fut: Future[Any] = Future()
    ctx = contextvars.copy_context()

    def target() -> None:
        if not fut.set_running_or_notify_cancel():
            return
        try:
            fut.set_result(ctx.run(fn, *args))
        except BaseException as exc:  # handed to the waiting caller (or discarded if it left)
            fut.set_exception(exc)

    threading.Thread(target=target, name="kailash-node-timeout", daemon=True).start()
    return fut


def _timeout_error(node: Node, seconds: float) -> NodeTimeoutError:
    return NodeTimeoutError(
        f"node {node.label} ({type(node).__name__}) timed out after {seconds:g} s; it was abandoned "
        "(a sync node's thread runs on until the node returns, and its result is discarded)",
        node_id=node.name, parameter="timeout", expected=f"at most {seconds:g} s",
    )


def attempt_sync(node: Node, inputs: dict[str, Any], ctx: Any, limit: float | None) -> dict[str, Any]:
    if limit is None:
        return node.call(dict(inputs), ctx)
    if node.is_async:
        from kailash.nodes.base_async import run_coroutine

        async def bounded() -> dict[str, Any]:
            try:
                return await asyncio.wait_for(node.async_call(dict(inputs), ctx), limit)  # type: ignore[attr-defined]
            except TimeoutError as exc:
                if isinstance(exc, NodeTimeoutError):
                    raise
                raise _timeout_error(node, limit) from None

        out: dict[str, Any] = run_coroutine(bounded())
        return out
    fut = start_thread(node.call, dict(inputs), ctx)
    try:
        done: dict[str, Any] = fut.result(timeout=limit)
        return done
    except TimeoutError as exc:
        if fut.done():
            raise
        raise _timeout_error(node, limit) from exc


async def attempt_async(node: Node, inputs: dict[str, Any], ctx: Any, limit: float | None,
                         executor: Any) -> dict[str, Any]:
    if node.is_async:
        coro = node.async_call(dict(inputs), ctx)  # type: ignore[attr-defined]
        if limit is None:
            result: dict[str, Any] = await coro
            return result
        try:
            return await asyncio.wait_for(coro, limit)
        except TimeoutError as exc:
            if isinstance(exc, NodeTimeoutError):
                raise
            raise _timeout_error(node, limit) from None
    loop = asyncio.get_running_loop()
    if limit is None:
        cctx = contextvars.copy_context()
        return await loop.run_in_executor(executor, cctx.run, node.call, dict(inputs), ctx)
    fut = start_thread(node.call, dict(inputs), ctx)
    try:
        return await asyncio.wait_for(asyncio.wrap_future(fut), limit)
    except TimeoutError as exc:
        if isinstance(exc, NodeTimeoutError):
            raise
        raise _timeout_error(node, limit) from None

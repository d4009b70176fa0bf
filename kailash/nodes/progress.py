"""Progress inside a long node step (rows read or written, batches), for whoever displays it.

A node that works through many records wraps its iterator with :func:`counted`; when
nothing listens (the default: a library call, the gateway) :func:`counted` returns the
iterator unchanged, so the hot loop costs nothing. A front end (``kailash run`` on a
terminal, see :mod:`kailash.cli.progress`) installs a listener with
:func:`set_progress_listener`; it then receives ``{"node": label, "what": "read",
"count": n, "unit": "rows"}`` about every 4,096 items and once at the end. The listener
is process-wide, called from the thread that runs the node, and must be quick.

Example:
    >>> from kailash.nodes import progress
    >>> seen = []
    >>> previous = progress.set_progress_listener(seen.append)
    >>> sum(progress.counted(range(10_000), node="reader", what="read"))
    49995000
    >>> [e["count"] for e in seen]
    [4096, 8192, 10000]
    >>> _ = progress.set_progress_listener(previous)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

__all__ = ["set_progress_listener", "counted", "report", "EVERY"]

T = TypeVar("T")
Listener = Callable[[dict[str, Any]], None]

#: Items between two reports (a power of two: the check is a bit mask).
EVERY = 4096

_listener: Listener | None = None


def set_progress_listener(listener: Listener | None) -> Listener | None:
    """Install ``listener`` (``None`` removes it); returns the one it replaces."""
    global _listener
    previous, _listener = _listener, listener
    return previous


def report(node: str, what: str, count: int, unit: str = "rows") -> None:
    """Tell the listener, if any, that ``node`` has ``what`` (read/written...) ``count`` ``unit``."""
    listener = _listener
    if listener is not None:
        try:
            listener({"node": node, "what": what, "count": count, "unit": unit})
        except Exception:  # noqa: BLE001 - a display must never break a run
            pass


def counted(items: Iterable[T], *, node: str, what: str, unit: str = "rows", every: int = EVERY) -> Iterable[T]:
    """``items``, reporting the count every ``every`` items (a power of two) and at the end, when listened to."""
    if _listener is None:
        return items
    return _counting(iter(items), node, what, unit, every - 1)


def _counting(items: Iterator[T], node: str, what: str, unit: str, mask: int) -> Iterator[T]:
    n = 0
    try:
        for n, item in enumerate(items, 1):  # noqa: B007 - n is read after the loop
            if not n & mask:
                report(node, what, n, unit)
            yield item
    finally:
        if n & mask:
            report(node, what, n, unit)

"""The one backoff schedule: how long to wait before retry ``n``.

Used by node failure policies (:class:`kailash.workflow.policies.RetryPolicy`) and by
the outbound HTTP exchange (:class:`kailash.nodes.api._transport.RetryPolicy`). It sits
at the bottom of the package (imports nothing from Kailash) so every layer may use it.
"""

from __future__ import annotations

import random

__all__ = ["backoff_delay"]


def backoff_delay(retry: int, *, backoff: float, max_backoff: float, jitter: bool, rand: float | None = None) -> float:
    """Seconds to wait before retry number ``retry`` (1 = the first retry).

    ``backoff * 2**(retry - 1)``, capped at ``max_backoff``; with ``jitter`` the wait is
    drawn uniformly from half of that to all of it ("equal jitter"), so clients that
    failed together do not retry together. ``rand`` in [0, 1) fixes the draw.

    Example:
        >>> [backoff_delay(n, backoff=0.5, max_backoff=3.0, jitter=False) for n in (1, 2, 3, 4)]
        [0.5, 1.0, 2.0, 3.0]
        >>> backoff_delay(3, backoff=1.0, max_backoff=60.0, jitter=True, rand=0.0)
        2.0
    """
    wait: float = min(backoff * 2.0 ** (retry - 1), max_backoff)
    if jitter:
        r = random.random() if rand is None else rand
        wait = wait * (0.5 + 0.5 * r)
    return wait

"""Progress and colour for the command line: one live status line on a terminal, plain lines elsewhere.

Reusable by every subcommand (``kailash run`` and ``resume`` use :class:`RunProgress`;
a stream run can drive a :class:`StatusLine` with its own text, e.g. events/s).

- :class:`StatusLine` owns the bottom line of a terminal: :meth:`~StatusLine.status`
  redraws it (at most ten times a second), :meth:`~StatusLine.line` prints a permanent
  line above it. On anything but a terminal ``status`` prints nothing unless asked to
  (``every`` seconds at most), so logs and pipes stay clean.
- :class:`RunProgress` is a runtime observer (``LocalRuntime(observers=[...])``) that
  prints a line per node (▶ started, ✔ done with its time, ✘ failed, ↷ skipped) and,
  while a node runs, a status line with its elapsed time and the rows/batches it has
  read or written (reported through :mod:`kailash.nodes.progress`). Use it as a context
  manager so the listener and the ticker thread are removed afterwards.
- :func:`use_colour` / :func:`paint`: ANSI colour only on a terminal, never when
  ``NO_COLOR`` is set or ``TERM=dumb``; ``FORCE_COLOR`` forces it.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from typing import Any, TextIO

__all__ = ["StatusLine", "RunProgress", "use_colour", "paint", "format_count", "format_elapsed", "describe_call"]

_CODES = {"red": "31", "green": "32", "yellow": "33", "blue": "34", "dim": "2", "bold": "1"}


def use_colour(stream: TextIO) -> bool:
    """Whether to colour text written to ``stream``."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return _isatty(stream) and os.environ.get("TERM") != "dumb"


def paint(text: str, colour: str, enabled: bool) -> str:
    """``text`` in ``colour`` (red, green, yellow, blue, dim, bold) when ``enabled``."""
    return f"\033[{_CODES[colour]}m{text}\033[0m" if enabled else text


def format_count(n: int) -> str:
    """``1234567`` -> ``1,234,567``."""
    return f"{n:,}"


def format_elapsed(seconds: float) -> str:
    """``0.0123`` -> ``12.3 ms``, ``75`` -> ``1m15s``."""
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class StatusLine:
    """The live bottom line of a terminal (see the module docstring).

    Args:
        stream: where to write (stderr by default).
        live: redraw a status line in place; default: ``stream`` is a terminal.
        every: when not live, print a status as a plain line at most every this many
            seconds (``None``: never).
    """

    def __init__(self, stream: TextIO | None = None, *, live: bool | None = None, every: float | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.live = _isatty(self.stream) if live is None else live
        self.every = every
        self.colour = use_colour(self.stream)
        self._shown = ""
        self._last = time.monotonic() if not self.live else 0.0  # plain lines: the first after `every` s
        self._lock = threading.Lock()

    def status(self, text: str, *, force: bool = False) -> None:
        """Show ``text`` as the current status (throttled unless ``force``)."""
        now = time.monotonic()
        with self._lock:
            if self.live:
                if not force and now - self._last < 0.1:
                    return
                width = _width(self.stream)
                shown = text if len(text) < width else text[: width - 2] + "…"
                self.stream.write("\r\033[K" + shown)
                self._shown = shown
            elif self.every is not None and now - self._last >= self.every:
                self.stream.write(text + "\n")
            else:
                return
            self._last = now
            self.stream.flush()

    def line(self, text: str) -> None:
        """Print ``text`` as a permanent line (above the status line, which is cleared)."""
        with self._lock:
            if self.live and self._shown:
                self.stream.write("\r\033[K")
                self._shown = ""
            self.stream.write(text + "\n")
            self.stream.flush()

    def clear(self) -> None:
        """Remove the status line (before printing results)."""
        with self._lock:
            if self.live and self._shown:
                self.stream.write("\r\033[K")
                self.stream.flush()
                self._shown = ""


def _width(stream: TextIO) -> int:
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (OSError, AttributeError, ValueError):
        return 100
    return columns if columns >= 20 else 100  # a pty with no size reports 0


def describe_call(call: dict[str, Any]) -> str:
    """One line for an agent's model or tool call (a run event or an entry of ``RunRecord.calls``)."""
    ms = call.get("latency_ms")
    took = f" {format_elapsed(ms / 1000)}" if isinstance(ms, (int, float)) else ""
    if call.get("event") == "tool_call":
        args = json.dumps(call.get("arguments") or {}, default=str)
        text = f"tool {call.get('server')}.{call.get('tool')} {args[:60]}{'...' if len(args) > 60 else ''}{took}"
        outcome = call.get("outcome")
        if outcome in ("cached", "rejected"):
            text += f" ({outcome})"
    else:
        text = f"model {call.get('provider')}/{call.get('model')}{took}"
        pt, ct = call.get("prompt_tokens"), call.get("completion_tokens")
        if pt is not None or ct is not None:
            text += f" ({pt or 0}+{ct or 0} tokens)"
    if call.get("error"):
        text += f" failed: {str(call['error'])[:120]}"
    return terminal_safe(text)  # names and errors come from models and servers


#: C0 and C1 control characters but tab: shown escaped (``\x1b``), never sent to the terminal
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    r"""``text`` for one line of a terminal: control characters (escape sequences, carriage
    returns, newlines) shown escaped, as a run's errors and output may come from anyone.

    Example:
        >>> print(terminal_safe("ok\x1b[2J done\n"))
        ok\x1b[2J done\n
    """
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


class RunProgress:
    """Per-node lines and a live status of the running nodes (a runtime observer).

    Args:
        total: the number of nodes in the workflow (for ``[done/total]``).
        nodes: print the per-node lines (``kailash run --progress`` or a terminal).
        status: the :class:`StatusLine` to draw on (a new one on stderr by default).
        tick: seconds between redraws of the status while nothing is reported (elapsed time).
    """

    def __init__(self, total: int, *, nodes: bool = True, status: StatusLine | None = None, tick: float = 0.5) -> None:
        self.total, self.done = total, 0
        self.nodes = nodes
        self.out = status if status is not None else StatusLine()
        self.tick = tick
        self._running: dict[str, float] = {}  # node id -> start (monotonic)
        self._counts: dict[str, dict[str, tuple[str, int]]] = {}  # node -> unit -> (what, count)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._previous: Any = None
        self._stream = ""  # a stream run's counts, once it reports them
        self._calls: dict[str, list[int]] = {}  # node -> [model calls, tool calls] (kailash.nodes.calls)

    # -- lifetime -------------------------------------------------------------------------------
    def __enter__(self) -> RunProgress:
        from kailash.nodes import progress

        self._previous = progress.set_progress_listener(self.on_node_progress)
        if self.out.live or self.out.every is not None:
            self._thread = threading.Thread(target=self._ticker, name="kailash-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        from kailash.nodes import progress

        progress.set_progress_listener(self._previous)
        if self._stream and not self.out.live:  # a log, not a terminal: the stream's last counts as a line
            self.out.line(self._stream)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.out.clear()

    # -- events ---------------------------------------------------------------------------------
    def __call__(self, event: dict[str, Any]) -> None:
        """A runtime event (``node_started``, ``node_completed``...)."""
        kind = event.get("event")
        node = str(event.get("node_id", ""))
        c = self.out.colour
        if kind == "node_started":
            with self._lock:
                self._running[node] = time.monotonic()
                self._counts.pop(node, None)
            if self.nodes:
                self.out.line(f"  {paint('▶', 'blue', c)} {node} ...")
        elif kind in ("node_completed", "node_skipped", "node_failed"):
            with self._lock:
                self.done += 1
                self._running.pop(node, None)
                counts = self._counts.pop(node, {})
                calls = self._calls.pop(node, None)
            if self.nodes:
                mark = {"node_completed": paint("✔", "green", c), "node_skipped": paint("↷", "dim", c),
                        "node_failed": paint("✘", "red", c)}[kind]
                extra = f" {format_elapsed(event.get('duration') or 0)}" if kind == "node_completed" else ""
                if counts:
                    extra += " (" + ", ".join(f"{format_count(n)} {u} {w}" for u, (w, n) in counts.items()) + ")"
                if calls:
                    extra += " (" + ", ".join(f"{n} {what}{'' if n == 1 else 's'}" for n, what in
                                              zip(calls, ("model call", "tool call"), strict=True) if n) + ")"
                self.out.line(f"  {mark} [{self.done}/{self.total}] {node}{extra}")
            self._redraw(force=True)

        elif kind in ("model_call", "tool_call"):  # an agent's call (kailash.nodes.calls)
            with self._lock:
                self._calls.setdefault(node, [0, 0])[kind == "tool_call"] += 1
            if self.nodes and (kind == "tool_call" or not event.get("ok")):
                self.out.line(f"    {paint('↳', 'dim', c) if event.get('ok') else paint('✘', 'red', c)} {describe_call(event)}")
        elif kind == "stream_started":
            self.out.line(f"  ≋ streaming from '{event.get('source')}' (Ctrl-C stops after the event in flight)")
        elif kind == "stream_progress":  # a stream run's live counts: the status line
            with self._lock:
                self._stream = (f"≋ {format_count(event['events'])} events · {event['events_per_s']:,.1f} events/s · "
                                f"{event['failures']} failures · {event['dead_lettered']} dead-lettered")
            self._redraw(force=True)

    def on_node_progress(self, event: dict[str, Any]) -> None:
        """A count from inside a node (:mod:`kailash.nodes.progress`)."""
        with self._lock:
            self._counts.setdefault(event["node"], {})[event["unit"]] = (event["what"], int(event["count"]))
        self._redraw()

    # -- drawing --------------------------------------------------------------------------------
    def status_text(self) -> str:
        """The status line now: each running node with its elapsed time and counts."""
        now = time.monotonic()
        with self._lock:
            running = list(self._running.items())
            counts = {k: dict(v) for k, v in self._counts.items()}
        parts = []
        for node, started in running:
            text = f"{node} {format_elapsed(now - started)}"
            for unit, (what, n) in counts.get(node, {}).items():
                text += f" · {format_count(n)} {unit} {what}"
            parts.append(text)
        if self._stream:
            return self._stream
        if not parts:
            return ""
        return f"[{self.done}/{self.total}] " + " | ".join(parts)

    def _redraw(self, force: bool = False) -> None:
        text = self.status_text()
        if text:
            self.out.status(text, force=force)
        elif force:
            self.out.clear()

    def _ticker(self) -> None:
        while not self._stop.wait(self.tick):
            with self._lock:
                slow = any(time.monotonic() - t >= 1.0 for t in self._running.values())
            if slow:  # quick nodes never flash a status line
                self._redraw()

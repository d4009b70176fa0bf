"""Each node's printed output and log records, captured per run and node (bounded, redacted).

From the first recorded run on, ``sys.stdout`` and ``sys.stderr`` are wrapped by a tee and
log records are made by a wrapping record factory (no handler is added); outside runs both
pass everything through unchanged (:func:`release` unwraps them). What a node writes still goes where it went
before (the terminal, the server's console); a copy is kept for the node that wrote it
and stored with the run record (``RunRecord.output``: ``{node_id: text}``), shown by
``kailash runs RUN_ID`` and ``GET /runs/{id}``.

* Which run: a context variable set for the run by the scheduler (:func:`capturing`, :func:`stop`), so
  it follows the run into ``ParallelRuntime``'s worker threads and tasks (context copied)
  and never into unrelated threads.
* Which node: found only when something is written, from the call stack (the scheduler's
  frame calling the node, or the :class:`~kailash.runtime.engine.RunContext` a node was
  called with). The engine's hot path does nothing per node: a node that prints nothing
  costs nothing.
* Bounded: :data:`LIMIT` characters per node and :data:`RUN_LIMIT` per run; the rest is
  counted and replaced by a ``[output truncated: N more characters]`` line.
* Redacted: the run's secrets (and URL passwords) are masked when the record is written.

The same run and node lookup tells :mod:`kailash.nodes.calls` which run and node an agent's
model or tool call belongs to (:func:`following` makes a run with observers but no store
current for that alone).

Log records are those the logging configuration lets through (a logger's level decides;
the default is WARNING), formatted ``LEVEL logger: message``. Output written by threads a
node starts itself (without copying its context) and by Dask workers is not captured.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
from types import CodeType, FrameType
from typing import Any

from kailash.nodes import calls

__all__ = ["LIMIT", "RUN_LIMIT", "RunOutput", "capturing", "following", "stop", "release", "register_node_frames"]

#: characters kept per node and run; more is counted and reported as truncated
LIMIT = 64 * 1024
#: characters kept past :data:`LIMIT` until the text is redacted (a secret up to this long that crosses the
#: limit is masked whole, then the text is cut)
MARGIN = 4096
#: characters kept for all nodes of one run together; nodes writing after it is spent keep nothing more
RUN_LIMIT = 1024 * 1024

_RUN: contextvars.ContextVar[Any] = contextvars.ContextVar("kailash_capture_run", default=None)
_lock = threading.Lock()
_installed: dict[str, Any] = {}  # sys attribute -> the stream its tee wraps
_node_codes: set[CodeType] = set()  # the scheduler's frames that call a node for the run's own context
_CTX_NAMES = ("ctx", "context")
_HANDLER_EMIT = logging.StreamHandler.emit.__code__


class RunOutput:
    """The captured text of one run's nodes (made on the first write; thread-safe)."""

    __slots__ = ("nodes", "lock", "frames", "total")

    def __init__(self) -> None:
        self.nodes: dict[str, list[Any]] = {}  # node id -> [parts, size, dropped, cap]
        self.lock = threading.Lock()
        self.frames: dict[FrameType, str] = {}  # frames that wrote lately -> their node (a few, see _keep)
        self.total = 0  # characters kept for all nodes

    def write(self, node_id: str, text: str) -> None:
        if not text:
            return
        with self.lock:
            entry = self.nodes.get(node_id)
            if entry is None:  # a node that starts writing after the run's budget ran out keeps nothing
                entry = self.nodes[node_id] = [[], 0, 0, LIMIT if self.total < RUN_LIMIT else 0]
            elif self.total >= RUN_LIMIT and entry[3] > entry[1]:  # the budget ran out: keep what it has
                entry[3] = entry[1]
            # kept: up to cap + MARGIN, cut to cap after redaction (a secret across the cut never leaves a piece)
            keep = entry[3] + MARGIN if entry[3] else 0
            room = keep - entry[1]
            if room <= 0:  # full: count what is dropped
                entry[2] += len(text)
                return
            if len(text) <= room:
                entry[0].append(text)
                entry[1] += len(text)
                self.total += len(text)
            else:
                entry[0].append(text[:room])
                entry[1] = keep
                self.total += room
                entry[2] += len(text) - room

    def finish(self, secrets: Any) -> dict[str, str]:
        """``{node_id: text}``, secrets masked, a truncation line where output was dropped.

        Redacted before it is cut to the node's share (:data:`LIMIT`, less once the run's
        :data:`RUN_LIMIT` is spent): cutting first would leave the start of a secret that
        crossed the cut, which no longer matches the secret."""
        self.frames.clear()  # the run is over: let its frames go now, not at the next garbage collection
        with self.lock:
            out: dict[str, str] = {}
            for node_id, (parts, _size, dropped, cap) in self.nodes.items():
                text = "".join(parts)
                if secrets is not None:
                    text = str(secrets.redact(text))
                if dropped or len(text) > cap:
                    if len(text) > cap:
                        dropped += len(text) - cap
                        text = text[:cap]
                    text += f"{'' if not text or text.endswith(chr(10)) else chr(10)}[output truncated: {dropped} more characters]\n"
                out[node_id] = text
            return out


def register_node_frames(*codes: CodeType) -> None:
    """The scheduler's functions whose frames hold the running node (``sid``/``step``) and run ``ctx``."""
    _node_codes.update(codes)


def _node_of(run: Any, frame: FrameType | None) -> str | None:
    """The id of the node of ``run`` whose code is running in ``frame``'s stack, if any."""
    ctx = run.ctx
    run_id, depth = ctx.run_id, ctx.depth
    while frame is not None:
        code = frame.f_code
        if code in _node_codes:
            loc = frame.f_locals
            if loc.get("ctx") is ctx:
                sid = loc.get("sid")
                if sid is None:
                    step = loc.get("step")
                    sid = getattr(step, "id", None)
                if sid is not None:
                    return str(sid)
        elif "ctx" in code.co_varnames or "context" in code.co_varnames or "ctx" in code.co_freevars:
            loc = frame.f_locals
            for name in _CTX_NAMES:  # a node called with its RunContext (policies, timeouts, async nodes)
                c = loc.get(name)
                node_id = getattr(c, "node_id", None)
                if node_id is not None and getattr(c, "run_id", None) == run_id and getattr(c, "depth", -1) == depth:
                    return str(node_id)
        frame = frame.f_back
    return None


def _keep(text: str, frame: FrameType | None) -> None:
    run = _RUN.get()
    if run is None or frame is None:
        return
    rec = run.recorder
    if rec.store is None:  # followed for its agent calls only (see following)
        return
    out = rec.output
    node_id = out.frames.get(frame) if out is not None else None  # a print loop: the same frame again
    if node_id is None:
        node_id = _node_of(run, frame)
        if node_id is None:
            return
        if out is None:
            with _lock:
                out = rec.output
                if out is None:
                    out = rec.output = RunOutput()
        if len(out.frames) >= 64:
            out.frames.clear()
        out.frames[frame] = node_id  # held until the run's output is dropped: its identity is not reused
    out.write(node_id, text)


class _Tee:
    """``sys.stdout``/``sys.stderr`` during runs: writes go to the stream as before, and a copy
    to the node writing (if any)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        if _RUN.get() is not None and isinstance(text, str):
            try:
                caller = sys._getframe(1)
                if caller.f_code is not _HANDLER_EMIT:  # a log record: already kept by the record factory
                    _keep(text, caller)
            except Exception:  # capturing must never break a node's print
                pass
        return self._inner.write(text)  # type: ignore[no-any-return]

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._inner.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


_FORMAT = logging.Formatter("%(levelname)s %(name)s: %(message)s")
_factory_in: list[Any] = []  # the record factory ours wraps while installed


def _make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """The log record factory during runs: a node's records go to its captured output too.

    A factory, not a handler: it sees each record that a logger's level lets through, in
    the thread that logs, and leaves the handlers (and ``logging.basicConfig``) as they are.
    """
    record: logging.LogRecord = (_factory_in[-1] if _factory_in else logging.LogRecord)(*args, **kwargs)
    if _RUN.get() is not None:
        try:
            _keep(_FORMAT.format(record) + "\n", sys._getframe(1))
        except Exception:  # capturing must never break a node's logging
            pass
    return record


def _install() -> None:
    with _lock:
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if stream is not None and not isinstance(stream, _Tee):
                setattr(sys, name, _Tee(stream))
                _installed[name] = stream
        factory = logging.getLogRecordFactory()
        if factory is not _make_record:
            _factory_in.append(factory)
            logging.setLogRecordFactory(_make_record)


def release() -> None:
    """Put back the streams and the log record factory that capturing wrapped (for programs that
    want them untouched between runs; the next recorded run wraps them again)."""
    with _lock:
        for name, stream in list(_installed.items()):
            current = getattr(sys, name)
            if isinstance(current, _Tee) and current._inner is stream:  # still ours: put the stream back
                setattr(sys, name, stream)
            del _installed[name]
        if _factory_in and logging.getLogRecordFactory() is _make_record:
            logging.setLogRecordFactory(_factory_in[-1])
            _factory_in.clear()


def _current_call() -> tuple[Any, str | None] | None:
    """``(recorder, node_id)`` of the run and node calling a model or tool here (see
    :mod:`kailash.nodes.calls`; ``node_id`` None when no node of the run is on the stack), or
    None outside a run."""
    run = _RUN.get()
    if run is None:
        return None
    return (run.recorder, _node_of(run, sys._getframe(2)))


calls.set_finder(_current_call)


def following(run: Any) -> Any:
    """Make ``run`` current without capturing output (a run with observers and no store: its
    agents' model and tool calls still reach the observers); returns a token for :func:`stop`."""
    return _RUN.set(run)


def capturing(run: Any) -> Any:
    """Start capturing what ``run``'s nodes print and log (``run``: a scheduler ``Run`` of a
    recorded run); returns a token for :func:`stop`. Call from the run's own context.

    The first call wraps ``sys.stdout``, ``sys.stderr`` and the log record factory (again
    whenever something has replaced them); they stay wrapped, passing everything through
    unchanged outside runs, so a run costs one context variable, not a swap of the streams
    (:func:`release` puts the originals back).
    """
    if (type(sys.stdout) is not _Tee or type(sys.stderr) is not _Tee
            or logging.getLogRecordFactory() is not _make_record):
        _install()
    return _RUN.set(run)


def stop(token: Any) -> None:
    """Stop the capture :func:`capturing` started."""
    _RUN.reset(token)

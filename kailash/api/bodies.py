"""Reading request bodies: the content type a route accepts, and JSON with bounded nesting.

A JSON endpoint takes ``application/json`` (or ``application/*+json``) only: a browser can
send ``text/plain``, form and multipart bodies to any address without asking it first,
so accepting them would let a web page on another origin call the gateway. Parsed
values may nest at most :data:`MAX_DEPTH` levels: a deeper body is refused with 400
before any route sees it, since the code handling it (validation, copies, redaction,
serialization) recurses. The size is bounded earlier, by the body-size cap. Nothing
here touches storage or runs a workflow.
"""

from __future__ import annotations

import json
from typing import Any

from kailash.api.responses import ApiError

__all__ = ["MAX_DEPTH", "read_json", "loads_json", "check_depth", "too_deep", "nesting_exceeds", "is_json_type"]

MAX_DEPTH = 100
_OFF_LOOP = 256 * 1024  # bodies larger than this are parsed in a worker thread, not on the event loop


def is_json_type(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` value names JSON (``application/json``, ``application/x+json``)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def nesting_exceeds(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` (plain JSON data) nests lists and dicts more than ``limit`` deep.

    Iterative, so it works at any depth; it visits containers only and stops at the
    first one too deep.
    """
    t = type(value)
    if t is not dict and t is not list:
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        if depth > limit:
            return True
        depth += 1
        for child in (item.values() if type(item) is dict else item):
            ct = type(child)
            if ct is dict or ct is list:
                push((child, depth))
    return False


def too_deep(what: str = "the request body") -> ApiError:
    """The 400 ``too_deeply_nested`` error for ``what``."""
    return ApiError(400, "too_deeply_nested", f"{what} nests lists and objects more than {MAX_DEPTH} levels deep; "
                    "flatten it", max_depth=MAX_DEPTH)


def check_depth(value: Any, what: str = "the request body") -> Any:
    """Return ``value``; raise ApiError 400 ``too_deeply_nested`` if it nests past :data:`MAX_DEPTH`."""
    if nesting_exceeds(value):
        raise too_deep(what)
    return value


def loads_json(raw: bytes | str, what: str = "the request body") -> Any:
    """Parse JSON text, refusing malformed or too deeply nested input with ApiError 400 (never a 500)."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise too_deep(what) from None
    except (ValueError, UnicodeDecodeError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise ApiError(400, "malformed_json", f"{what} is not valid JSON{where}") from None
    opens = raw.count("[") + raw.count("{") if isinstance(raw, str) else raw.count(b"[") + raw.count(b"{")
    if opens > MAX_DEPTH:  # fewer brackets than the limit cannot nest past it
        check_depth(value, what)
    return value


async def read_json(request: Any, *, required: bool = True) -> Any:
    """The request body as JSON: 415 unless it is declared JSON, 400 when malformed or too deep.

    An empty body is ``None`` (or 400 ``empty_body`` when ``required``); it needs no
    content type.
    """
    body = await request.body()  # first, so an oversized body is answered 413 by the size cap
    if not body.strip():
        if required:
            raise ApiError(400, "empty_body", "the request needs a JSON body")
        return None
    ctype = request.headers.get("content-type")
    if not is_json_type(ctype):
        raise ApiError(415, "unsupported_media_type",
                       f"this endpoint takes a JSON body with 'Content-Type: application/json', got "
                       f"{(ctype or 'no content type')[:100]!r}", expected="application/json")
    if len(body) > _OFF_LOOP:
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(loads_json, body)
    return loads_json(body)

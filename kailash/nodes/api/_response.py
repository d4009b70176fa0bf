"""Receiving a response from a server that may be hostile: size caps and safe redirects.

Two rules, written once for the sync and async clients:

* **A body never grows past ``max_response_bytes``**, counted both in bytes received
  and in bytes after decompression. gzip and deflate are decoded here with zlib's
  ``max_length``, so a 250 KB gzip bomb stops at the cap instead of expanding to
  256 MiB; a declared ``Content-Length`` over the cap is refused before reading. Only
  gzip and deflate are offered in ``Accept-Encoding``.
* **Redirects are followed here, one hop at a time**, so each hop's body is capped
  too (a redirect's own body is discarded unread), and a hop to another origin
  (scheme, host or port) drops every credential header: the well-known ones, any
  whose name looks like a credential, and the ones the node marks (Secret values,
  ``secret_headers``), carried in the request's extensions.

A stream (server-sent events) is opened by :func:`open_stream_async` under the same
redirect rule; its body is left unread, for the caller to read under its own cap.

This module owns no node and must not log; httpx is imported by the caller.
"""

from __future__ import annotations

import zlib
from typing import Any

from kailash.security.secrets import is_credential_header

__all__ = ["ResponseTooLarge", "CREDENTIAL_EXTENSION", "client_class", "send_sync", "send_async", "ACCEPT_ENCODING",
           "open_stream_async"]

CREDENTIAL_EXTENSION = "kailash_credential_headers"  # request extension: lower-case names to drop cross-origin
ACCEPT_ENCODING = "gzip, deflate"
_CHUNK = 64 * 1024
_classes: dict[bool, Any] = {}


class ResponseTooLarge(Exception):
    """A response body went past the cap (``declared`` when Content-Length said so up front)."""

    def __init__(self, limit: int, received: int, decoded: int, declared: int | None = None) -> None:
        super().__init__(f"response body over {limit} bytes")
        self.limit, self.received, self.decoded, self.declared = limit, received, decoded, declared


def _origin(url: Any) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default


def client_class(asynchronous: bool) -> Any:
    """``httpx.Client`` (or ``AsyncClient``) whose redirect headers drop credentials across origins."""
    cls = _classes.get(asynchronous)
    if cls is None:
        import httpx

        base = httpx.AsyncClient if asynchronous else httpx.Client

        def _redirect_headers(self: Any, request: Any, url: Any, method: str) -> Any:
            headers = base._redirect_headers(self, request, url, method)  # type: ignore[attr-defined]
            if _origin(url) != _origin(request.url):
                marked = request.extensions.get(CREDENTIAL_EXTENSION) or frozenset()
                for name in list(headers.keys()):
                    if name.lower() in marked or is_credential_header(name):
                        del headers[name]
            return headers

        cls = type(f"Kailash{base.__name__}", (base,), {"_redirect_headers": _redirect_headers})
        _classes[asynchronous] = cls
    return cls


class _Body:
    """Collects one body, decoding gzip/deflate with a bound; raises ResponseTooLarge past the cap."""

    def __init__(self, response: Any, limit: int) -> None:
        self.limit = limit
        self.received = 0
        self.size = 0
        self.parts: list[bytes] = []
        codings = [c.strip().lower() for c in response.headers.get("content-encoding", "").split(",")]
        codings = [c for c in codings if c and c != "identity"]
        self.decoder: Any = None
        self.fallback: Any = None
        if codings in (["gzip"], ["x-gzip"]):
            self.decoder = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif codings == ["deflate"]:
            self.decoder = "deflate"  # zlib-wrapped or raw: decided on the first bytes
        elif codings:
            self.fallback = response  # another coding (br, zstd): httpx decodes, checked per chunk

    def feed(self, raw: bytes) -> None:
        self.received += len(raw)
        if self.received > self.limit:
            raise ResponseTooLarge(self.limit, self.received, self.size)
        if self.decoder is None:
            self.add_decoded(raw)
            return
        if self.decoder == "deflate":
            self.decoder = zlib.decompressobj(zlib.MAX_WBITS if raw[:1] == b"\x78" else -zlib.MAX_WBITS)
        data = raw
        while data and not self.decoder.eof:
            self.add_decoded(self.decoder.decompress(data, self.limit - self.size + 1))
            data = self.decoder.unconsumed_tail

    def add_decoded(self, data: bytes) -> None:
        if data:
            self.size += len(data)
            if self.size > self.limit:
                raise ResponseTooLarge(self.limit, self.received, self.size)
            self.parts.append(data)

    def finish(self, response: Any) -> None:
        if self.decoder is not None and not isinstance(self.decoder, str):
            self.add_decoded(self.decoder.flush())
        response._content = b"".join(self.parts)  # httpx reads .text/.json() from here


def _declared(response: Any, limit: int) -> None:
    length = response.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise ResponseTooLarge(limit, 0, 0, int(length))


def _decode_error(exc: Exception) -> Exception:
    import httpx

    return httpx.DecodingError(f"the response body could not be decompressed: {exc}")


def _read_sync(response: Any, limit: int) -> None:
    try:
        _declared(response, limit)
        body = _Body(response, limit)
        chunks = response.iter_bytes(_CHUNK) if body.fallback is not None else response.iter_raw(_CHUNK)
        feed = body.feed if body.fallback is None else body.add_decoded
        for chunk in chunks:
            feed(chunk)
        body.finish(response)
    except zlib.error as exc:
        raise _decode_error(exc) from None
    finally:
        response.close()


async def _read_async(response: Any, limit: int) -> None:
    try:
        _declared(response, limit)
        body = _Body(response, limit)
        chunks = response.aiter_bytes(_CHUNK) if body.fallback is not None else response.aiter_raw(_CHUNK)
        feed = body.feed if body.fallback is None else body.add_decoded
        async for chunk in chunks:
            feed(chunk)
        body.finish(response)
    except zlib.error as exc:
        raise _decode_error(exc) from None
    finally:
        await response.aclose()


def _next_hop(client: Any, request: Any, response: Any, hops: int) -> Any:
    import httpx

    if hops >= client.max_redirects:
        raise httpx.TooManyRedirects(f"more than {client.max_redirects} redirects", request=request)
    return client._build_redirect_request(request, response)  # method, cookies, and our _redirect_headers


def send_sync(client: Any, request: Any, *, limit: int, follow: bool) -> Any:
    """Send ``request`` (following redirects when ``follow``); the final response, its body read and capped."""
    hops = 0
    while True:
        response = client.send(request, stream=True, follow_redirects=False)
        if follow and response.has_redirect_location:
            response.close()  # a redirect's body is never read
            request = _next_hop(client, request, response, hops)
            hops += 1
            continue
        _read_sync(response, limit)
        return response


async def send_async(client: Any, request: Any, *, limit: int, follow: bool) -> Any:
    """The async twin of :func:`send_sync`."""
    response = await open_stream_async(client, request, follow=follow)
    await _read_async(response, limit)
    return response


async def open_stream_async(client: Any, request: Any, *, follow: bool) -> Any:
    """Send ``request`` and return the final response with its body unread (the caller closes it).

    Redirects are followed as in :func:`send_async`: hop by hop, credentials dropped on
    a change of origin, each redirect's body discarded unread.
    """
    hops = 0
    while True:
        response = await client.send(request, stream=True, follow_redirects=False)
        if follow and response.has_redirect_location:
            await response.aclose()
            request = _next_hop(client, request, response, hops)
            hops += 1
            continue
        return response

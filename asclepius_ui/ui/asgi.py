"""The one ASGI helper the app's middlewares share: a response rewritten whole."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

Headers = list[tuple[bytes, bytes]]


def rewrite_whole(send: Callable[[dict], Awaitable[None]],
                  edit: Callable[[Headers, bytes], tuple[Headers, bytes]]) -> Callable[[dict], Awaitable[None]]:
    """A ``send`` that collects the response and sends ``edit(headers, body)`` once, its ``content-length`` set."""
    start: dict = {}
    chunks: list[bytes] = []

    async def collected(message: dict) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
            return
        if message["type"] != "http.response.body":
            return await send(message)
        chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        headers, body = edit(list(start.get("headers", [])), b"".join(chunks))
        headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        await send(dict(start, headers=[*headers, (b"content-length", str(len(body)).encode())]))
        await send({"type": "http.response.body", "body": body})

    return collected

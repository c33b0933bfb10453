"""An ASGI middleware that refuses request bodies over a size, without reading them."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is a 413; nothing more of it is read.

    A declared Content-Length over the limit is refused before the app runs; a chunked body is
    counted as it arrives, and past the limit the app reads an end of stream and its response
    is replaced by the 413.
    """

    def __init__(self, app: Any, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        received, too_large = 0, False

        async def counted() -> dict:
            nonlocal received, too_large
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                too_large = True
                return {"type": "http.disconnect"}
            return message

        async def replaced(message: dict) -> None:
            if not too_large:
                await send(message)
            elif message["type"] == "http.response.start":
                await self._refuse(send)

        await self.app(scope, counted, replaced)

    async def _refuse(self, send: Callable) -> None:
        body = json.dumps({"detail": f"the request body is over {self.limit} bytes"}).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

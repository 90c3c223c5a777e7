"""The app the worker tests serve: every answer says which process gave it.

- ``GET /pid``: the worker's pid.
- ``GET /hold``: the pid as a first chunk, then the response stays open until the client
  leaves (with ``--limit-concurrency 1`` each worker holds at most one: N held requests
  reach N different workers).
- ``GET /until-stop``: ``started``, then waits for the server's graceful stop, takes a
  moment more, and ends with ``finished``: a request in flight during a drain.
- ``GET /crash``: the process exits with code 13.
- ``GET /loop``: the pid and the async library the app runs on (``--app-loop``).
- WebSocket ``/ws``: answers every message with the pid.

If the file named by ``$WORKER_APP_BROKEN`` exists, importing this module fails: "broken
code on disk" for restart tests.
"""

from __future__ import annotations

import os
from typing import Any

import sniffio
import trio

if os.path.exists(os.environ.get("WORKER_APP_BROKEN", "/nonexistent")):
    raise RuntimeError("broken on purpose")

PID = str(os.getpid()).encode()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].removeprefix("lifespan.")
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": PID.decode()})
    elif scope["path"] == "/crash":
        os._exit(13)
    elif scope["path"] in ("/hold", "/until-stop"):
        await send({"type": "http.response.start", "status": 200})
        first = PID if scope["path"] == "/hold" else b"started"
        await send({"type": "http.response.body", "body": first + b"\n", "more_body": True})
        await receive()  # the (empty) request body
        await receive()  # http.disconnect: the client left, or the server stops
        if scope["path"] == "/until-stop":
            await trio.sleep(0.3)  # still busy after the stop began: the drain waits
        try:
            await send({"type": "http.response.body", "body": b"finished\n"})
        except OSError:  # ClientDisconnected: the /hold client left
            pass
    else:
        body = PID
        if scope["path"] == "/loop":
            body = b"%s %s" % (PID, sniffio.current_async_library().encode())
        length = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": length})
        await send({"type": "http.response.body", "body": body})

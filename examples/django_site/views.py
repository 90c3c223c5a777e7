"""Views in both of Django's flavours: ``async def`` runs on the asyncio loop, a plain
``def`` in asgiref's thread (``sync_to_async``)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator

from asgiref.sync import async_to_sync
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse

log = logging.getLogger("examples.django_site")


async def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"Hello, world!", content_type="text/plain")


async def loop_name() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__name__


def sync_view(request: HttpRequest) -> JsonResponse:
    """Runs in a worker thread of asgiref's executor, not on the event loop; async_to_sync
    takes async code back to the server's loop."""
    return JsonResponse(
        {
            "in_main_thread": threading.current_thread() is threading.main_thread(),
            "async_to_sync_loop": async_to_sync(loop_name)(),
        }
    )


async def echo(request: HttpRequest) -> HttpResponse:
    return HttpResponse(request.body, content_type=request.content_type)


async def stream(request: HttpRequest) -> StreamingHttpResponse:
    count = int(request.GET.get("count", "3"))

    async def chunks() -> AsyncIterator[bytes]:
        for number in range(count):
            yield f"chunk {number}\n".encode()
            await asyncio.sleep(0.01)

    return StreamingHttpResponse(chunks(), content_type="text/plain")


async def slow(request: HttpRequest) -> HttpResponse:
    """Takes an hour. Since Django 5.0 a client that leaves cancels the view: its
    ``http.disconnect`` crosses the bridge like any other message."""
    key = request.GET.get("key", "")
    log.info("slow view %s started", key)
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        log.info("slow view %s cancelled", key)
        raise
    return HttpResponse(b"an hour later")

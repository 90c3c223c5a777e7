"""Views in both of Django's flavours: ``async def`` runs on the asyncio loop, a plain
``def`` in asgiref's thread (``sync_to_async``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse

# What /slow saw, for the test of a client leaving mid-request.
slow_requests: dict[str, str] = {}


async def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"Hello, world!", content_type="text/plain")


def sync_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"thread": threading.current_thread().name, "main": threading.main_thread().name})


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
    key = request.GET.get("key", "")
    slow_requests[key] = "started"
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        slow_requests[key] = "cancelled"
        raise
    slow_requests[key] = "finished"
    return HttpResponse(b"late")

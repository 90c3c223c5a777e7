"""A Channels WebSocket consumer: echoes text and bytes, closes with a code on request."""

from __future__ import annotations

import logging

from channels.generic.websocket import AsyncWebsocketConsumer

log = logging.getLogger("examples.django_site")


class EchoConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is not None and text_data.startswith("close "):
            await self.close(code=int(text_data.split()[1]))
        elif text_data is not None:
            await self.send(text_data=text_data)
        else:
            await self.send(bytes_data=bytes_data)

    async def disconnect(self, code: int) -> None:
        log.info("echo consumer disconnected with code %s", code)

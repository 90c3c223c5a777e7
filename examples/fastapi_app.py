"""FastAPI on trio_asgi: typed HTTP routes, a WebSocket and server-sent events.

FastAPI sits on Starlette and anyio, so it runs on trio unchanged: anyio detects trio, and
FastAPI's own task groups (its SSE keepalive, its dependencies with ``yield``) become trio
nurseries. Needs ``pip install fastapi``.

Run it:  python -m trio_asgi examples.fastapi_app:app
Try it:  http://127.0.0.1:8000/docs  (the generated OpenAPI page)
         curl -H 'content-type: application/json' -d '{"name": "tea", "price": 2.5}' \\
              http://127.0.0.1:8000/items
         curl -N 'http://127.0.0.1:8000/events?count=3'
         python -m websockets 'ws://127.0.0.1:8000/ws/lobby?name=me'
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import anyio
import sniffio
from fastapi import Depends, FastAPI, HTTPException, Query, Request, WebSocket
from fastapi.responses import EventSourceResponse
from fastapi.sse import ServerSentEvent
from fastapi.websockets import WebSocketDisconnect
from pydantic import BaseModel, Field


class NewItem(BaseModel):
    name: str = Field(min_length=1, max_length=50)
    price: float = Field(ge=0)


class Item(NewItem):
    id: int


class Inventory:
    """In-memory items; one per app, created by the lifespan (so tests get a fresh one)."""

    def __init__(self) -> None:
        self.items: dict[int, Item] = {}
        self._ids = itertools.count(1)

    def add(self, new: NewItem) -> Item:
        item = Item(id=next(self._ids), **new.model_dump())
        self.items[item.id] = item
        return item


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Inventory]]:
    yield {"inventory": Inventory()}


def get_inventory(request: Request) -> Inventory:
    inventory: Inventory = request.state.inventory
    return inventory


InventoryDep = Annotated[Inventory, Depends(get_inventory)]

app = FastAPI(title="trio_asgi FastAPI example", lifespan=lifespan)


@app.get("/")
async def root() -> dict[str, str]:
    return {"message": "Hello from FastAPI", "async_library": sniffio.current_async_library()}


@app.post("/items", status_code=201)
async def create_item(new: NewItem, inventory: InventoryDep) -> Item:
    return inventory.add(new)


@app.get("/items/{item_id}")
async def read_item(item_id: int, inventory: InventoryDep) -> Item:
    if item_id not in inventory.items:
        raise HTTPException(status_code=404, detail="no such item")
    return inventory.items[item_id]


@app.get("/events", response_class=EventSourceResponse)
async def events(
    count: Annotated[int, Query(ge=0)] = 0,
    interval: Annotated[float, Query(gt=0, le=60)] = 1.0,
) -> AsyncIterator[ServerSentEvent]:
    """A ``tick`` event every ``interval`` seconds, ``count`` of them (0: until the client
    leaves; FastAPI then cancels this generator)."""
    for n in itertools.count():
        if count and n >= count:
            return
        yield ServerSentEvent(data={"n": n}, event="tick", id=str(n))
        await anyio.sleep(interval)


@app.websocket("/ws/{room}")
async def websocket_room(websocket: WebSocket, room: str, name: str = "anonymous") -> None:
    """Answers every JSON message with who said it where; ends when the client closes."""
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive_json()
            await websocket.send_json({"room": room, "from": name, "echo": message})
    except WebSocketDisconnect:
        pass  # .code and .reason carry the client's close code and reason

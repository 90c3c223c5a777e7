"""A multi-room chat on plain ASGI 3 and trio: an HTML page with a small JavaScript client,
WebSocket rooms with presence, and broadcast over bounded trio memory channels.

Run it:   python -m trio_asgi examples.chat:app
Open:     http://127.0.0.1:8000/  (in two windows, pick a name, join the same room)
"""

from .asgi import ChatApp, app, create_app
from .rooms import Hub, Member, Room

__all__ = ["ChatApp", "Hub", "Member", "Room", "app", "create_app"]

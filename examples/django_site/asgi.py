"""The example Django site as ASGI apps.

``django_app``: Django alone (``get_asgi_application()``). ``application``: Django Channels,
the same HTTP views plus the WebSocket consumer at ``/ws/echo``.

    python -m trio_asgi examples.django_site.asgi:application
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_site.settings")

from channels.routing import ProtocolTypeRouter, URLRouter
from django.core.asgi import get_asgi_application
from django.urls import path

django_app = get_asgi_application()  # sets Django up, before anything imports models

from .consumers import EchoConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_app,
        "websocket": URLRouter([path("ws/echo", EchoConsumer.as_asgi())]),
    }
)

"""Settings of the example Django site: the least Django needs to serve views and Channels
consumers (no database, no sessions)."""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "examples.django_site.urls"
INSTALLED_APPS = ["channels"]
MIDDLEWARE: list[str] = []
DATABASES: dict[str, object] = {}
USE_TZ = True
ASGI_APPLICATION = "examples.django_site.asgi.application"

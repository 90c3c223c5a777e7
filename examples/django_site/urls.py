from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("", views.hello),
    path("sync", views.sync_view),
    path("echo", views.echo),
    path("stream", views.stream),
    path("slow", views.slow),
]

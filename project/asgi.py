"""ASGI entry point of the demo project: HTTP and the ``/ws/context/`` websocket.

Serve it with ``daphne project.asgi:application`` (or uvicorn with websockets).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

django_application = get_asgi_application()

# Imported once Django is set up: they reach the models.
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from project.demo.consumers import ContextEchoConsumer  # noqa: E402
from tenancy.contrib.channels import TenantContextMiddleware  # noqa: E402

websocket_urls = [path("ws/context/", ContextEchoConsumer.as_asgi())]

application = ProtocolTypeRouter(
    {
        "http": django_application,
        # The user first (sessions), then the tenant: the membership resolver needs the user.
        "websocket": AuthMiddlewareStack(TenantContextMiddleware(URLRouter(websocket_urls))),
    }
)

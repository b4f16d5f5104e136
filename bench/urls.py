"""The views of the benchmarks: one DRF view, the same view writing one log line."""

from __future__ import annotations

import contextvars
import logging
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from .stacks import CONTEXT_LOGGERS, ORDINARY_LOGGER

ordinary = logging.getLogger(ORDINARY_LOGGER)
context_loggers = {name: logging.getLogger(logger) for name, logger in CONTEXT_LOGGERS.items()}

#: The context a view runs in, captured by ``/context`` (see ``bench.micro``).
captured: list[contextvars.Context] = []


def capture_context(request: HttpRequest) -> HttpResponse:
    captured.append(contextvars.copy_context())
    return HttpResponse(status=204)


class Hello(APIView):
    """The DRF view every middleware stack is measured on."""

    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []

    def get(self, request: Any) -> Response:
        return Response({"hello": "world"})


class HelloLogged(Hello):
    """The same view, writing one ordinary log line like the access log's."""

    def get(self, request: Any) -> Response:
        response = super().get(request)
        ordinary.info("%s %s %s", request.method, request.path, 200)
        return response


def plain(request: HttpRequest) -> HttpResponse:
    """A plain Django view: the plain endpoint every stack is measured on."""
    return HttpResponse(b"hello")


def logged(request: HttpRequest, via: str) -> HttpResponse:
    """A plain view writing one line through the logger that carries *via*'s log filter."""
    context_loggers[via].info("%s %s %s", request.method, request.path, 200)
    return HttpResponse(b"hello")


class Guarded(Hello):
    """The same view behind ``TenantRequired`` (for the query counts)."""

    def get_permissions(self) -> list[Any]:
        from tenancy.permissions import TenantRequired

        return [TenantRequired()]


urlpatterns = [
    path("context", capture_context),
    path("hello", Hello.as_view()),
    path("plain", plain),
    path("logged/<str:via>", logged),
    path("hello-logged", HelloLogged.as_view()),
    path("guarded", Guarded.as_view()),
]

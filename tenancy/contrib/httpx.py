"""Context propagation for ``httpx`` clients, through request event hooks::

    import httpx
    from tenancy.contrib.httpx import add_context_hook, async_add_context_hook

    client = httpx.Client(event_hooks={"request": [add_context_hook]})
    async_client = httpx.AsyncClient(event_hooks={"request": [async_add_context_hook]})

or the ready-made :func:`context_client` / :func:`async_context_client`.
Headers are read from the context of the code that sends the request (for the
async client: the task awaiting it); headers set by the caller are kept.
"""

from __future__ import annotations

from typing import Any

import httpx

from ..propagation import set_context_headers

__all__ = ["add_context_hook", "async_add_context_hook", "async_context_client", "context_client"]


def add_context_hook(request: httpx.Request) -> None:
    """Request hook of ``httpx.Client``: add the current context to *request*'s headers."""
    set_context_headers(request.headers, request.url)


async def async_add_context_hook(request: httpx.Request) -> None:
    """Request hook of ``httpx.AsyncClient``: add the current context to *request*'s headers."""
    add_context_hook(request)


def _with_hook(hook: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    hooks = dict(kwargs.pop("event_hooks", None) or {})
    hooks["request"] = [hook, *hooks.get("request", [])]
    return {**kwargs, "event_hooks": hooks}


def context_client(**kwargs: Any) -> httpx.Client:
    """Return an ``httpx.Client`` (same arguments) whose requests carry the context."""
    return httpx.Client(**_with_hook(add_context_hook, kwargs))


def async_context_client(**kwargs: Any) -> httpx.AsyncClient:
    """Return an ``httpx.AsyncClient`` (same arguments) whose requests carry the context."""
    return httpx.AsyncClient(**_with_hook(async_add_context_hook, kwargs))

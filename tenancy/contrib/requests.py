"""Context propagation for the ``requests`` library.

Mount :class:`ContextAdapter` on a session, or use :func:`context_session`::

    from tenancy.contrib.requests import context_session

    session = context_session()
    session.get("https://billing.internal/api/invoices")  # carries X-Tenant-ID, X-Request-ID...

Headers are read from the context of the code that sends the request; headers
set on the request or the session are kept.
"""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter

from ..propagation import set_context_headers

__all__ = ["ContextAdapter", "context_session"]


class ContextAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` that adds the current context to every request it sends."""

    def add_headers(self, request: requests.PreparedRequest, **kwargs: Any) -> None:
        set_context_headers(request.headers, request.url)


def context_session(**adapter_kwargs: Any) -> requests.Session:
    """Return a ``requests.Session`` whose HTTP and HTTPS calls carry the context.

    *adapter_kwargs* go to :class:`ContextAdapter` (``max_retries=...``, pool sizes).
    """
    session = requests.Session()
    adapter = ContextAdapter(**adapter_kwargs)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session

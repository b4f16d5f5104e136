"""The middleware stacks compared by benchmark 2, each in front of the same DRF view.

``tenancy`` is the whole request path (request id, tenant resolution, context,
and the access log when its logger is enabled); ``django_guid`` and
``log_request_id`` are what users would pick instead for request ids.
"""

from __future__ import annotations

STACKS: dict[str, list[str]] = {
    "bare": [],
    "tenancy": ["tenancy.middleware.TenantContextMiddleware"],
    "django_guid": ["django_guid.middleware.guid_middleware"],
    "log_request_id": ["log_request_id.middleware.RequestIDMiddleware"],
}

#: The access logger of tenancy (``TENANCY["ACCESS_LOGGER"]``) and the logger of
#: the view that writes one ordinary line; both share one handler and formatter.
ACCESS_LOGGER = "tenancy.access"
ORDINARY_LOGGER = "bench.ordinary"
#: Loggers of the logging endpoint, one per stack: each handler carries that
#: stack's own filter (tenancy's TenantContextFilter, django-log-request-id's
#: RequestIDFilter), which copies the request's id into every record.
#: ``none`` is the logging endpoint without either product: its filter only sets
#: the ``request_id`` the format needs to ``-``, the least any filter costs.
CONTEXT_LOGGERS = {
    "none": "bench.logged.none",
    "tenancy": "bench.logged.tenancy",
    "log_request_id": "bench.logged.log_request_id",
}

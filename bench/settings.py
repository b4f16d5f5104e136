"""Django settings of the benchmarks: the smallest project that serves a DRF view.

``bench.run`` points ``BENCH_DATABASE`` at a throwaway SQLite file; the cache is
local memory, so the numbers are those of tenancy itself, not of a network hop.
Servers started by benchmark 2 choose their middleware with ``BENCH_STACK`` (a
key of ``bench.stacks.STACKS``) and turn the access log on with
``BENCH_ACCESS_LOG=1``; in process, each stack gets a test client of its own.
"""

import os
from typing import Any

from bench.stacks import ACCESS_LOGGER, CONTEXT_LOGGERS, ORDINARY_LOGGER, STACKS

SECRET_KEY = "bench-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "rest_framework",
    "django_guid",
    "tenancy",
]

MIDDLEWARE = STACKS[os.environ.get("BENCH_STACK", "bare")]
ROOT_URLCONF = "bench.urls"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("BENCH_DATABASE", ":memory:"),
    }
}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    # No authentication: the benchmark measures the context, not session lookups.
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
}

TENANCY = {"STATS_FLUSH_INTERVAL": 3600, "ACCESS_LOGGER": ACCESS_LOGGER}

# Every stack makes a request id when the request has none and returns it in
# X-Request-ID, as tenancy does.
DJANGO_GUID = {
    "GUID_HEADER_NAME": "X-Request-ID",
    "VALIDATE_GUID": True,
    "RETURN_HEADER": True,
    "EXPOSE_HEADER": False,
    "INTEGRATIONS": [],
}
LOG_REQUEST_ID_HEADER = "HTTP_X_REQUEST_ID"
GENERATE_REQUEST_ID_IF_NOT_IN_HEADER = True
REQUEST_ID_RESPONSE_HEADER = "X-Request-ID"


class _Discard:
    """A stream that keeps nothing: lines are formatted, and no write(2) adds its noise."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


DISCARD = _Discard()


class NoRequestId:
    """The logging endpoint's filter without either product: ``request_id`` is ``-``."""

    def filter(self, record: Any) -> bool:
        record.request_id = "-"
        return True


# One handler for the access log and the ordinary line: each line is formatted
# and handed to DISCARD. The access logger is only enabled (INFO) where a
# benchmark asks for it.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "line": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "with_id": {"format": "%(asctime)s %(levelname)s %(request_id)s %(name)s %(message)s"},
    },
    "filters": {
        "tenancy": {"()": "tenancy.log.TenantContextFilter"},
        "log_request_id": {"()": "log_request_id.filters.RequestIDFilter"},
        "none": {"()": "bench.settings.NoRequestId"},
    },
    "handlers": {
        "discard": {
            "class": "logging.StreamHandler",
            "stream": "ext://bench.settings.DISCARD",
            "formatter": "line",
        },
        **{
            f"discard_{stack}": {
                "class": "logging.StreamHandler",
                "stream": "ext://bench.settings.DISCARD",
                "formatter": "with_id",
                "filters": [stack],
            }
            for stack in CONTEXT_LOGGERS
        },
    },
    "loggers": {
        ACCESS_LOGGER: {
            "handlers": ["discard"],
            "level": "INFO" if os.environ.get("BENCH_ACCESS_LOG") == "1" else "WARNING",
            "propagate": False,
        },
        ORDINARY_LOGGER: {"handlers": ["discard"], "level": "INFO", "propagate": False},
        **{
            logger: {"handlers": [f"discard_{stack}"], "level": "INFO", "propagate": False}
            for stack, logger in CONTEXT_LOGGERS.items()
        },
    },
    "root": {"handlers": [], "level": "WARNING"},
}

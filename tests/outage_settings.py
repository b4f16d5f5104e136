"""Settings of the outage test server: the test server's, with the Redis the test starts.

``TENANCY_OUTAGE_REDIS_URL`` names that Redis; the socket timeouts are those
docs/production.md recommends, so a Redis that stops answering fails fast.
"""

import os

from tests.server_settings import *  # noqa: F403
from tests.server_settings import TENANCY

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ["TENANCY_OUTAGE_REDIS_URL"],
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }
}
TENANCY = {**TENANCY, "CACHE_RETRY_INTERVAL": 0.2}

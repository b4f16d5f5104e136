"""Minimal settings for the test suite, separate from the demo project.

DATABASE_URL (default: SQLite) and CACHE_URL (default: local memory) choose the
real database and cache the tests run against.
"""

import os

import environ

env = environ.Env()

SECRET_KEY = "tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "rest_framework",
    "rest_framework.authtoken",
    "tenancy",
    "tests.testapp",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "tenancy.middleware.TenantContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "tests.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

_db_path = os.path.join(os.path.dirname(__file__), "..", ".test.sqlite3")
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{_db_path}")}
DATABASES["default"].setdefault("TEST", {})
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not memory: threads and subprocesses of the tests share it.
    DATABASES["default"]["TEST"]["NAME"] = os.path.abspath(_db_path)
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://tests")}
if CACHES["default"]["BACKEND"].endswith(".RedisCache"):
    # A Redis that stops answering fails fast (docs/production.md).
    CACHES["default"].setdefault("OPTIONS", {}).update(
        socket_connect_timeout=1, socket_timeout=1
    )
# CACHE_KEY_FUNCTION=tenancy.cache.make_key runs the suite with tenant-scoped cache keys.
if os.environ.get("CACHE_KEY_FUNCTION"):
    CACHES["default"]["KEY_FUNCTION"] = os.environ["CACHE_KEY_FUNCTION"]

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "static/"

# Tests flush statistics explicitly: a background flush would race the test's
# own transaction, and an exit flush would write after the test database is gone.
TENANCY = {"STATS_AUTO_FLUSH": False}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
}

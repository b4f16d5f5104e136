"""``Context`` blocks and the context accessors (see :mod:`tenancy.current`)."""

from __future__ import annotations

from .current import *  # noqa: F403
from .current import __all__  # noqa: F401

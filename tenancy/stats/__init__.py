"""Statistics: in-memory counters, their batched flush into hourly buckets, and the report.

- :mod:`tenancy.stats.counters`: what every switch and request records (plain Python);
- :mod:`tenancy.stats.flush`: the batched writer and when it runs (``flush_stats()``);
- :mod:`tenancy.stats.report`: usage read back for the admin and the ``tenancy stats`` command.
"""

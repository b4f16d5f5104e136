"""Statistics: in-memory counters, their batched flush into hourly buckets, and the report.

- :mod:`tenancy.stats.counters`: what every switch and request records (plain Python);
- :mod:`tenancy.stats.upsert`: one statement that adds a batch to the hourly buckets;
- :mod:`tenancy.stats.shared`: counts added to Redis as they happen, claimed in batches;
- :mod:`tenancy.stats.rollup`: the per-day, per-hour and 30-day roll-ups the admin reads;
- :mod:`tenancy.stats.flush`: the batched writer and when it runs (``flush_stats()``);
- :mod:`tenancy.stats.report`: usage read back for the admin and the ``tenancy stats`` command.
"""

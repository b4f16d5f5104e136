"""A separate process for the statistics tests: switch tenants, then exit cleanly.

    python -m tests.stats_worker --interval SECONDS acme:50 globex:20

The database settings of the test run come in TENANCY_TEST_DB (JSON), so the
worker writes where the test reads. Automatic flushing is on, as in production:
end-of-request flushes when due, the flusher thread, and the exit flush.
"""

import argparse
import json
import os


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--interval", type=float, required=True)
    parser.add_argument("work", nargs="+", help="tenant_id:count")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    from django.conf import settings

    settings.DATABASES["default"].update(json.loads(os.environ["TENANCY_TEST_DB"]))
    settings.TENANCY = {"STATS_AUTO_FLUSH": True, "STATS_FLUSH_INTERVAL": args.interval}

    import django

    django.setup()

    import tenancy
    from tenancy.stats.counters import counters
    from tenancy.stats.flush import flush_if_due, read_consistently

    for item in args.work:
        tenant_id, count = item.split(":")
        for i in range(int(count)):
            with tenancy.switch(tenant_id):
                counters.request_done(tenant_id, denied=i % 5 == 0)
            flush_if_due()  # as the middleware does at the end of each request
    # Not in the database yet: in this process, or (with Redis) in the shared cache.
    pending = bool(read_consistently(lambda: None)[1])
    print(json.dumps({"pending": pending}), flush=True)


if __name__ == "__main__":
    main()

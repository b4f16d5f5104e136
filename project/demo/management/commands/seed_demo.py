"""Seed the demo: tenants, an admin login, members and a day of activity. Safe to run again."""

from __future__ import annotations

import math
import os
import random
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

import tenancy
from tenancy.models import Tenant, TenantMembership, TenantStatsBucket
from tenancy.stats.counters import Pending, counters
from tenancy.stats.flush import flush_stats, write_pending

DEMO_TENANTS = [
    ("acme", "Acme Corporation", True, {"plan": "enterprise", "region": "eu-west-1"}),
    ("globex", "Globex Inc", True, {"plan": "pro", "region": "us-west-2"}),
    ("initech", "Initech", False, {"plan": "free"}),
]
DEMO_MEMBERS = [("alice", "acme"), ("bob", "globex")]
# Requests per hour at the daily peak, and the share of them denied.
DEMO_TRAFFIC = {"acme": (60, 0.03), "globex": (25, 0.08), "initech": (8, 0.25)}


class Command(BaseCommand):
    help = (
        "Create the demo tenants (acme, globex, initech), an admin login, demo members "
        "and a day of statistics."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        for tenant_id, name, active, metadata in DEMO_TENANTS:
            Tenant.objects.get_or_create(
                tenant_id=tenant_id,
                defaults={"name": name, "active": active, "metadata": metadata},
            )
        user_model = get_user_model()
        username = os.environ.get("DEMO_ADMIN_USER", "admin")
        password = os.environ.get("DEMO_ADMIN_PASSWORD", "tenancy-demo")
        admin = user_model.objects.filter(username=username).first()
        if admin is None:
            admin = user_model.objects.create_superuser(username, "admin@example.com", password)
        for tenant_id in ("acme", "globex"):
            TenantMembership.objects.get_or_create(
                tenant_id=tenant_id, user=admin, defaults={"role": "owner"}
            )
        for member, tenant_id in DEMO_MEMBERS:
            user = user_model.objects.filter(username=member).first()
            if user is None:
                user = user_model.objects.create_user(member, f"{member}@example.com", password)
            TenantMembership.objects.get_or_create(tenant_id=tenant_id, user=user)
        if not TenantStatsBucket.objects.exists():
            self.seed_activity()
        self.stdout.write(self.style.SUCCESS("Demo data is ready."))
        self.stdout.write(
            f"Admin login: http://127.0.0.1:8000/admin/  user={username} password={password}"
        )
        members = ", ".join(f"{member} ({tenant_id})" for member, tenant_id in DEMO_MEMBERS)
        self.stdout.write(
            f"API users: {members}, password {password}; "
            "a token from POST http://127.0.0.1:8000/api/token (see README.md)"
        )

    def seed_activity(self) -> None:
        """Write 23 hours of made-up history, then make this hour's activity for real."""
        rng = random.Random(7)  # the same shape on every machine
        this_hour = int(time.time() // 3600) * 3600
        history: dict[tuple[str, int], Pending] = {}
        for hours_ago in range(1, 24):
            hour = this_hour - hours_ago * 3600
            # Busiest mid-afternoon UTC, quietest at night.
            load = 0.3 + 0.7 * max(0.0, math.sin((hour / 3600 % 24 - 6) / 24 * 2 * math.pi))
            for tenant_id, (peak, deny_rate) in DEMO_TRAFFIC.items():
                if tenant_id == "initech" and hours_ago < 10:
                    continue  # deactivated ten hours ago
                requests = round(peak * load * rng.uniform(0.75, 1.25))
                denied = round(requests * deny_rate * rng.uniform(0.5, 1.5))
                switches = requests + rng.randint(0, peak // 5)  # background jobs switch too
                history[(tenant_id, hour)] = Pending(
                    switches, requests, denied, hour + rng.uniform(600, 3500)
                )
        write_pending(history, using="default")
        # This hour through the real path: in-memory counters, then one batched flush.
        for tenant_id, count in (("acme", 24), ("globex", 9)):
            for i in range(count):
                with tenancy.switch(tenant_id):
                    counters.request_done(tenant_id, denied=i % 8 == 7)
        flush_stats()

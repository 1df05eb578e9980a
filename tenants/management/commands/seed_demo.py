"""``manage.py seed_demo [--password P]``: the demo tenants and users.

Tenants ``acme`` and ``globex``; users ``admin`` (superuser), ``alice`` (acme admin),
``bob`` (acme operator), ``carol`` (acme viewer), ``dave`` (globex admin). Safe to run
again: existing rows are kept, passwords are reset to the one given (or generated).
"""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from tenants import services
from tenants.choices import Role
from tenants.models import Membership, Tenant

TENANTS = {
    "acme": ("ACME Corporation", "Rockets, anvils and the services that sell them."),
    "globex": ("Globex", "Research and development cluster."),
}
USERS = [
    # username, first name, superuser, tenant, role
    ("admin", "Platform admin", True, None, None),
    ("alice", "Alice", False, "acme", Role.ADMIN),
    ("bob", "Bob", False, "acme", Role.OPERATOR),
    ("carol", "Carol", False, "acme", Role.VIEWER),
    ("dave", "Dave", False, "globex", Role.ADMIN),
]


class Command(BaseCommand):
    help = "Create the demo tenants and users (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--password", help="password for every demo user (default: generated)")

    @transaction.atomic
    def handle(self, *args, password: str | None = None, **options):
        password = password or secrets.token_urlsafe(9)
        User = get_user_model()
        tenants = {}
        for slug, (name, description) in TENANTS.items():
            tenant = Tenant.objects.filter(slug=slug).first() or services.tenant_create(
                actor="seed_demo", slug=slug, name=name, description=description
            )
            tenants[slug] = tenant
        for username, first_name, superuser, slug, role in USERS:
            user, _ = User.objects.get_or_create(
                username=username,
                defaults={"first_name": first_name, "email": f"{username}@example.com"},
            )
            user.is_superuser = user.is_staff = superuser
            user.set_password(password)
            user.save()
            if slug and not Membership.objects.filter(user=user, tenant=tenants[slug]).exists():
                services.membership_add(
                    actor="seed_demo", tenant=tenants[slug], user=user, role=role
                )
        from compute.services.seed import seed_local_infrastructure

        for line in seed_local_infrastructure():
            self.stdout.write(f"  {line}")
        from usage.services.prices import price_list_seed_demo

        self.stdout.write(f"  {price_list_seed_demo()}")
        self.stdout.write(self.style.SUCCESS("Demo data ready."))
        self.stdout.write(
            "Logins (password for all: " + password + "):\n"
            "  admin  platform admin (Django admin at /admin/)\n"
            "  alice  acme admin\n  bob    acme operator\n  carol  acme viewer\n"
            "  dave   globex admin"
        )

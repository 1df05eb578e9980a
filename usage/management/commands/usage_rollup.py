"""``manage.py usage_rollup``: run the usage rollup now (what the beat does)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from usage.services.metering import usage_rollup


class Command(BaseCommand):
    help = "Roll the usage interval log up into hourly and daily rows (idempotent)."

    def handle(self, *args, **options) -> None:
        result = usage_rollup()
        self.stdout.write(
            f"{result.hours} hours rolled up ({result.hourly_rows} hourly rows), "
            f"through {result.through}"
        )

"""Meter what the ledger already holds: one interval per existing reservation (from its
creation to its release, or open), so usage starts with the portal's history."""

from django.db import migrations


def backfill(apps, schema_editor):
    Reservation = apps.get_model("tenants", "Reservation")
    UsageSubject = apps.get_model("usage", "UsageSubject")
    UsageInterval = apps.get_model("usage", "UsageInterval")
    subjects = {}
    intervals = []
    for reservation in Reservation.objects.select_related("tenant").order_by("created", "id"):
        subject = subjects.get(reservation.ref)
        if subject is None:
            subject, _ = UsageSubject.objects.get_or_create(
                ref=reservation.ref,
                defaults={
                    "tenant_id": reservation.tenant_id,
                    "tenant_slug": reservation.tenant.slug,
                    "kind": reservation.kind,
                    "object_id": reservation.object_id,
                },
            )
            subjects[reservation.ref] = subject
        intervals.append(
            UsageInterval(
                subject=subject,
                tenant_id=reservation.tenant_id,
                reservation_id=reservation.pk,
                start=reservation.created,
                end=reservation.released,
                cpu=reservation.cpu,
                memory=reservation.memory,
                storage=reservation.storage,
                vms=reservation.vms,
                pods=reservation.pods,
            )
        )
    UsageInterval.objects.bulk_create(intervals, batch_size=2000, ignore_conflicts=True)


class Migration(migrations.Migration):
    dependencies = [("usage", "0001_initial")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]

import django.core.validators
from django.db import migrations, models

BLOCK = 500
FLOOR = 5900


def _machine(uri: str) -> str:
    # As compute.models.hosts.machine_of at the time of this migration.
    from urllib.parse import urlsplit

    if uri.startswith("test:"):
        return ""
    address = (urlsplit(uri).hostname or "").lower()
    local = {"", "localhost", "127.0.0.1", "::1", "localhost.localdomain"}
    return "local" if address in local else address


def separate_ranges(apps, schema_editor):
    """Hosts on one machine (node1 and node2 share the loopback) get console port blocks
    of their own, in the order they were registered: 5900–6399, 6400–6899, ..."""
    Host = apps.get_model("compute", "Host")
    seen: dict[str, int] = {}
    for host in Host.objects.order_by("pk"):
        machine = _machine(host.uri)
        index = seen.get(machine, 0)
        seen[machine] = index + 1
        low = FLOOR + (index * BLOCK if machine else 0)
        Host.objects.filter(pk=host.pk).update(vnc_port_min=low, vnc_port_max=low + BLOCK - 1)


class Migration(migrations.Migration):
    dependencies = [
        ("compute", "0011_volumes"),
    ]

    operations = [
        migrations.AddField(
            model_name="host",
            name="vnc_port_min",
            field=models.PositiveIntegerField(
                default=5900,
                help_text="Guests on this host get their VNC console port from this range. "
                "Hosts on one machine (the same libvirt address) need ranges that do not "
                "overlap.",
                validators=[
                    django.core.validators.MinValueValidator(5900),
                    django.core.validators.MaxValueValidator(65535),
                ],
                verbose_name="first console port",
            ),
        ),
        migrations.AddField(
            model_name="host",
            name="vnc_port_max",
            field=models.PositiveIntegerField(
                default=6399,
                help_text="Last port of the range (inclusive); it bounds how many guests run "
                "here.",
                validators=[
                    django.core.validators.MinValueValidator(5900),
                    django.core.validators.MaxValueValidator(65535),
                ],
                verbose_name="last console port",
            ),
        ),
        migrations.AddConstraint(
            model_name="host",
            constraint=models.CheckConstraint(
                condition=models.Q(("vnc_port_min__lte", models.F("vnc_port_max"))),
                name="host_vnc_port_range_ordered",
            ),
        ),
        migrations.RunPython(separate_ranges, migrations.RunPython.noop),
    ]

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("compute", "0012_host_vnc_ports"),
    ]

    operations = [
        migrations.AddField(
            model_name="virtualmachine",
            name="detail",
            field=models.TextField(
                blank=True,
                editable=False,
                help_text="Platform staff only: the hypervisor's own words behind the message.",
            ),
        ),
        migrations.AddField(
            model_name="migration",
            name="detail",
            field=models.TextField(
                blank=True,
                editable=False,
                help_text="Platform staff only: the hypervisor's own words behind a failure.",
            ),
        ),
    ]

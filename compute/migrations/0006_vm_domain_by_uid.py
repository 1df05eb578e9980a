from django.db import migrations, models


def keep_existing_domain_names(apps, schema_editor):
    """VMs created before this migration keep the domain they have (``<tenant>--<vm>``)."""
    VirtualMachine = apps.get_model("compute", "VirtualMachine")
    for vm in VirtualMachine.objects.select_related("tenant").only("pk", "name", "tenant__slug"):
        VirtualMachine.objects.filter(pk=vm.pk).update(
            legacy_domain_name=f"{vm.tenant.slug}--{vm.name}"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("compute", "0005_consoleticket"),
    ]

    operations = [
        migrations.AddField(
            model_name="virtualmachine",
            name="legacy_domain_name",
            field=models.CharField(
                blank=True,
                editable=False,
                help_text="Domain name of a VM created before domains were named by uid.",
                max_length=130,
            ),
        ),
        migrations.RunPython(keep_existing_domain_names, migrations.RunPython.noop),
    ]

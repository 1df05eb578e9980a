import uuid

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


def give_existing_images_a_uid(apps, schema_editor):
    """Images registered before imports existed each get their own uid (the field's
    default would give every existing row the same one)."""
    Image = apps.get_model("compute", "Image")
    for pk in Image.objects.values_list("pk", flat=True):
        Image.objects.filter(pk=pk).update(uid=uuid.uuid4())


class Migration(migrations.Migration):
    dependencies = [
        ("compute", "0007_vm_ready_condition"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="image",
            name="uid",
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.RunPython(give_existing_images_a_uid, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="image",
            name="uid",
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
        migrations.AddField(
            model_name="image",
            name="created",
            field=models.DateTimeField(auto_now_add=True, default=django.utils.timezone.now),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="image",
            name="updated",
            field=models.DateTimeField(auto_now=True),
        ),
        migrations.AddField(
            model_name="image",
            name="resource_version",
            field=models.PositiveBigIntegerField(default=1, editable=False),
        ),
        migrations.AddField(
            model_name="image",
            name="phase",
            field=models.CharField(
                choices=[
                    ("Uploading", "Uploading"),
                    ("Pending", "Pending"),
                    ("Importing", "Importing"),
                    ("Converting", "Converting"),
                    ("Ready", "Ready"),
                    ("Failed", "Failed"),
                ],
                db_index=True,
                default="Ready",
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="image",
            name="message",
            field=models.CharField(blank=True, max_length=1000),
        ),
        migrations.AddField(
            model_name="image",
            name="phase_changed",
            field=models.DateTimeField(auto_now_add=True, default=django.utils.timezone.now),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="image",
            name="source",
            field=models.CharField(
                blank=True,
                choices=[
                    ("", "Platform (registered by staff)"),
                    ("upload", "Uploaded from the browser or a tus client"),
                    ("url", "Imported from an HTTP(S) URL"),
                ],
                default="",
                max_length=8,
            ),
        ),
        migrations.AddField(
            model_name="image",
            name="source_url",
            field=models.CharField(blank=True, max_length=2000),
        ),
        migrations.AddField(
            model_name="image",
            name="expected_sha256",
            field=models.CharField(
                blank=True,
                help_text="The checksum the importer gave; the file must match it.",
                max_length=64,
            ),
        ),
        migrations.AddField(
            model_name="image",
            name="sha256",
            field=models.CharField(
                blank=True,
                help_text="Checksum of the file as received (before conversion).",
                max_length=64,
            ),
        ),
        migrations.AddField(
            model_name="image",
            name="declared_bytes",
            field=models.BigIntegerField(
                blank=True,
                help_text="Size announced by the uploader (Upload-Length) or the importer.",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="image",
            name="upload_offset",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="image",
            name="progress_bytes",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="image",
            name="progress_total",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="image",
            name="source_format",
            field=models.CharField(
                blank=True, help_text="Format detected by qemu-img (qcow2 or raw).", max_length=16
            ),
        ),
        migrations.AddField(
            model_name="image",
            name="size_bytes",
            field=models.BigIntegerField(
                blank=True, help_text="Size of the stored qcow2 file.", null=True
            ),
        ),
        migrations.AddField(
            model_name="image",
            name="virtual_size_bytes",
            field=models.BigIntegerField(
                blank=True, help_text="The disk size a guest sees.", null=True
            ),
        ),
        migrations.AddField(
            model_name="image",
            name="attempts",
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="image",
            name="created_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
    ]

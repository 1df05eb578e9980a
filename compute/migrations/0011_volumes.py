import django.core.validators
import django.db.models.deletion
import uuid
from django.conf import settings
from django.db import migrations, models


def _root_name(vm_name: str, taken: set[str]) -> str:
    base = f"{vm_name[:58]}-root"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{vm_name[:55]}-root{n}"
    return name


def root_disks_become_volumes(apps, schema_editor):
    """Every VM's root disk becomes a Volume (device vda, deleted with its VM), and its
    storage moves from the VM's reservation to the volume's: charged once, as before."""
    VirtualMachine = apps.get_model("compute", "VirtualMachine")
    Volume = apps.get_model("compute", "Volume")
    Reservation = apps.get_model("tenants", "Reservation")
    vms = VirtualMachine.objects.filter(disk_gib__gt=0).select_related("tenant", "host", "image")
    for vm in vms:
        taken = set(Volume.objects.filter(tenant=vm.tenant).values_list("name", flat=True))
        domain = vm.legacy_domain_name or f"isotope-{vm.uid}"
        from_image = vm.image.kind == "disk"
        on_test_driver = vm.host is not None and vm.host.uri.startswith("test:")
        volume = Volume.objects.create(
            uid=uuid.uuid4(),
            tenant=vm.tenant,
            name=_root_name(vm.name, taken),
            size_gib=vm.disk_gib,
            storage_class="local",
            format="qcow2",
            phase="Attached",
            created_from="image" if from_image else "blank",
            source_image=vm.image if from_image else None,
            source_name=vm.image.name if from_image else "",
            vm=vm,
            device="vda",
            delete_with_vm=True,
            host=vm.host,
            # Where the backend used to put root disks: one pool, shared by every host.
            pool="default-pool" if on_test_driver else "isotope",
            backend_name=f"{domain}.qcow2",
            capacity_gib=vm.disk_gib,
            attached_domain=domain,
            attached_device="vda",
            created_by=vm.created_by,
        )
        held = Reservation.objects.filter(ref=f"vm:{vm.uid}", released__isnull=True).first()
        if held is not None and held.storage:
            Reservation.objects.create(
                tenant=vm.tenant,
                ref=f"volume:{volume.uid}",
                kind="volume",
                object_id=str(volume.uid),
                storage=held.storage,
            )
            Reservation.objects.filter(pk=held.pk).update(storage=0)


def root_volumes_back_to_vms(apps, schema_editor):
    Volume = apps.get_model("compute", "Volume")
    Reservation = apps.get_model("tenants", "Reservation")
    for volume in Volume.objects.filter(device="vda", vm__isnull=False).select_related("vm"):
        held = Reservation.objects.filter(ref=f"volume:{volume.uid}", released__isnull=True)
        storage = sum(held.values_list("storage", flat=True))
        held.delete()
        Reservation.objects.filter(ref=f"vm:{volume.vm.uid}", released__isnull=True).update(
            storage=storage
        )
    # The volume rows go with their table (deleting them here would leave PostgreSQL
    # deferred constraint checks pending against the table being dropped).


class Migration(migrations.Migration):
    dependencies = [
        ("compute", "0010_observed_generation"),
        ("tenants", "0005_reservation_kind_volume"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="workload",
            name="volumes",
            field=models.JSONField(
                blank=True,
                default=list,
                help_text='Volume claims its pods mount: [{"volume", "mountPath", "readOnly"}].',
            ),
        ),
        migrations.AddField(
            model_name="host",
            name="storage_gib",
            field=models.PositiveBigIntegerField(
                default=0,
                editable=False,
                help_text="Capacity of the volume pool in GiB, read by 'check now'.",
            ),
        ),
        migrations.AddField(
            model_name="host",
            name="storage_path",
            field=models.CharField(
                blank=True,
                help_text="Directory of this host's volume pool (a libvirt dir pool); empty: ISOTOPE_STORAGE_ROOT/<host name>.",
                max_length=500,
            ),
        ),
        migrations.CreateModel(
            name="Volume",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("uid", models.UUIDField(default=uuid.uuid4, editable=False, unique=True)),
                ("created", models.DateTimeField(auto_now_add=True)),
                ("updated", models.DateTimeField(auto_now=True)),
                ("resource_version", models.PositiveBigIntegerField(default=1, editable=False)),
                (
                    "name",
                    models.CharField(
                        max_length=63,
                        validators=[
                            django.core.validators.RegexValidator(
                                "\\A[a-z0-9]([-a-z0-9]*[a-z0-9])?\\Z",
                                "Use lowercase letters, digits and hyphens; start and end with a letter or digit.",
                            )
                        ],
                    ),
                ),
                (
                    "size_gib",
                    models.PositiveIntegerField(
                        help_text="Desired size in GiB; volumes only grow."
                    ),
                ),
                (
                    "storage_class",
                    models.CharField(
                        choices=[
                            ("local", "Local disk (libvirt pool on a VM host)"),
                            ("cluster", "Kubernetes volume claim (for pods)"),
                        ],
                        default="local",
                        max_length=12,
                    ),
                ),
                (
                    "format",
                    models.CharField(
                        choices=[
                            ("qcow2", "qcow2"),
                            ("raw", "raw"),
                            ("filesystem", "Filesystem (PersistentVolumeClaim)"),
                        ],
                        default="qcow2",
                        max_length=12,
                    ),
                ),
                (
                    "phase",
                    models.CharField(
                        choices=[
                            ("Pending", "Pending"),
                            ("Importing", "Importing"),
                            ("Ready", "Ready"),
                            ("Attached", "Attached"),
                            ("Failed", "Failed"),
                            ("Deleting", "Deleting"),
                        ],
                        db_index=True,
                        default="Pending",
                        max_length=12,
                    ),
                ),
                ("message", models.CharField(blank=True, max_length=1000)),
                ("phase_changed", models.DateTimeField(auto_now_add=True)),
                (
                    "created_from",
                    models.CharField(
                        choices=[
                            ("blank", "Blank"),
                            ("image", "Image"),
                            ("snapshot", "Snapshot"),
                            ("volume", "Another volume"),
                        ],
                        default="blank",
                        max_length=10,
                    ),
                ),
                (
                    "source_name",
                    models.CharField(
                        blank=True,
                        help_text="What it was created from, kept when the source is gone.",
                        max_length=200,
                    ),
                ),
                (
                    "device",
                    models.CharField(
                        blank=True,
                        help_text="Its disk on that VM: vda is the root disk, vdb… data disks.",
                        max_length=8,
                    ),
                ),
                (
                    "delete_with_vm",
                    models.BooleanField(
                        default=False,
                        help_text="A root disk made with its VM goes when the VM is deleted.",
                    ),
                ),
                (
                    "pool",
                    models.CharField(
                        blank=True, help_text="libvirt storage pool on that host.", max_length=100
                    ),
                ),
                (
                    "backend_name",
                    models.CharField(
                        blank=True,
                        help_text="The volume's name in the pool (or the PVC's name).",
                        max_length=255,
                    ),
                ),
                (
                    "capacity_gib",
                    models.PositiveIntegerField(
                        default=0, help_text="Size the backend reports (observed)."
                    ),
                ),
                (
                    "attached_domain",
                    models.CharField(
                        blank=True,
                        help_text="Domain the backend has it attached to (observed).",
                        max_length=130,
                    ),
                ),
                ("attached_device", models.CharField(blank=True, max_length=8)),
                ("labels", models.JSONField(blank=True, default=dict)),
                (
                    "cluster",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="volumes",
                        to="compute.kubernetescluster",
                    ),
                ),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "host",
                    models.ForeignKey(
                        blank=True,
                        help_text="The host whose pool holds a local volume.",
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="volumes",
                        to="compute.host",
                    ),
                ),
                (
                    "source_image",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="compute.image",
                    ),
                ),
                (
                    "source_volume",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="clones",
                        to="compute.volume",
                    ),
                ),
                (
                    "tenant",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="volumes",
                        to="tenants.tenant",
                    ),
                ),
                (
                    "vm",
                    models.ForeignKey(
                        blank=True,
                        help_text="The VM it is (to be) attached to.",
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="volumes",
                        to="compute.virtualmachine",
                    ),
                ),
            ],
            options={
                "ordering": ["tenant", "name"],
                "indexes": [
                    models.Index(fields=["host", "phase"], name="compute_vol_host_id_481054_idx")
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("tenant", "name"),
                        name="compute_volume_unique_name_tenant",
                        violation_error_message="A volume with this name exists in the tenant.",
                    ),
                    models.UniqueConstraint(
                        condition=models.Q(("vm__isnull", False)),
                        fields=("vm", "device"),
                        name="compute_volume_one_per_device",
                        violation_error_message="That device of the VM holds another volume.",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("size_gib__gte", 1)),
                        name="compute_volume_minimum_size",
                        violation_error_message="A volume holds at least 1 GiB.",
                    ),
                ],
            },
        ),
        migrations.RunPython(root_disks_become_volumes, root_volumes_back_to_vms),
    ]

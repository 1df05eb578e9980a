"""Indexes another index of the same table serves already (its column leads a unique
constraint or a composite index) go: the fields' db_index=False in the state, and in
the database DROP INDEX alone (portal.migration_operations.drop_indexes), one
statement at a time (not atomic)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from portal.migration_operations import drop_indexes


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('compute', '0030_network_segments'),
        ('tenants', '0012_drop_redundant_indexes'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='autoscaler',
                    name='tenant',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='autoscalers', to='tenants.tenant', verbose_name='tenant'),
                ),
                migrations.AlterField(
                    model_name='backup',
                    name='tenant',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='backups', to='tenants.tenant'),
                ),
                migrations.AlterField(
                    model_name='idempotencykey',
                    name='user',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='user'),
                ),
                migrations.AlterField(
                    model_name='image',
                    name='name',
                    field=models.SlugField(db_index=False, max_length=63, verbose_name='name'),
                ),
                migrations.AlterField(
                    model_name='migration',
                    name='source',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='outbound_migrations', to='compute.host', verbose_name='source host'),
                ),
                migrations.AlterField(
                    model_name='network',
                    name='tenant',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='networks', to='tenants.tenant', verbose_name='tenant'),
                ),
                migrations.AlterField(
                    model_name='networkinterface',
                    name='vm',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='nics', to='compute.virtualmachine', verbose_name='VM'),
                ),
                migrations.AlterField(
                    model_name='securitygroup',
                    name='tenant',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='security_groups', to='tenants.tenant'),
                ),
                migrations.AlterField(
                    model_name='service',
                    name='tenant',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='services', to='tenants.tenant', verbose_name='tenant'),
                ),
                migrations.AlterField(
                    model_name='snapshot',
                    name='volume',
                    field=models.ForeignKey(db_index=False, help_text='The volume it is a copy of (a volume with snapshots is not deleted).', on_delete=django.db.models.deletion.PROTECT, related_name='snapshots', to='compute.volume', verbose_name='volume'),
                ),
                migrations.AlterField(
                    model_name='tenantnamespace',
                    name='tenant',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='namespaces', to='tenants.tenant', verbose_name='tenant'),
                ),
                migrations.AlterField(
                    model_name='virtualmachine',
                    name='host',
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='vms', to='compute.host', verbose_name='host'),
                ),
                migrations.AlterField(
                    model_name='virtualmachine',
                    name='tenant',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='vms', to='tenants.tenant', verbose_name='tenant'),
                ),
                migrations.AlterField(
                    model_name='vmpool',
                    name='tenant',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='vm_pools', to='tenants.tenant', verbose_name='tenant'),
                ),
                migrations.AlterField(
                    model_name='volume',
                    name='host',
                    field=models.ForeignKey(blank=True, db_index=False, help_text='The host whose pool holds a local volume.', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='volumes', to='compute.host', verbose_name='host'),
                ),
                migrations.AlterField(
                    model_name='volume',
                    name='tenant',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='volumes', to='tenants.tenant', verbose_name='tenant'),
                ),
                migrations.AlterField(
                    model_name='workload',
                    name='cluster',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='workloads', to='compute.kubernetescluster', verbose_name='cluster'),
                ),
                migrations.AlterField(
                    model_name='workload',
                    name='tenant',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='workloads', to='tenants.tenant', verbose_name='tenant'),
                ),
            ],
            database_operations=[
                drop_indexes(
                    ('compute_autoscaler_tenant_id_ef6aff15', 'compute_autoscaler', 'tenant_id'),
                    ('compute_backup_tenant_id_5bfbd332', 'compute_backup', 'tenant_id'),
                    ('compute_idempotencykey_user_id_95502734', 'compute_idempotencykey', 'user_id'),
                    ('compute_image_name_8976d401', 'compute_image', 'name'),
                    ('compute_image_name_8976d401_like', 'compute_image', 'name varchar_pattern_ops'),
                    ('compute_migration_source_id_1bcb0e51', 'compute_migration', 'source_id'),
                    ('compute_network_tenant_id_cd9ad3f7', 'compute_network', 'tenant_id'),
                    ('compute_networkinterface_vm_id_d2c5bdfa', 'compute_networkinterface', 'vm_id'),
                    ('compute_securitygroup_tenant_id_00845c4a', 'compute_securitygroup', 'tenant_id'),
                    ('compute_service_tenant_id_c0d5c206', 'compute_service', 'tenant_id'),
                    ('compute_snapshot_volume_id_f986547e', 'compute_snapshot', 'volume_id'),
                    ('compute_tenantnamespace_tenant_id_43b0cff5', 'compute_tenantnamespace', 'tenant_id'),
                    ('compute_virtualmachine_host_id_6a7e8411', 'compute_virtualmachine', 'host_id'),
                    ('compute_virtualmachine_tenant_id_fd7f4b0d', 'compute_virtualmachine', 'tenant_id'),
                    ('compute_vmpool_tenant_id_4a062d1e', 'compute_vmpool', 'tenant_id'),
                    ('compute_volume_host_id_a85b635a', 'compute_volume', 'host_id'),
                    ('compute_volume_tenant_id_3ca4ac39', 'compute_volume', 'tenant_id'),
                    ('compute_workload_cluster_id_deb1017f', 'compute_workload', 'cluster_id'),
                    ('compute_workload_tenant_id_83c0edcd', 'compute_workload', 'tenant_id'),
                ),
            ],
        ),
    ]

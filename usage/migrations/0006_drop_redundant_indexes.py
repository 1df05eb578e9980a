"""Indexes another index of the same table serves already (its column leads a unique
constraint or a composite index) go: the fields' db_index=False in the state, and in
the database DROP INDEX alone (portal.migration_operations.drop_indexes), one
statement at a time (not atomic)."""

import django.db.models.deletion
from django.db import migrations, models

from portal.migration_operations import drop_indexes


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('tenants', '0012_drop_redundant_indexes'),
        ('usage', '0005_usage_field_verbose_names'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='quotaalert',
                    name='tenant',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='tenants.tenant', verbose_name='tenant'),
                ),
                migrations.AlterField(
                    model_name='usagedaily',
                    name='subject',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='usage.usagesubject', verbose_name='subject'),
                ),
                migrations.AlterField(
                    model_name='usagedaily',
                    name='tenant',
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='tenants.tenant', verbose_name='tenant'),
                ),
                migrations.AlterField(
                    model_name='usagehourly',
                    name='subject',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='usage.usagesubject', verbose_name='subject'),
                ),
                migrations.AlterField(
                    model_name='usagehourly',
                    name='tenant',
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='tenants.tenant', verbose_name='tenant'),
                ),
            ],
            database_operations=[
                drop_indexes(
                    ('usage_quotaalert_tenant_id_f1c50295', 'usage_quotaalert', 'tenant_id'),
                    ('usage_usagedaily_subject_id_1f8a8029', 'usage_usagedaily', 'subject_id'),
                    ('usage_usagedaily_tenant_id_fbfae579', 'usage_usagedaily', 'tenant_id'),
                    ('usage_usagehourly_subject_id_4dd59eaf', 'usage_usagehourly', 'subject_id'),
                    ('usage_usagehourly_tenant_id_3b8b4da1', 'usage_usagehourly', 'tenant_id'),
                ),
            ],
        ),
    ]

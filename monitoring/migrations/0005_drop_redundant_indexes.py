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
        ('compute', '0031_drop_redundant_indexes'),
        ('monitoring', '0004_field_verbose_names'),
        ('tenants', '0012_drop_redundant_indexes'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='event',
                    name='tenant',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='events', to='tenants.tenant', verbose_name='tenant'),
                ),
                migrations.AlterField(
                    model_name='notification',
                    name='user',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='notifications', to=settings.AUTH_USER_MODEL, verbose_name='user'),
                ),
                migrations.AlterField(
                    model_name='notificationpreference',
                    name='user',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='notification_preferences', to=settings.AUTH_USER_MODEL, verbose_name='user'),
                ),
                migrations.AlterField(
                    model_name='vmrollup',
                    name='vm',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='compute.virtualmachine', verbose_name='VM'),
                ),
                migrations.AlterField(
                    model_name='vmsample',
                    name='vm',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='compute.virtualmachine', verbose_name='VM'),
                ),
                migrations.AlterField(
                    model_name='webhook',
                    name='tenant',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='webhooks', to='tenants.tenant', verbose_name='tenant'),
                ),
                migrations.AlterField(
                    model_name='webhookdelivery',
                    name='webhook',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='monitoring.webhook', verbose_name='webhook'),
                ),
            ],
            database_operations=[
                drop_indexes(
                    ('monitoring_event_tenant_id_cb5e11b2', 'monitoring_event', 'tenant_id'),
                    ('monitoring_notification_user_id_df26fcf3', 'monitoring_notification', 'user_id'),
                    ('monitoring_notificationpreference_user_id_cd994a92', 'monitoring_notificationpreference', 'user_id'),
                    ('monitoring_vmrollup_vm_id_eee5fc5e', 'monitoring_vmrollup', 'vm_id'),
                    ('monitoring_vmsample_vm_id_30e2595a', 'monitoring_vmsample', 'vm_id'),
                    ('monitoring_webhook_tenant_id_3e5666ec', 'monitoring_webhook', 'tenant_id'),
                    ('monitoring_webhookdelivery_webhook_id_241a3075', 'monitoring_webhookdelivery', 'webhook_id'),
                ),
            ],
        ),
    ]

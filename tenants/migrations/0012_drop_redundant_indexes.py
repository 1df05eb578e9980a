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
        ('tenants', '0011_field_verbose_names'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='membership',
                    name='user',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='memberships', to=settings.AUTH_USER_MODEL, verbose_name='user'),
                ),
                migrations.AlterField(
                    model_name='reservation',
                    name='tenant',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='reservations', to='tenants.tenant', verbose_name='tenant'),
                ),
            ],
            database_operations=[
                drop_indexes(
                    ('tenants_membership_user_id_2c860192', 'tenants_membership', 'user_id'),
                    ('tenants_reservation_tenant_id_e34a4555', 'tenants_reservation', 'tenant_id'),
                ),
            ],
        ),
    ]

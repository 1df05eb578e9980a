"""portal.sql: written-out reads give what the ORM gives, and values stay parameters."""

from __future__ import annotations

from decimal import Decimal

import pytest

from compute.models import Host, VirtualMachine
from portal import sql
from tenants import services as tenant_services
from tenants.models import Quota, Tenant
from tests.compute.test_api_vms import make_vm

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]


def same(found, expected) -> None:
    """Every concrete field equal, of the same Python type, and the instance saved."""
    assert type(found) is type(expected) and found.pk == expected.pk
    for field in type(expected)._meta.concrete_fields:
        got, want = getattr(found, field.attname), getattr(expected, field.attname)
        assert got == want, field.name
        assert type(got) is type(want), field.name
    assert not found._state.adding and found._state.db == "default"


def test_rows_come_back_as_the_orm_reads_them(demo, make_host, tiny_image):
    make_host("node-a")
    vm = make_vm(demo, name="web1")
    VirtualMachine.objects.filter(pk=vm.pk).update(labels={"app": "web", "tier": "1"})
    tenant_services.quota_set(actor=None, tenant=demo.acme, limits={"cpu": Decimal("2.5")})

    same(sql.first(VirtualMachine, "name = %s", ["web1"]), VirtualMachine.objects.get(pk=vm.pk))
    same(sql.first(Tenant, "slug = %s", ["acme"]), Tenant.objects.get(slug="acme"))
    quota = sql.first(Quota, "tenant_id = %s", [demo.acme.pk])
    same(quota, Quota.objects.get(tenant=demo.acme))
    assert quota.cpu == Decimal("2.5")
    assert [h.name for h in sql.select(Host, "1 = 1", order_by="name")] == ["node-a"]


def test_order_limit_and_annotations(demo):
    slugs = [t.slug for t in sql.select(Tenant, "1 = 1", order_by="slug DESC")]
    assert slugs == sorted(Tenant.objects.values_list("slug", flat=True), reverse=True)
    assert len(sql.select(Tenant, "1 = 1", limit=1)) == 1
    (acme,) = sql.select(Tenant, "slug = %s", ["acme"], annotate={"twice": ("%s * 2", [21])})
    assert acme.twice == 42 and acme.slug == "acme"
    assert sql.first(Tenant, "slug = %s", ["nobody"]) is None


def test_values_are_parameters_never_sql(demo, make_host, tiny_image):
    make_host("node-a")
    make_vm(demo, name="web1")
    hostile = "web1' OR '1' = '1"
    assert not sql.exists(VirtualMachine, "name = %s", [hostile])
    assert sql.exists(VirtualMachine, "name = %s", ["web1"])
    assert sql.select(VirtualMachine, "name = %s", [hostile]) == []
    assert VirtualMachine.objects.count() == 1


def test_an_empty_in_list_is_refused_not_compiled():
    assert sql.placeholders([1, 2, 3]) == "%s, %s, %s"
    with pytest.raises(ValueError):
        sql.placeholders([])


def test_related_rows_come_in_the_same_statement_and_only_the_row_is_locked(
    demo, make_host, tiny_image, django_assert_num_queries
):
    from django.db import transaction

    make_host("node-a")
    vm = make_vm(demo, name="web1")
    table = VirtualMachine._meta.db_table
    with django_assert_num_queries(1):
        (found,) = sql.select(
            VirtualMachine, f"{table}.id = %s", [vm.pk], related=("tenant", "host", "pool")
        )
        assert found.tenant.slug == "acme" and found.host.name == "node-a"
        assert found.pool is None  # no pool: None, not a read
    same(found, VirtualMachine.objects.get(pk=vm.pk))
    same(found.tenant, demo.acme)
    with transaction.atomic(), django_assert_num_queries(1) as captured:
        locked = VirtualMachine.locked(vm.pk, "tenant", "host")
        assert locked.host.name == "node-a"
    if transaction.get_connection().features.has_select_for_update_of:
        assert f'FOR UPDATE OF "{table}"' in captured.captured_queries[0]["sql"]
    assert VirtualMachine.locked(10**9) is None


def test_an_update_writes_values_as_the_orm_would(demo, make_host, tiny_image):
    from django.utils import timezone

    node_a, node_b = make_host("node-a"), make_host("node-b")
    vm = make_vm(demo, name="web1")
    VirtualMachine.objects.filter(pk=vm.pk).update(host=node_a)
    before = VirtualMachine.objects.get(pk=vm.pk)
    when = timezone.now()
    written = sql.update(
        VirtualMachine,
        vm.pk,
        {
            "labels": {"app": "web's", "n": "1"},
            "host": node_b,
            "message": 'it\'s "quoted"',
            "phase_changed": when,
            "vnc_port": None,
        },
        increment=("resource_version", "generation"),
    )
    assert written == 1
    after = VirtualMachine.objects.get(pk=vm.pk)
    assert after.labels == {"app": "web's", "n": "1"} and after.host_id == node_b.pk
    assert after.message == 'it\'s "quoted"' and after.phase_changed == when
    assert after.vnc_port is None
    assert after.resource_version == before.resource_version + 1
    assert after.generation == before.generation + 1
    assert sql.update(VirtualMachine, 10**9, {"message": "x"}) == 0
    with pytest.raises(TypeError):
        from django.db.models import F

        sql.update(VirtualMachine, vm.pk, {"generation": F("generation") + 1})


def test_an_insert_writes_the_row_the_orm_would(demo, make_host, tiny_image):
    """A VM written in and one created through the ORM from the same values read back
    alike, field by field (times, JSON, UUID, foreign keys, defaults); the key and the
    automatic times are set on the instance."""
    import uuid

    from django.utils import timezone

    host = make_host("node-a")
    values = {
        "tenant": demo.acme,
        "vcpus": 2,
        "memory_mib": 256,
        "disk_gib": 0,
        "image": tiny_image,
        "host": host,
        "labels": {"app": "web's", "n": "1"},
        "node_selector": {},
        "message": 'it\'s "quoted"',
    }
    before = timezone.now()
    written = sql.insert(VirtualMachine(name="a", uid=uuid.uuid4(), **values))
    orm = VirtualMachine.objects.create(name="b", uid=uuid.uuid4(), **values)
    assert written.pk is not None and written.pk != orm.pk
    assert not written._state.adding and written._state.db == "default"
    assert before <= written.created <= written.updated <= timezone.now()
    a, b = VirtualMachine.objects.get(pk=written.pk), VirtualMachine.objects.get(pk=orm.pk)
    assert (a.created, a.updated, a.uid) == (written.created, written.updated, written.uid)
    assert before <= a.phase_changed <= timezone.now()  # a default: now
    skip = {"id", "name", "uid", "created", "updated", "phase_changed"}
    for field in VirtualMachine._meta.concrete_fields:
        if field.name not in skip:
            assert getattr(a, field.attname) == getattr(b, field.attname), field.name


def test_an_insert_refuses_expressions_and_keeps_receivers(demo):
    from django.db.models import F, signals

    from tenants.models import AuditLog

    with pytest.raises(TypeError):
        sql.insert(AuditLog(action="x", actor_name=F("action")))
    assert not AuditLog.objects.filter(action="x").exists()

    seen = []

    def receiver(sender, instance, created, **kwargs):
        seen.append((instance.action, created))

    signals.post_save.connect(receiver, sender=AuditLog)
    try:
        entry = sql.insert(AuditLog(action="y", actor_name="system"))
    finally:
        signals.post_save.disconnect(receiver, sender=AuditLog)
    assert seen == [("y", True)]
    assert AuditLog.objects.get(pk=entry.pk).action == "y"


def test_rows_of_a_written_out_update_come_back_as_the_orm_reads_them(demo):
    """``rows`` over an ``UPDATE … RETURNING sql.columns(model)``: the row as written,
    converted (decimals, times) as a read of it through the ORM."""
    table = Quota._meta.db_table
    (quota,) = sql.rows(
        Quota,
        f"UPDATE {table} SET cpu = %s, resource_version = resource_version + 1"  # noqa: S608
        f" WHERE tenant_id = %s RETURNING {sql.columns(Quota)}",
        [Decimal("3.5"), demo.acme.pk],
    )
    same(quota, Quota.objects.get(tenant=demo.acme))
    assert quota.cpu == Decimal("3.5")
    assert sql.rows(Quota, f"UPDATE {table} SET cpu = 1 WHERE tenant_id = -1 RETURNING id") == []  # noqa: S608


def test_a_refused_insert_raises_as_the_orm_and_marks_the_block_for_rollback(
    demo, make_host, tiny_image
):
    import uuid

    from django.db import IntegrityError, transaction

    make_host("node-a")
    make_vm(demo, name="web1")
    twin = VirtualMachine(
        uid=uuid.uuid4(), tenant=demo.acme, name="web1", vcpus=1, memory_mib=64, image=tiny_image
    )
    with transaction.atomic():
        with pytest.raises(IntegrityError):
            sql.insert(twin)
        assert transaction.get_connection().needs_rollback  # the block rolls back
    assert VirtualMachine.objects.filter(name="web1").count() == 1


def test_an_insert_with_an_expression_returns_its_value_from_the_same_statement(demo):
    """``insert_with``: the row written as ``insert`` writes it, and the expression's
    value as of that statement; one round trip where the database returns columns from
    an ``INSERT``, and also right where the ORM saves the row (a receiver)."""
    from django.db import connection
    from django.db.models import signals
    from django.test.utils import CaptureQueriesContext

    from tenants.models import AuditLog

    count = f"SELECT COUNT(*) FROM {AuditLog._meta.db_table} WHERE action = %s"  # noqa: S608
    sql.insert(AuditLog(action="before", actor_name="system"))
    with CaptureQueriesContext(connection) as statements:
        entry, seen = sql.insert_with(AuditLog(action="z", actor_name="system"), count, ["before"])
    assert seen == 1
    assert AuditLog.objects.get(pk=entry.pk).action == "z"
    if connection.features.can_return_columns_from_insert:
        assert len(statements) == 1

    def receiver(sender, instance, created, **kwargs):
        pass

    signals.post_save.connect(receiver, sender=AuditLog)
    try:
        # The row is saved by the ORM (its receiver runs); the value is read after it.
        entry, seen = sql.insert_with(AuditLog(action="z", actor_name="system"), count, ["before"])
    finally:
        signals.post_save.disconnect(receiver, sender=AuditLog)
    assert seen == 1 and AuditLog.objects.get(pk=entry.pk).action == "z"


def test_a_pair_of_new_rows_goes_in_as_one_statement_linked(demo):
    """``insert_pair``: a parent and its child written as the ORM would, the child's key
    to the parent filled in, one statement on PostgreSQL; a refused child keeps no
    parent either; a model with receivers is saved by the ORM, its receivers run."""
    from datetime import UTC, datetime

    from django.db import IntegrityError, connection, transaction
    from django.db.models import signals
    from django.test.utils import CaptureQueriesContext

    from usage.models import UsageInterval, UsageSubject

    def pair(ref: str, **interval):
        subject = UsageSubject(
            ref=ref, tenant=demo.acme, tenant_slug="acme", kind="vm", object_id=ref, name=ref
        )
        start = datetime(2026, 3, 2, 10, tzinfo=UTC)
        return subject, UsageInterval(tenant=demo.acme, start=start, **interval)

    subject, interval = pair("vm:a", cpu=Decimal("1.5"), memory=64, reservation_id=7)
    with CaptureQueriesContext(connection) as statements:
        assert sql.insert_pair(subject, interval, "subject") is interval
    if connection.vendor == "postgresql":
        assert len(statements) == 1
    assert subject.pk and interval.pk and interval.subject is subject
    same(UsageSubject.objects.get(ref="vm:a"), subject)
    same(UsageInterval.objects.get(subject=subject), interval)

    # The same reservation twice breaks the interval's unique constraint: neither row.
    subject, interval = pair("vm:b", reservation_id=7)
    with transaction.atomic():
        with pytest.raises(IntegrityError):
            sql.insert_pair(subject, interval, "subject")
        assert transaction.get_connection().needs_rollback
    assert not UsageSubject.objects.filter(ref="vm:b").exists()

    # With a receiver: two inserts through insert (the ORM's save, so that it runs).
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance)

    signals.post_save.connect(receiver, sender=UsageInterval)
    try:
        subject, interval = pair("vm:c")
        sql.insert_pair(subject, interval, "subject")
    finally:
        signals.post_save.disconnect(receiver, sender=UsageInterval)
    assert seen == [interval]
    assert UsageInterval.objects.get(pk=interval.pk).subject_id == subject.pk

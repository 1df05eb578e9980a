"""portal.sql: written-out reads give what the ORM gives, and values stay parameters."""

from __future__ import annotations

from decimal import Decimal

import pytest

from compute.models import Host, VirtualMachine
from portal import sql
from tenants import services as tenant_services
from tenants.models import Quota, Tenant
from tests.compute.test_api_vms import make_vm
from tests.conftest import postgres_only

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


def test_an_attached_row_comes_in_the_same_statement_and_none_where_the_join_finds_none(
    demo, django_assert_num_queries
):
    """A row joined by hand (not a foreign key) comes back as an instance the ORM would
    read, on the attribute its alias names."""
    table = Quota._meta.db_table

    def acme_quota_with(slug: str) -> Quota:
        join = (" LEFT OUTER JOIN tenants_tenant named ON named.slug = %s", [slug])
        where = f"{table}.tenant_id = %s"
        (quota,) = sql.select(Quota, where, [demo.acme.pk], join=join, attach={"named": Tenant})
        return quota

    with django_assert_num_queries(1):
        quota = acme_quota_with("globex")
    same(quota.named, demo.globex)
    assert acme_quota_with("nobody").named is None


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


def _pair(demo, ref: str, **interval):
    from datetime import UTC, datetime

    from usage.models import UsageInterval, UsageSubject

    subject = UsageSubject(
        ref=ref, tenant=demo.acme, tenant_slug="acme", kind="vm", object_id=ref, name=ref
    )
    start = datetime(2026, 3, 2, 10, tzinfo=UTC)
    return subject, UsageInterval(tenant=demo.acme, start=start, **interval)


def test_rows_queued_in_a_batch_go_in_as_one_statement_linked(demo):
    """``batch``: the rows ``insert_later`` queued are written together when it ends,
    written as the ORM would, a child's key to its parent filled in, each ``then``
    called with its row's key set and its ``also`` value; one statement on PostgreSQL,
    a row at a time elsewhere."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from tenants.models import AuditLog, Reservation
    from usage.models import UsageInterval, UsageSubject

    seen = []
    with transaction.atomic(), CaptureQueriesContext(connection) as statements:
        with sql.batch():
            reservation = sql.insert_later(
                Reservation(tenant=demo.acme, ref="vm:a", kind="vm", object_id="a", cpu=Decimal(1))
            )
            subject, interval = _pair(demo, "vm:a", cpu=Decimal("1.5"), memory=64)
            sql.insert_later(subject)
            keys = {"subject_id": subject, "reservation_id": reservation}
            sql.insert_later(interval, keys=keys)
            entry = AuditLog(action="x", actor_name="system", outcome="success")
            sql.insert_later(
                entry,
                also=("SELECT COUNT(*) FROM tenants_auditlog WHERE action = %s", ["x"]),
                then=lambda value: seen.append((entry.pk, value)),
            )
            if connection.vendor == "postgresql":
                assert reservation.pk is None and not statements.captured_queries
        written = [q["sql"] for q in statements.captured_queries if "INSERT" in q["sql"]]
    if connection.vendor == "postgresql":
        assert len(written) == 1 and written[0].startswith("WITH")
    else:
        assert len(written) == 4
    assert reservation.pk and subject.pk and interval.pk and entry.pk
    assert interval.subject is subject and interval.reservation_id == reservation.pk
    # The count ran in the same statement as the insert: it did not see the new row.
    assert seen == [(entry.pk, 0 if connection.vendor == "postgresql" else 1)]
    same(UsageSubject.objects.get(ref="vm:a"), subject)
    same(UsageInterval.objects.get(subject=subject), interval)
    same(Reservation.objects.get(ref="vm:a"), reservation)
    same(AuditLog.objects.get(action="x"), entry)


def test_a_statement_inside_a_batch_reads_the_rows_queued_before_it(demo):
    from django.db import transaction

    from tenants.models import AuditLog

    with transaction.atomic(), sql.batch():
        entry = sql.insert_later(AuditLog(action="queued", actor_name="system"))
        assert AuditLog.objects.filter(action="queued").count() == 1
        assert entry.pk is not None
        later = sql.insert_later(AuditLog(action="after", actor_name="system"))
    assert later.pk is not None
    mine = AuditLog.objects.filter(action__in=["queued", "after"])
    assert sorted(mine.values_list("action", flat=True)) == ["after", "queued"]


def test_a_batch_that_cannot_be_written_writes_none_of_its_rows(demo):
    """A unique constraint one row breaks: ``IntegrityError`` where the batch is
    written, the transaction marked for rollback, no row of the batch kept."""
    from django.db import IntegrityError, transaction

    from usage.models import UsageSubject

    subject, interval = _pair(demo, "vm:a", reservation_id=7)
    sql.insert_later(subject)  # no batch (autocommit): written at once
    sql.insert_later(interval, keys={"subject_id": subject})
    assert subject.pk and interval.pk

    subject, interval = _pair(demo, "vm:b", reservation_id=7)
    with transaction.atomic():
        with pytest.raises(IntegrityError), sql.batch():
            sql.insert_later(subject)
            sql.insert_later(interval, keys={"subject_id": subject})
        assert transaction.get_connection().needs_rollback
    assert not UsageSubject.objects.filter(ref="vm:b").exists()


def test_an_error_inside_a_batch_drops_the_rows_it_queued(demo):
    """Rows queued by a block that raised are not written later by the batch around
    it; what the outer block queued is, and what a statement inside the failing block
    wrote stays for the transaction to keep or roll back (on PostgreSQL: elsewhere
    rows are written when queued, and only a savepoint's rollback takes them back)."""
    from django.db import transaction

    from tenants.models import AuditLog

    postgres_only()
    then = []
    with transaction.atomic(), sql.batch():
        sql.insert_later(AuditLog(action="outer", actor_name="system"))
        with pytest.raises(RuntimeError), sql.batch():
            sql.insert_later(
                AuditLog(action="inner", actor_name="system"), then=lambda _: then.append(1)
            )
            raise RuntimeError("refused")
        with pytest.raises(RuntimeError), sql.batch():
            sql.insert_later(AuditLog(action="read", actor_name="system"))
            assert AuditLog.objects.filter(action="read").exists()  # written for this
            sql.insert_later(AuditLog(action="after", actor_name="system"))
            raise RuntimeError("refused")
    mine = AuditLog.objects.filter(action__in=["outer", "inner", "read", "after"])
    assert sorted(mine.values_list("action", flat=True)) == ["outer", "read"]
    assert then == []


def test_a_savepoint_rolled_back_inside_a_batch_drops_what_was_queued_in_it(demo):
    """Neither written and undone (its ``then`` would have run) nor kept: what was
    queued before the savepoint is written (on PostgreSQL: elsewhere rows are written,
    and their ``then``s run, when queued)."""
    from django.db import transaction

    from tenants.models import AuditLog

    postgres_only()
    then = []
    with transaction.atomic(), sql.batch():
        sql.insert_later(AuditLog(action="before", actor_name="system"))
        with pytest.raises(RuntimeError), transaction.atomic():
            sql.insert_later(
                AuditLog(action="inside", actor_name="system"), then=lambda _: then.append(1)
            )
            raise RuntimeError("refused")
        with transaction.atomic():
            sql.insert_later(AuditLog(action="kept", actor_name="system"))
    mine = AuditLog.objects.filter(action__in=["before", "inside", "kept"])
    assert sorted(mine.values_list("action", flat=True)) == ["before", "kept"]
    assert then == []


def test_a_row_queued_by_a_then_is_written_with_the_batch(demo):
    from django.db import transaction

    from tenants.models import AuditLog

    def follow(_):
        sql.insert_later(AuditLog(action="second", actor_name="system"))

    with transaction.atomic(), sql.batch():
        sql.insert_later(AuditLog(action="first", actor_name="system"), then=follow)
    mine = AuditLog.objects.filter(action__in=["first", "second"])
    assert sorted(mine.values_list("action", flat=True)) == ["first", "second"]


def test_insert_later_refuses_what_it_cannot_write(demo):
    from django.db import transaction

    from tenants.models import AuditLog

    subject, interval = _pair(demo, "vm:a")
    with transaction.atomic(), sql.batch():
        with pytest.raises(TypeError, match="not written or queued"):
            sql.insert_later(interval, keys={"subject_id": subject})
        with pytest.raises(TypeError, match="auto keys only"):
            sql.insert_later(AuditLog(pk=99, action="x", actor_name="system"))
    assert not AuditLog.objects.filter(action="x").exists()


def test_a_model_with_save_receivers_is_saved_by_the_orm_at_once(demo):
    """Inside a batch too: its receivers run, and it has its key when queued."""
    from django.db import transaction
    from django.db.models import signals

    from usage.models import UsageInterval

    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance)

    signals.post_save.connect(receiver, sender=UsageInterval)
    try:
        with transaction.atomic(), sql.batch():
            subject, interval = _pair(demo, "vm:c")
            sql.insert_later(subject)
            sql.insert_later(interval, keys={"subject_id": subject})
            assert seen == [interval] and subject.pk and interval.pk
    finally:
        signals.post_save.disconnect(receiver, sender=UsageInterval)
    assert UsageInterval.objects.get(pk=interval.pk).subject_id == subject.pk


@pytest.mark.django_db(transaction=True)
def test_the_clock_is_the_database_s_and_an_anchored_one_asks_it_once():
    """Readings of the hosts that two workers on two machines put in order are stamped
    by one clock, the database's: ``clock`` moves inside a transaction (it is not the
    transaction's start), and a pass's ``clock_anchored`` asks the database once."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    postgres_only()
    with transaction.atomic():
        first, second = sql.clock(), sql.clock()
        [(started,)] = sql.values("SELECT now()")
    assert started <= first < second
    with CaptureQueriesContext(connection) as queries:
        now = sql.clock_anchored()
        stamps = [now() for _ in range(5)]
    assert len(queries) == 1
    assert stamps == sorted(stamps) and stamps[0] < stamps[-1]
    assert second < stamps[0] <= sql.clock()

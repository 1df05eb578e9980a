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

"""What a VM create reads: the tenant and the caller's role in it in one statement, no
Service (a Pending VM serves none), and no earlier event to fold its first one into."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from compute.models import VirtualMachine
from monitoring.models import Event
from monitoring.services import event_publish
from tenants.services import token_create
from tests.compute.test_api_vms import body
from tests.conftest import postgres_only

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]

BASE = "/api/v1/tenants/acme/virtualmachines/"


@pytest.fixture
def world(demo, make_host, tiny_image):
    make_host("node-a", cpus=64, memory_mib=256 * 1024)
    return demo


def create(api, user, name: str, labels: dict | None = None):
    data = body(name)
    if labels:
        data["metadata"]["labels"] = labels
    with CaptureQueriesContext(connection) as captured:
        response = api(user).post(BASE, data, format="json")
    assert response.status_code == 202, response.content
    return [query["sql"] for query in captured.captured_queries]


def test_a_vm_made_under_an_earlier_ones_name_has_its_own_first_event(world, api):
    # What the earlier VM of that name was told, word for word, a moment ago.
    create(api, world.alice, "web1")
    earlier = VirtualMachine.objects.get(name="web1")
    VirtualMachine.objects.filter(pk=earlier.pk).delete()
    create(api, world.alice, "web1")
    again = VirtualMachine.objects.get(name="web1")

    scheduled = Event.objects.filter(tenant=world.acme, name="web1", reason="Scheduled")
    assert sorted(scheduled.values_list("object_uid", "count")) == sorted(
        [(str(earlier.uid), 1), (str(again.uid), 1)]
    )
    # Events about one object still fold as before.
    for _ in range(2):
        event_publish(
            tenant=world.acme,
            kind="vm",
            name="web1",
            uid=str(again.uid),
            reason="Started",
            message="Guest is running.",
        )
    assert Event.objects.get(name="web1", reason="Started").count == 2


def test_a_create_reads_the_tenant_with_the_role_and_no_service(world, api):
    postgres_only()
    create(api, world.alice, "warm")  # the tenant's first VM makes its default network
    statements = create(api, world.alice, "web1", labels={"app": "web"})

    tenant_reads = [s for s in statements if 'FROM "tenants_tenant"' in s]
    assert len(tenant_reads) == 1 and "tenants_membership" in tenant_reads[0]
    assert not [s for s in statements if 'FROM "tenants_membership"' in s.split("WHERE")[0]]
    assert not [s for s in statements if "compute_service" in s]
    assert not [s for s in statements if s.startswith("SELECT") and "monitoring_event" in s]
    assert len(statements) <= 20, "\n".join(statements)


def test_a_viewer_gets_403_and_a_member_of_another_tenant_404(world, api):
    assert api(world.carol).post(BASE, body("web1"), format="json").status_code == 403
    assert api(world.dave).post(BASE, body("web1"), format="json").status_code == 404
    assert not VirtualMachine.objects.filter(name="web1").exists()


def with_token(user) -> APIClient:
    _, key = token_create(user=user, name="ci")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_a_create_with_a_token_reads_token_user_tenant_and_role_in_one_statement(world):
    postgres_only()
    alice = with_token(world.alice)
    assert alice.post(BASE, body("warm"), format="json").status_code == 202
    with CaptureQueriesContext(connection) as captured:
        response = alice.post(BASE, body("web1"), format="json")
    assert response.status_code == 202, response.content
    statements = [query["sql"] for query in captured.captured_queries]
    tenant_reads = [s for s in statements if "tenants_tenant" in s]
    assert len(tenant_reads) == 1, "\n".join(statements)
    (read,) = tenant_reads
    assert "tenants_apitoken" in read and "tenants_membership" in read
    assert VirtualMachine.objects.get(name="web1").created_by == world.alice


def test_with_a_token_a_viewer_gets_403_others_404_and_a_superuser_any_tenant(world):
    assert with_token(world.carol).post(BASE, body("web1"), format="json").status_code == 403
    assert with_token(world.dave).post(BASE, body("web1"), format="json").status_code == 404
    missing = "/api/v1/tenants/nope/virtualmachines/"
    assert with_token(world.alice).post(missing, body("web1"), format="json").status_code == 404
    assert not VirtualMachine.objects.filter(name="web1").exists()
    # Not a member of acme: a superuser acts in any tenant.
    assert not world.acme.memberships.filter(user=world.admin).exists()
    assert with_token(world.admin).post(BASE, body("web2"), format="json").status_code == 202
    # A role changed since the token's last request counts at once.
    world.acme.memberships.filter(user=world.carol).update(role="operator")
    carol = with_token(world.carol)
    assert carol.post(BASE, body("web3"), format="json").status_code == 202
    world.acme.memberships.filter(user=world.carol).delete()
    assert carol.get(BASE).status_code == 404


def test_services_are_read_when_a_vm_starts_or_stops_serving_only(world, api):
    from compute.choices import Phase
    from compute.services.vms import vm_observe

    create(api, world.alice, "web1", labels={"app": "web"})
    vm = VirtualMachine.objects.get(name="web1")

    def services_read(phase: str) -> bool:
        with CaptureQueriesContext(connection) as captured:
            assert vm_observe(vm, phase)
        return any("compute_service" in query["sql"] for query in captured.captured_queries)

    assert not services_read(Phase.PROVISIONING)
    assert not services_read(Phase.STARTING)
    assert services_read(Phase.RUNNING)  # a member now
    assert services_read(Phase.STOPPING)  # no longer one
    assert not services_read(Phase.STOPPED)


def test_a_workload_made_under_an_earlier_ones_name_has_its_own_first_event(demo, fake_cluster):
    from compute.models import Workload
    from compute.services import workloads as workload_services

    def make():
        return workload_services.workload_create(
            actor=None, tenant=demo.acme, name="web", image="nginx:1.27", kind="Deployment"
        )

    earlier = make()
    Workload.objects.filter(pk=earlier.pk).delete()
    again = make()
    accepted = Event.objects.filter(tenant=demo.acme, name="web", reason="Accepted")
    assert sorted(accepted.values_list("object_uid", "count")) == sorted(
        [(str(earlier.uid), 1), (str(again.uid), 1)]
    )


@pytest.mark.parametrize("kind", ["volume", "network", "securitygroup"])
def test_an_object_made_under_an_earlier_ones_name_has_its_own_first_event(world, kind):
    """Volumes, networks and security groups too: the first event of a new object is its
    own, never a count on the event of an earlier object of that name."""
    from compute.models import Network, SecurityGroup, Volume
    from compute.services import networks, security_groups, volumes

    makers = {
        "volume": (
            Volume,
            "Accepted",
            lambda: volumes.volume_create(
                actor=world.alice, tenant=world.acme, name="data", size_gib=1
            ),
        ),
        "network": (
            Network,
            "Created",
            lambda: networks.network_create(
                actor=world.alice, tenant=world.acme, name="data", cidr="10.77.0.0/24"
            ),
        ),
        "securitygroup": (
            SecurityGroup,
            "Created",
            lambda: security_groups.group_create(actor=world.alice, tenant=world.acme, name="data"),
        ),
    }
    model, reason, make = makers[kind]
    earlier = make()
    model.objects.filter(pk=earlier.pk).delete()
    again = make()
    first = Event.objects.filter(tenant=world.acme, kind=kind, name="data", reason=reason)
    assert sorted(first.values_list("object_uid", "count")) == sorted(
        [(str(earlier.uid), 1), (str(again.uid), 1)]
    )


def test_a_create_asks_its_name_networks_and_quota_with_the_image(world, api):
    """One read before the transaction answers the image, whether the name is taken,
    whether the tenant has a network and whether the VM fits its quota; the hosts come
    with what is placed on them (their counters). What is left is the locks' own
    statements: the quota's charge, and the host's row, its counters read again under
    its lock once the VM's own insert counted there. Nothing sums the VMs of a host."""
    postgres_only()
    create(api, world.alice, "warm")
    statements = create(api, world.alice, "web1")

    image_reads = [s for s in statements if 'FROM "compute_image"' in s]
    assert len(image_reads) == 1
    for table in ("compute_virtualmachine", "compute_network", "tenants_quota"):
        assert table in image_reads[0], table
    quota_reads = [s for s in statements if s.startswith('SELECT "tenants_quota"')]
    assert not quota_reads, quota_reads
    assert not [s for s in statements if "SUM(" in s], "\n".join(statements)
    host_reads = [s for s in statements if "FROM compute_host" in s or 'FROM "compute_host"' in s]
    assert len(host_reads) == 2, "\n".join(statements)
    assert "FOR UPDATE" not in host_reads[0] and "placed_vcpus" in host_reads[0]
    # With a value (the hosts excluded, none here): PostgreSQL keeps it prepared.
    assert "compute_host.id <> ALL(" in host_reads[0], host_reads[0]
    assert host_reads[1].endswith("FOR UPDATE") and "placed_vcpus" in host_reads[1]
    # Its own insert counted on its host just before the locked read (the test's
    # transaction is not the create's own: the hosts' read counts this transaction's
    # VMs first too).
    counted = [i for i, s in enumerate(statements) if s.startswith("SET CONSTRAINTS")]
    assert [statements[i] for i in counted] == [
        "SET CONSTRAINTS compute_vm_placed_insert IMMEDIATE; "
        "SET CONSTRAINTS compute_vm_placed_insert DEFERRED",
    ] * 2, "\n".join(statements)
    assert [statements[i + 1] for i in counted] == host_reads, "\n".join(statements)
    # In a create's own transaction neither pair is sent (its reads are fresh).
    assert len(statements) <= 12, "\n".join(statements)


def test_a_create_writes_its_rows_in_one_statement(world, api):
    """The VM, its reservation, usage subject and interval, audit entry and event go in
    together (``portal.sql.batch``), each row as a user reads it back."""
    from tenants.models import AuditLog, Reservation
    from usage.models import UsageInterval, UsageSubject

    postgres_only()
    create(api, world.alice, "warm")
    statements = create(api, world.alice, "web1", labels={"app": "web"})

    writes = [s for s in statements if "INSERT INTO" in s]
    assert len(writes) == 1, "\n".join(writes)
    for table in (
        "compute_virtualmachine",
        "tenants_reservation",
        "usage_usagesubject",
        "usage_usageinterval",
        "tenants_auditlog",
        "monitoring_event",
    ):
        assert f'INSERT INTO "{table}"' in writes[0], table
    # Two of them the test's own: its transaction is not the create's (count_own).
    assert len(statements) <= 12, "\n".join(statements)
    vm = VirtualMachine.objects.get(tenant=world.acme, name="web1")
    reservation = Reservation.objects.get(ref=f"vm:{vm.uid}")
    assert (reservation.cpu, reservation.memory, reservation.vms) == (1, 256, 1)
    interval = UsageInterval.objects.get(reservation_id=reservation.pk)
    assert interval.start == reservation.created and interval.end is None
    subject = UsageSubject.objects.get(pk=interval.subject_id)
    assert (subject.ref, subject.name, subject.labels) == (reservation.ref, "web1", {"app": "web"})
    entry = AuditLog.objects.get(action="vm.create", target="vm/web1")
    assert (entry.actor_id, entry.detail["host"]) == (world.alice.pk, "node-a")
    event = Event.objects.get(tenant=world.acme, name="web1", reason="Scheduled")
    assert event.object_uid == str(vm.uid)


def test_a_create_of_a_shape_seen_before_converts_no_statement_outside_the_cache(
    world, api, monkeypatch
):
    """psycopg turns ``%s`` into ``$n`` once per statement text and keeps it, within
    limits portal.postgresql raises: the batch of a create's rows (85 values) is not
    converted again outside that cache at every create (what the cache itself does is
    psycopg's)."""
    import psycopg._queries

    postgres_only()
    create(api, world.alice, "warm")
    create(api, world.alice, "web1")
    converted = []
    for name in ("_query2pg_nocache", "_query2pg_client_nocache"):
        convert = getattr(psycopg._queries, name)
        monkeypatch.setattr(
            psycopg._queries,
            name,
            lambda query, encoding, convert=convert: (
                converted.append(query) or convert(query, encoding)
            ),
        )
    statements = create(api, world.alice, "web2")

    assert [s for s in statements if "INSERT INTO" in s], "no batch: nothing was measured"
    assert converted == [], [query[:120] for query in converted]


def test_a_taken_name_is_refused_with_a_known_image_and_with_an_unknown_one(world, api):
    from tests.compute.test_api_vms import problem

    create(api, world.alice, "web1")
    known = problem(api(world.alice).post(BASE, body("web1"), format="json"), 400, "invalid")
    assert list(known["errors"]) == ["metadata.name"]
    assert "exists already" in known["errors"]["metadata.name"][0]
    unknown = api(world.alice).post(BASE, body("web1", image="nope"), format="json")
    errors = problem(unknown, 400, "invalid")["errors"]
    assert list(errors) == ["metadata.name", "spec.image"]
    assert errors["metadata.name"] == known["errors"]["metadata.name"]
    # A malformed name is refused before any lookup, with the image's answer beside it.
    bad = api(world.alice).post(BASE, body("Web_1"), format="json")
    assert list(problem(bad, 400, "invalid")["errors"]) == ["metadata.name"]
    assert VirtualMachine.objects.filter(tenant=world.acme).count() == 1


def test_a_tenant_whose_networks_are_all_gone_gets_a_default_network_with_its_next_vm(world, api):
    from compute.models import Network

    create(api, world.alice, "web1")
    assert list(Network.objects.filter(tenant=world.acme).values_list("name", flat=True)) == [
        "default"
    ]
    create(api, world.alice, "web2")  # it has one: no second
    assert Network.objects.filter(tenant=world.acme).count() == 1
    VirtualMachine.objects.filter(tenant=world.acme).delete()
    Network.objects.filter(tenant=world.acme).delete()
    create(api, world.alice, "web3")
    assert list(Network.objects.filter(tenant=world.acme).values_list("name", flat=True)) == [
        "default"
    ]


def test_a_create_over_quota_on_full_hosts_is_refused_for_its_quota_and_writes_nothing(world, api):
    """The quota answer read with the image refuses before placement: a create that fits
    neither gets the quota's 403 naming every shortfall, not the hosts' 409."""
    from compute.models import Host
    from tenants import services as tenant_services
    from tests.compute.test_api_vms import problem

    create(api, world.alice, "web1")
    tenant_services.quota_set(actor=None, tenant=world.acme, limits={"cpu": 2, "memory": 512})
    Host.objects.update(enabled=False)
    response = api(world.alice).post(BASE, body("big", vcpus=4, memoryMiB=1024), format="json")
    data = problem(response, 403, "quota-exceeded")
    assert [e["resource"] for e in data["exceeded"]] == ["cpu", "memory"]
    assert not VirtualMachine.objects.filter(name="big").exists()
    # Within the quota, the hosts' refusal is what it gets.
    response = api(world.alice).post(BASE, body("small"), format="json")
    problem(response, 409, "no-host-available")


def test_the_host_read_counts_vms_placed_and_vms_migrating_in(world, tiny_image):
    """What the scheduler's unlocked read sees on each host: a host with a VM on its way
    in by live migration is as full as one with that VM placed there."""
    from decimal import Decimal

    from django.utils import timezone

    from compute.choices import MigrationPhase
    from compute.models import Host, Migration
    from compute.scheduler import schedule

    Host.objects.update(enabled=False)

    def host(name: str) -> Host:
        return Host.objects.create(
            name=name,
            uri=f"test:///{name}",
            reachable=True,
            cpus=8,
            memory_mib=64 * 1024,
            cpu_ratio=Decimal("1"),
        )

    a, b = host("spare-a"), host("spare-b")
    source = host("spare-c")
    Host.objects.filter(pk=source.pk).update(enabled=False)

    def vm(name: str, on: Host, vcpus: int) -> VirtualMachine:
        return VirtualMachine.objects.create(
            tenant=world.acme, name=name, vcpus=vcpus, memory_mib=256, image=tiny_image, host=on
        )

    vm("placed", a, 3)
    moving = vm("moving", source, 4)
    assert schedule(vcpus=1, memory_mib=256, lock=False).host == b  # b is empty
    migration = Migration.objects.create(
        tenant=world.acme,
        vm=moving,
        vm_name=moving.name,
        source=source,
        target=b,
        phase=MigrationPhase.RUNNING,
        started=timezone.now(),
    )
    assert schedule(vcpus=1, memory_mib=256, lock=False).host == a  # b holds 4 vCPUs now
    Migration.objects.filter(pk=migration.pk).update(phase=MigrationPhase.FAILED)
    assert schedule(vcpus=1, memory_mib=256, lock=False).host == b


def test_an_image_passed_in_brings_no_answers_of_an_earlier_read(world, tiny_image):
    """Only the read a create makes itself answers its questions: answers an Image
    object carries from an earlier create's read are not trusted."""
    from compute.models import Network
    from compute.services import vms as vm_services
    from portal.exceptions import QuotaExceeded
    from tenants import services as tenant_services

    size = {"vcpus": 1, "memory_mib": 256}
    tiny_image.quota_fits = True
    tiny_image.tenant_has_networks = True
    tenant_services.quota_set(actor=None, tenant=world.acme, limits={"vms": 0})
    with pytest.raises(QuotaExceeded):
        vm_services.vm_create(
            actor=world.alice, tenant=world.acme, name="web1", image=tiny_image, **size
        )
    tenant_services.quota_set(actor=None, tenant=world.acme, limits={"vms": 5})
    vm_services.vm_create(
        actor=world.alice, tenant=world.acme, name="web1", image=tiny_image, **size
    )
    assert Network.objects.filter(tenant=world.acme, name="default").exists()

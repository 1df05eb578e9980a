"""A workload's security groups (``workload_create(security_groups=)``,
``workload_groups_set``): its pods carry one label per group (the default group's when
it names none), which the groups' NetworkPolicies select. A change is a new generation
(a running Deployment rolls), audited and on its timeline; unknown groups, another
tenant's group, an empty choice, a viewer or a deleting workload change nothing; a
group that workloads' pods are in cannot be deleted. The ``kubernetes`` tier
(tests/compute/kubernetes/test_security_groups.py) shows the pods moving on a cluster."""

from __future__ import annotations

import pytest
from django.utils import translation

from compute.backends.kubernetes import manifests
from compute.choices import Phase
from compute.models import Workload
from compute.services import security_groups as group_services
from compute.services import workloads as workload_services
from monitoring.models import Event
from portal import texts
from portal.exceptions import Conflict, PermissionDenied, ValidationError
from tenants.models import AuditLog, Reservation

pytestmark = pytest.mark.unit


@pytest.fixture
def world(demo, fake_cluster):
    for tenant in (demo.acme, demo.globex):
        group_services.default_group(tenant)
    for name in ("web", "db"):
        group_services.group_create(actor=None, tenant=demo.acme, name=name, rules=[])
    group_services.group_create(actor=None, tenant=demo.globex, name="secret", rules=[])
    return demo


def create(demo, name="front", **kwargs) -> Workload:
    return workload_services.workload_create(
        actor=demo.bob, tenant=demo.acme, name=name, image="nginx:1.27", **kwargs
    )


def group_labels(workload: Workload) -> set[str]:
    labels = manifests.pod_labels(workload_services.workload_spec(workload))
    prefix = manifests.GROUP_LABEL_PREFIX
    return {k[len(prefix) :] for k in labels if k.startswith(prefix)}


def test_a_workload_that_names_no_group_is_in_the_default_group(world):
    workload = create(world)
    assert workload_services.workload_groups(workload) == ["default"]
    assert group_labels(workload) == {"default"}


def test_the_pods_carry_the_groups_the_workload_names(world):
    workload = create(world, security_groups=["web", "db"])
    assert workload_services.workload_groups(workload) == ["db", "web"]
    assert group_labels(workload) == {"db", "web"}  # and not default
    assert AuditLog.objects.get(action="workload.create").detail["security_groups"] == [
        "web",
        "db",
    ]


@pytest.mark.parametrize("groups", [["nope"], ["web", "nope"], ["secret"]])
def test_unknown_or_another_tenants_groups_create_nothing(world, groups):
    with pytest.raises(ValidationError) as error:
        create(world, security_groups=groups)
    assert "No security group named" in error.value.errors["security_groups"][0]
    assert not Workload.objects.filter(name="front").exists()
    assert not Reservation.objects.filter(kind="workload").exists()


@pytest.mark.parametrize(
    ("kind", "phase", "shown"),
    [
        ("Deployment", Phase.RUNNING, Phase.PENDING),  # its pods roll into the groups
        ("Pod", Phase.RUNNING, Phase.RUNNING),  # a pod's labels change in place
    ],
)
def test_moving_the_pods_is_a_new_generation_audited_and_on_the_timeline(world, kind, phase, shown):
    workload = create(world, kind=kind)
    Workload.objects.filter(pk=workload.pk).update(phase=phase)
    workload = Workload.objects.get(pk=workload.pk)

    workload_services.workload_groups_set(actor=world.bob, workload=workload, groups=["web"])

    row = Workload.objects.get(pk=workload.pk)
    assert row.generation == workload.generation + 1
    assert row.resource_version == workload.resource_version + 1
    assert row.phase == shown
    assert group_labels(row) == {"web"}
    audit = AuditLog.objects.get(action="workload.update", target="workload/front")
    assert audit.actor == world.bob
    assert audit.detail == {"security_groups": ["web"], "before": ["default"]}
    event = Event.objects.get(kind="workload", name="front", reason="GroupsChanged")
    assert event.message == "bob put its pods in web (were in default)."
    with translation.override("zh-hans"):
        assert texts.localize(event.message) == "bob 将其 Pod 放入 web（原在 default）。"

    # The same groups again: nothing written.
    workload_services.workload_groups_set(actor=world.bob, workload=row, groups=["web"])
    assert Workload.objects.get(pk=row.pk).generation == row.generation


def test_bad_choices_a_viewer_or_a_deleting_workload_change_nothing(world):
    workload = create(world, security_groups=["web"])
    for groups in ([], ["nope"], ["secret"]):
        with pytest.raises(ValidationError):
            workload_services.workload_groups_set(actor=world.bob, workload=workload, groups=groups)
    with pytest.raises(PermissionDenied):
        workload_services.workload_groups_set(actor=world.carol, workload=workload, groups=["db"])
    Workload.objects.filter(pk=workload.pk).update(deleting=True, phase=Phase.DELETING)
    with pytest.raises(Conflict):
        workload_services.workload_groups_set(actor=world.bob, workload=workload, groups=["db"])
    row = Workload.objects.get(pk=workload.pk)
    assert workload_services.workload_groups(row) == ["web"]
    assert row.generation == workload.generation
    assert not Event.objects.filter(reason="GroupsChanged").exists()


def test_a_group_whose_pods_are_in_use_is_not_deleted(world):
    workload = create(world, security_groups=["web"])
    web = group_services.SecurityGroup.objects.get(tenant=world.acme, name="web")
    with pytest.raises(Conflict) as error:
        group_services.group_delete(actor=world.alice, group=web)
    assert error.value.message == ("The pods of front are in web; move them to other groups first.")
    workload_services.workload_groups_set(actor=world.bob, workload=workload, groups=["db"])
    group_services.group_delete(actor=world.alice, group=web)
    assert not group_services.SecurityGroup.objects.filter(pk=web.pk).exists()


def test_naming_default_makes_the_tenants_default_group_when_it_has_none(demo, fake_cluster):
    from compute.models import SecurityGroup

    with pytest.raises(ValidationError):
        create(demo, security_groups=["default", "nope"])  # nothing made for bad input
    assert not SecurityGroup.objects.filter(tenant=demo.acme).exists()
    workload = create(demo, security_groups=["default"])
    assert workload_services.workload_groups(workload) == ["default"]
    assert SecurityGroup.objects.get(tenant=demo.acme, name="default").is_default

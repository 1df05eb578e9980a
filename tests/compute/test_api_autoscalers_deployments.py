"""Autoscalers of Deployments through the autoscaler API: the same endpoint as for VM
pools with ``scaleTargetRef.kind: Deployment``; bad input names the field and changes
nothing; another tenant's Deployment is 404; the quota holds the maximum while the
autoscaler lives; the HorizontalPodAutoscaler manifest Isotope writes; the condition it
reads back first.

No Celery worker and no API server here (the ``kubernetes`` tier,
``tests/compute/kubernetes/test_autoscalers.py``, has the cluster)."""

from __future__ import annotations

import threading

import pytest
from django.db import IntegrityError, transaction

from compute.backends.containers import AutoscalerSpec, WorkloadSpec
from compute.backends.kubernetes import manifests
from compute.choices import Phase
from compute.models import Autoscaler, Workload
from compute.services import autoscalers as autoscaler_services
from compute.services import hpa
from compute.services import workloads as workload_services
from monitoring.models import Event
from tenants.models import AuditLog, Quota
from tests.compute.test_api_volumes import problem
from tests.compute.test_api_workloads import cluster, used  # noqa: F401 - fixtures
from tests.conftest import wait_for

pytestmark = pytest.mark.unit

SCALERS = "/api/v1/tenants/acme/autoscalers/"


def scaler(name="web", kind="Deployment", **spec) -> dict:
    return {
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"kind": kind, "name": "web"},
            "minReplicas": 1,
            "maxReplicas": 4,
            "targetUtilization": 50,
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60, "percent": 50}},
            **spec,
        },
    }


@pytest.fixture
def world(demo, cluster):  # noqa: F811
    return demo


def deployment(tenant, name="web", kind="Deployment", replicas=2) -> Workload:
    workload = workload_services.workload_create(
        actor=None,
        tenant=tenant,
        name=name,
        kind=kind,
        image="nginx:1.27",
        replicas=replicas if kind == "Deployment" else 1,
        cpu_request="100m",
        memory_request="64Mi",
    )
    Workload.objects.filter(pk=workload.pk).update(phase=Phase.RUNNING)
    workload.refresh_from_db()
    return workload


def test_an_autoscaler_of_a_deployment_is_created_read_changed_and_deleted(world, api):
    deployment(world.acme)
    assert used(world.acme)[2] == 2
    client = api(world.bob)
    response = client.post(SCALERS, scaler(), format="json")
    assert response.status_code == 202, response.content
    data = response.json()
    assert data["spec"]["scaleTargetRef"] == {"kind": "Deployment", "name": "web"}
    assert data["spec"]["minReplicas"] == 1 and data["spec"]["maxReplicas"] == 4
    assert data["status"]["currentReplicas"] is None  # the HPA has not said yet
    # The quota holds the maximum: the HPA can never take the tenant beyond it.
    assert used(world.acme)[2] == 4
    row = Autoscaler.objects.get()
    assert row.workload.name == "web" and row.pool is None
    audit = AuditLog.objects.get(action="autoscaler.create")
    assert audit.actor == world.bob and audit.detail["deployment"] == "web"
    assert Event.objects.filter(kind="autoscaler", name="web", reason="Created").exists()
    # Listed beside the pools' autoscalers.
    listed = client.get(SCALERS).json()["items"]
    assert [a["spec"]["scaleTargetRef"]["kind"] for a in listed] == ["Deployment"]

    etag = client.get(f"{SCALERS}web/")["ETag"]
    changed = client.patch(
        f"{SCALERS}web/", {"spec": {"maxReplicas": 6}}, format="json", HTTP_IF_MATCH=etag
    )
    assert changed.status_code == 202, changed.content
    assert used(world.acme)[2] == 6

    # While it is autoscaled, a scale by hand would be undone by the HPA: refused.
    refused = client.post(
        "/api/v1/tenants/acme/workloads/web/scale/", {"replicas": 3}, format="json"
    )
    assert problem(refused, 409)["errors"]["spec.replicas"]

    etag = client.get(f"{SCALERS}web/")["ETag"]
    assert client.delete(f"{SCALERS}web/", HTTP_IF_MATCH=etag).status_code == 204
    assert not Autoscaler.objects.exists()
    assert used(world.acme)[2] == 2  # back to the Deployment's replicas
    deleted = Event.objects.get(kind="autoscaler", name="web", reason="Deleted")
    assert "HorizontalPodAutoscaler" in deleted.message
    assert AuditLog.objects.filter(action="autoscaler.delete", actor=world.bob).exists()


def test_minimum_zero_is_accepted_for_a_deployment_and_its_hpa_keeps_one(world, api):
    deployment(world.acme)
    client = api(world.bob)
    response = client.post(SCALERS, scaler(minReplicas=0), format="json")
    assert response.status_code == 202, response.content
    assert response.json()["spec"]["minReplicas"] == 0
    row = Autoscaler.objects.get()
    assert row.min_replicas == 0
    assert used(world.acme)[2] == 4  # the quota still holds the maximum
    # A stock HPA cannot go below 1: Isotope's controller does the last step.
    assert hpa.autoscaler_spec(row).min_replicas == 1
    # Above zero the HPA sizes it: a scale by hand is refused as with any minimum.
    refused = client.post(
        "/api/v1/tenants/acme/workloads/web/scale/", {"replicas": 3}, format="json"
    )
    assert problem(refused, 409)["errors"]["spec.replicas"]


def test_a_deployment_scaled_to_zero_comes_back_when_scaled_by_hand(world, api):
    workload = deployment(world.acme)
    client = api(world.bob)
    assert client.post(SCALERS, scaler(minReplicas=0), format="json").status_code == 202
    # As its autoscaler leaves it (tests/compute/kubernetes/test_autoscalers.py runs it).
    Workload.objects.filter(pk=workload.pk).update(replicas=0)
    scale = "/api/v1/tenants/acme/workloads/web/scale/"
    beyond = client.post(scale, {"replicas": 5}, format="json")
    assert "autoscaler's maximum" in problem(beyond, 400)["errors"]["spec.replicas"][0]
    assert Workload.objects.get(pk=workload.pk).replicas == 0
    woken = client.post(scale, {"replicas": 2}, format="json")
    assert woken.status_code == 202, woken.content
    assert Workload.objects.get(pk=workload.pk).replicas == 2
    assert used(world.acme)[2] == 4  # still the maximum, not the 2 asked for
    audit = AuditLog.objects.filter(action="workload.scale").latest("pk")
    assert audit.actor == world.bob and audit.detail == {"from": 0, "to": 2}
    # Back above zero, the HPA sizes it again.
    problem(client.post(scale, {"replicas": 3}, format="json"), 409)


def test_a_single_pod_cannot_be_autoscaled(world, api):
    deployment(world.acme, kind="Pod")
    response = api(world.bob).post(SCALERS, scaler(), format="json")
    assert problem(response, 400)["errors"]["spec.scaleTargetRef.name"]
    assert not Autoscaler.objects.exists()


def test_another_tenants_deployment_is_not_found(world, api):
    deployment(world.globex)
    response = api(world.bob).post(SCALERS, scaler(), format="json")
    problem(response, 404)
    assert not Autoscaler.objects.exists()


def test_one_autoscaler_per_deployment(world, api):
    deployment(world.acme)
    client = api(world.bob)
    assert client.post(SCALERS, scaler(), format="json").status_code == 202
    second = client.post(SCALERS, scaler(name="again"), format="json")
    assert problem(second, 409)["errors"]["spec.scaleTargetRef.name"]
    assert Autoscaler.objects.count() == 1


def test_a_maximum_beyond_the_quota_is_refused_and_changes_nothing(world, api):
    deployment(world.acme)
    Quota.objects.filter(tenant=world.acme).update(pods=5)
    response = api(world.bob).post(SCALERS, scaler(maxReplicas=8), format="json")
    assert response.status_code == 403, response.content
    assert not Autoscaler.objects.exists() and used(world.acme)[2] == 2


def test_a_viewer_cannot_create_one(world, api):
    deployment(world.acme)
    problem(api(world.carol).post(SCALERS, scaler(), format="json"), 403)
    assert not Autoscaler.objects.exists()


def test_the_database_holds_exactly_one_target(world):
    workload = deployment(world.acme)
    common = {"tenant": world.acme, "max_replicas": 3, "target": 50}
    with pytest.raises(IntegrityError), transaction.atomic():
        Autoscaler.objects.create(name="none", **common)
    with pytest.raises(IntegrityError), transaction.atomic():
        Autoscaler.objects.create(name="both", workload=workload, pool_id=1, **common)


def test_the_service_refuses_no_target_and_two_targets(world):
    from portal.exceptions import ValidationError

    with pytest.raises(ValidationError) as error:
        autoscaler_services.autoscaler_create(
            actor=None, tenant=world.acme, max_replicas=3, target=50
        )
    assert "scale_target" in error.value.errors


# --- What Isotope writes and reads ----------------------------------------------------
SPEC = AutoscalerSpec(
    tenant="acme",
    namespace="isotope-acme",
    name="web-hpa",
    deployment="web",
    min_replicas=2,
    max_replicas=7,
    metric="memory",
    target=65,
    scale_down_window_seconds=120,
    scale_down_percent=50,
    scale_up_pods=3,
    scale_up_percent=200,
    portal_uid="u-1",
    portal_generation=4,
)


def test_the_hpa_manifest_carries_the_autoscalers_settings():
    obj = manifests.horizontal_pod_autoscaler(SPEC)
    assert obj["apiVersion"] == "autoscaling/v2" and obj["kind"] == "HorizontalPodAutoscaler"
    assert obj["metadata"]["name"] == "web-hpa"
    assert obj["metadata"]["namespace"] == "isotope-acme"
    assert obj["metadata"]["labels"][manifests.WORKLOAD_LABEL] == "web"
    assert obj["metadata"]["labels"][manifests.AUTOSCALER_LABEL] == "web-hpa"
    assert obj["metadata"]["annotations"][manifests.GENERATION_ANNOTATION] == "4"
    spec = obj["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 7)
    assert spec["metrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "memory",
                "target": {"type": "Utilization", "averageUtilization": 65},
            },
        }
    ]
    down, up = spec["behavior"]["scaleDown"], spec["behavior"]["scaleUp"]
    assert down["stabilizationWindowSeconds"] == 120
    assert down["policies"] == [{"type": "Percent", "value": 50, "periodSeconds": 15}]
    assert up["stabilizationWindowSeconds"] == 0 and up["selectPolicy"] == "Max"
    assert up["policies"] == [
        {"type": "Pods", "value": 3, "periodSeconds": 15},
        {"type": "Percent", "value": 200, "periodSeconds": 15},
    ]


def test_a_scale_up_percent_of_zero_leaves_only_the_pods_policy():
    from dataclasses import replace

    obj = manifests.horizontal_pod_autoscaler(replace(SPEC, scale_up_percent=0))
    assert obj["spec"]["behavior"]["scaleUp"]["policies"] == [
        {"type": "Pods", "value": 3, "periodSeconds": 15}
    ]


def test_an_autoscaled_deployment_leaves_its_replicas_to_the_hpa():
    spec = WorkloadSpec(
        tenant="acme",
        namespace="isotope-acme",
        name="web",
        kind="Deployment",
        image="nginx:1.27",
        replicas=3,
        cpu_request_m=100,
        cpu_limit_m=100,
        memory_request=2**26,
        memory_limit=2**26,
    )
    assert manifests.deployment(spec)["spec"]["replicas"] == 3
    from dataclasses import replace

    assert "replicas" not in manifests.deployment(replace(spec, autoscaled=True))["spec"]
    # Scaled to zero: Isotope holds it at 0, where the HPA does not act.
    zero = replace(spec, autoscaled=True, replicas=0)
    assert manifests.deployment(zero)["spec"]["replicas"] == 0


def condition(kind, status, reason, message=""):
    return {"type": kind, "status": status, "reason": reason, "message": message}


@pytest.mark.parametrize(
    "conditions, expected",
    [
        (
            [
                condition("AbleToScale", "True", "SucceededGetScale"),
                condition("ScalingActive", "False", "FailedGetResourceMetric", "no metrics"),
            ],
            ("FailedGetResourceMetric", "no metrics", True),
        ),
        (
            [
                condition("AbleToScale", "True", "ReadyForNewScale"),
                condition("ScalingActive", "True", "ValidMetricFound"),
                condition("ScalingLimited", "True", "TooManyReplicas", "max 4"),
            ],
            ("TooManyReplicas", "max 4", False),
        ),
        (
            [
                condition("AbleToScale", "True", "ScaleDownStabilized", "recent higher"),
                condition("ScalingActive", "True", "ValidMetricFound"),
                condition("ScalingLimited", "False", "DesiredWithinRange"),
            ],
            ("ScaleDownStabilized", "recent higher", False),
        ),
        (
            [
                condition("AbleToScale", "True", "ReadyForNewScale"),
                condition("ScalingActive", "True", "ValidMetricFound"),
                condition("ScalingLimited", "False", "DesiredWithinRange", "fine"),
            ],
            ("DesiredWithinRange", "fine", False),
        ),
        ([], ("", "", False)),
    ],
)
def test_the_condition_that_matters_most_is_shown(conditions, expected):
    assert hpa.condition_summary(conditions) == expected


def test_a_deployment_at_zero_under_an_autoscaler_with_a_minimum_is_woken_by_hand(world, api):
    # Its minimum raised while it was at zero: the HPA does not act at 0 (ScalingDisabled),
    # so only a scale by hand brings it back, as a VM pool at zero.
    workload = deployment(world.acme)
    client = api(world.bob)
    assert client.post(SCALERS, scaler(minReplicas=0), format="json").status_code == 202
    Workload.objects.filter(pk=workload.pk).update(replicas=0)
    etag = client.get(f"{SCALERS}web/")["ETag"]
    raised = client.patch(
        f"{SCALERS}web/", {"spec": {"minReplicas": 2}}, format="json", HTTP_IF_MATCH=etag
    )
    assert raised.status_code == 202, raised.content
    assert Workload.objects.get(pk=workload.pk).replicas == 0  # a change does not wake it
    scale = "/api/v1/tenants/acme/workloads/web/scale/"
    assert client.post(scale, {"replicas": 2}, format="json").status_code == 202
    assert Workload.objects.get(pk=workload.pk).replicas == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("action", ["raise the maximum", "delete"])
def test_a_change_to_an_autoscaler_while_its_deployment_is_reconciled_does_not_deadlock(
    world, action
):
    """The reconcile of a Deployment's autoscaler locks the workload, then the
    autoscaler. A person's change of the maximum (or delete) locked them the other way
    round: with both under way, PostgreSQL broke the deadlock by failing one of them.
    The reconcile is held between its two locks until the change waits on a lock."""
    from django.db import connection

    from tests.conftest import postgres_only
    from tests.races import run_in_thread, waiting_on_a_lock

    postgres_only()
    workload = deployment(world.acme)
    autoscaler = autoscaler_services.autoscaler_create(
        actor=world.bob,
        tenant=world.acme,
        workload=workload,
        name="web",
        min_replicas=1,
        max_replicas=4,
        target=50,
    )
    holding = threading.Event()

    def reconcile():
        with transaction.atomic():
            workload_services.workload_locked_for_autoscaler(workload.pk)
            holding.set()
            wait_for(waiting_on_a_lock, 10, 0.02, message="the change never waited")
            Autoscaler.locked(autoscaler.pk)
        return "done"

    held = run_in_thread(reconcile)
    assert holding.wait(10)
    if action == "delete":
        autoscaler_services.autoscaler_delete(actor=world.bob, autoscaler=autoscaler)
    else:
        autoscaler_services.autoscaler_update(
            actor=world.bob, autoscaler=autoscaler, max_replicas=6
        )
    held["thread"].join(30)
    connection.close()
    assert held.get("result") == "done", held.get("error")
    if action == "delete":
        assert not Autoscaler.objects.exists() and used(world.acme)[2] == 2
    else:
        assert Autoscaler.objects.get().max_replicas == 6 and used(world.acme)[2] == 6

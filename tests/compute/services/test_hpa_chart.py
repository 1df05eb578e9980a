"""A Deployment autoscaler's chart of replicas vs metric gets a point at least every
``ISOTOPE_AUTOSCALER_CHART_SECONDS`` from beat, not only when the HPA's status changes;
never before the HPA has said anything, and never more than the last hour of points."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from compute.backends.containers import AutoscalerInfo
from compute.models import Autoscaler
from compute.services import autoscalers as autoscaler_services
from compute.services import hpa
from compute.tasks.pools import autoscaler_chart_task
from tests.compute.test_api_autoscalers_deployments import deployment
from tests.compute.test_api_workloads import cluster  # noqa: F401 - fixture

pytestmark = pytest.mark.unit

ACTIVE = ({"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound"},)


@pytest.fixture
def scaled(demo, cluster, settings):  # noqa: F811
    settings.ISOTOPE_AUTOSCALER_CHART_SECONDS = 30
    workload = deployment(demo.acme)
    autoscaler = autoscaler_services.autoscaler_create(
        actor=demo.bob, tenant=demo.acme, workload=workload, max_replicas=4, target=50
    )
    return cluster, workload, autoscaler


def seen(cluster, workload, **status):  # noqa: F811
    info = AutoscalerInfo(namespace=workload.namespace, name="web", conditions=ACTIVE, **status)
    return hpa.autoscaler_seen(cluster, info)


def test_a_steady_hpa_gets_a_point_every_interval_and_none_in_between(scaled):
    cluster, workload, autoscaler = scaled  # noqa: F811
    # Before the HPA's first status there is nothing to draw.
    assert not hpa.autoscaler_chart_tick(autoscaler.pk)
    seen(cluster, workload, current_replicas=2, desired_replicas=3, current_utilisation=80)
    history = Autoscaler.objects.get().history
    assert [(p["replicas"], p["metric"]) for p in history] == [(3, 80.0)]
    start = timezone.now()
    assert not hpa.autoscaler_chart_tick(autoscaler.pk, now=start + timedelta(seconds=10))
    assert hpa.autoscaler_chart_tick(autoscaler.pk, now=start + timedelta(seconds=31))
    # A second run at the same time (a redelivered task) adds nothing.
    assert not hpa.autoscaler_chart_tick(autoscaler.pk, now=start + timedelta(seconds=31))
    row = Autoscaler.objects.get()
    assert [(p["replicas"], p["metric"]) for p in row.history] == [(3, 80.0), (3, 80.0)]
    assert row.history[-1]["t"] == pytest.approx((start + timedelta(seconds=31)).timestamp())
    # The beat's task does the same, a period later.
    autoscaler_chart_task(autoscaler.pk)
    assert len(Autoscaler.objects.get().history) == 2  # the last point is recent


def test_the_chart_keeps_only_the_last_hour(scaled):
    cluster, workload, autoscaler = scaled  # noqa: F811
    seen(cluster, workload, current_replicas=2, desired_replicas=2, current_utilisation=50)
    now = timezone.now()
    old = [{"t": now.timestamp() - 4000 + i, "replicas": 2, "metric": 50.0} for i in range(5)]
    Autoscaler.objects.filter(pk=autoscaler.pk).update(history=old)
    assert hpa.autoscaler_chart_tick(autoscaler.pk, now=now)
    history = Autoscaler.objects.get().history
    assert len(history) == 1 and history[0]["t"] == pytest.approx(now.timestamp())


def test_no_point_while_the_deployment_is_being_deleted(scaled):
    cluster, workload, autoscaler = scaled  # noqa: F811
    seen(cluster, workload, current_replicas=2, desired_replicas=2, current_utilisation=50)
    type(workload).objects.filter(pk=workload.pk).update(deleting=True)
    later = timezone.now() + timedelta(seconds=60)
    assert not hpa.autoscaler_chart_tick(autoscaler.pk, now=later)
    assert len(Autoscaler.objects.get().history) == 1

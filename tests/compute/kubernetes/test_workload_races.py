"""A user's scale or restart is never undone by the watch reporting an older state, and
the API server's quota refusal of an older spec never releases a newer reservation.

The Deployment really runs on the local API server (KWOK nodes); the watch's handler
(``workload_seen_deployment``) gets what the server said about it while the user's
action runs in another thread at the same instant (PostgreSQL, a barrier).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from compute.backends.kubernetes.watch import deployment_info
from compute.choices import Phase
from compute.models import Workload
from compute.services import workloads as services
from compute.tasks import kubernetes as kubernetes_tasks
from tenants.models import Quota, Reservation
from tests.conftest import postgres_only, wait_for
from tests.races import race

pytestmark = [pytest.mark.kubernetes, pytest.mark.django_db(transaction=True)]

ROUNDS = 200


def operator():
    """bob, whom ``make_tenant`` made an operator of the tenant."""
    return get_user_model().objects.get(username="bob")


def used(tenant) -> tuple:
    quota = Quota.objects.get(tenant=tenant)
    return (quota.used_cpu, quota.used_memory, quota.used_pods)


def settled_deployment(kube, cluster, tenant, name: str, replicas: int) -> Workload:
    """Create a Deployment workload, apply it with the real task body in this process,
    and wait until the API server reports it settled."""
    workload = services.workload_create(
        actor=None,
        tenant=tenant,
        name=name,
        image="registry.invalid/isotope/web:1",
        replicas=replicas,
        cpu_request="100m",
        memory_request="64Mi",
    )
    kubernetes_tasks.workload_apply.apply(args=(workload.pk,))

    def settled():
        raw = kube.api.sanitize_for_serialization(
            kube.apps.read_namespaced_deployment(name, tenant.namespace)
        )
        info = deployment_info(raw)
        return info if info.up_to_date and info.ready == replicas else None

    wait_for(settled, 60, 0.2, message=f"{name} did not settle on the API server")
    return Workload.objects.select_related("tenant", "cluster").get(pk=workload.pk)


def server_says(kube, tenant, name: str):
    raw = kube.api.sanitize_for_serialization(
        kube.apps.read_namespaced_deployment(name, tenant.namespace)
    )
    return deployment_info(raw)


def test_a_scale_is_never_undone_by_the_watch_reporting_the_old_replica_count(
    make_tenant, cluster, kube
):
    """The watch reports "2 of 2 ready" (true for the old spec) while the user scales to
    3: the workload must end Pending with 3 wanted, never Running."""
    postgres_only()
    tenant = make_tenant()
    workload = settled_deployment(kube, cluster, tenant, "web", 2)
    info = server_says(kube, tenant, "web")
    applied = workload.generation

    def setup() -> dict:
        # The round starts where a rollout of 2 replicas is just finishing.
        Workload.objects.filter(pk=workload.pk).update(
            phase=Phase.PENDING, replicas=2, generation=applied
        )
        return {}

    def observer(state: dict) -> None:
        services.workload_seen_deployment(cluster, info)

    def user(state: dict) -> int:
        scaled = services.workload_scale(actor=operator(), workload=workload, replicas=3)
        return scaled.resource_version

    last = [workload.resource_version]

    def check(state: dict) -> None:
        row = Workload.objects.get(pk=workload.pk)
        assert (row.replicas, row.phase) == (3, Phase.PENDING)
        assert last[-1] < state["user"] <= row.resource_version
        last.append(row.resource_version)
        assert used(tenant) == (Decimal("0.300"), 192, 3)

    race(ROUNDS, setup, observer, user, check)


def test_a_restart_is_never_undone_by_the_watch_reporting_the_old_rollout(
    make_tenant, cluster, kube
):
    """The watch reports the settled Deployment of the spec before the restart: the
    restarted workload stays Pending until the server has the new spec."""
    postgres_only()
    tenant = make_tenant()
    workload = settled_deployment(kube, cluster, tenant, "api", 1)
    info = server_says(kube, tenant, "api")
    applied = workload.generation

    def setup() -> dict:
        Workload.objects.filter(pk=workload.pk).update(
            phase=Phase.PENDING, generation=applied, restarted_at=None
        )
        return {}

    def observer(state: dict) -> None:
        services.workload_seen_deployment(cluster, info)

    def user(state: dict) -> None:
        services.workload_restart(actor=operator(), workload=workload)

    def check(state: dict) -> None:
        row = Workload.objects.get(pk=workload.pk)
        assert row.restarted_at is not None
        assert row.phase == Phase.PENDING

    race(ROUNDS, setup, observer, user, check)


def test_a_refusal_of_the_old_spec_keeps_the_reservation_of_a_scale_made_meanwhile(
    make_tenant, cluster
):
    """The apply task read 4 replicas and the API server refused them; meanwhile the
    user scaled to 1 (re-charged for 1). The refusal must not release that charge."""
    tenant = make_tenant()
    workload = services.workload_create(
        actor=None,
        tenant=tenant,
        name="batch",
        image="registry.invalid/isotope/batch:1",
        replicas=4,
        cpu_request="250m",
        memory_request="64Mi",
    )
    applied = Workload.objects.select_related("tenant", "cluster").get(pk=workload.pk)
    services.workload_scale(actor=None, workload=workload, replicas=1)
    assert used(tenant) == (Decimal("0.250"), 64, 1)

    services.workload_refused(applied, "The cluster refused Deployment batch: exceeded quota.")

    assert used(tenant) == (Decimal("0.250"), 64, 1)
    assert Reservation.objects.filter(ref=workload.quota_ref, released__isnull=True).count() == 1
    row = Workload.objects.get(pk=workload.pk)
    assert row.phase == Phase.PENDING and row.refused_generation is None


def test_a_refusal_of_the_current_spec_releases_it_once_and_is_kept_as_state(make_tenant, cluster):
    """Recognised by state, not by its message: the refused workload stays Failed when
    the cluster is unreachable (nothing of it is there) and the reconciler leaves it."""
    tenant = make_tenant()
    workload = services.workload_create(
        actor=None,
        tenant=tenant,
        name="single",
        kind="Pod",
        image="registry.invalid/isotope/one:1",
    )
    applied = Workload.objects.select_related("tenant", "cluster").get(pk=workload.pk)
    assert services.workload_refused(applied, "The cluster refused Pod single: exceeded quota.")
    assert used(tenant) == (Decimal("0"), 0, 0)
    row = Workload.objects.get(pk=workload.pk)
    assert row.phase == Phase.FAILED and row.refused_generation == row.generation

    assert services.cluster_workloads_unknown(cluster, "API server unreachable") == 0
    counts = kubernetes_tasks.cluster_reconcile.apply(args=(cluster.pk,)).get()
    assert counts["reapplied"] == 0
    row.refresh_from_db()
    assert row.phase == Phase.FAILED
    assert used(tenant) == (Decimal("0"), 0, 0)

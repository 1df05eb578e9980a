"""``ISOTOPE_K8S_NAMESPACE_PREFIX``: a tenant's namespace is the prefix + its slug, and what
the cluster reports from a namespace without the prefix (another installation's on the
same cluster, or any other namespace) is no tenant's.

No cluster is reached here (``fake_cluster``): the watch's reports are built the way the
watch builds them (``deployment_info``, ``event_info``) from what the API server sends.
"""

from __future__ import annotations

import pytest

from compute.backends.kubernetes.watch import deployment_info, event_info
from compute.choices import Phase
from compute.models import Workload
from compute.services import workloads as services

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def reported(namespace: str, ready: int) -> dict:
    """A Deployment ``web`` in ``namespace`` as the API server reports it, settled."""
    return {
        "metadata": {
            "namespace": namespace,
            "name": "web",
            "generation": 1,
            "labels": {"app.kubernetes.io/managed-by": "isotope"},
        },
        "spec": {"replicas": ready},
        "status": {
            "observedGeneration": 1,
            "replicas": ready,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "updatedReplicas": ready,
        },
    }


@pytest.fixture
def web(demo, fake_cluster):
    return services.workload_create(
        actor=demo.bob,
        tenant=demo.acme,
        name="web",
        image="registry.invalid/isotope/web:1",
        replicas=0,
        cpu_request="100m",
        memory_request="64Mi",
    )


def phase(workload) -> tuple:
    row = Workload.objects.get(pk=workload.pk)
    return row.phase, row.ready_replicas


def test_the_tenants_namespace_is_the_prefix_and_its_slug_in_the_api(demo, api, settings):
    assert api(demo.bob).get("/api/v1/tenants/acme/").json()["status"]["namespace"] == (
        "isotope-acme"
    )
    settings.ISOTOPE_K8S_NAMESPACE_PREFIX = "staging-"
    assert api(demo.bob).get("/api/v1/tenants/acme/").json()["status"]["namespace"] == (
        "staging-acme"
    )


def test_a_deployment_of_the_same_name_in_another_installations_namespace_is_not_the_workloads(
    web, fake_cluster, settings
):
    settings.ISOTOPE_K8S_NAMESPACE_PREFIX = "staging-"
    before = phase(web)
    # The production installation's acme runs its own "web" on the same cluster.
    assert (
        services.workload_seen_deployment(
            fake_cluster, deployment_info(reported("isotope-acme", 0))
        )
        is None
    )
    assert phase(web) == before
    # Its own namespace's report is the workload's.
    seen = services.workload_seen_deployment(
        fake_cluster, deployment_info(reported("staging-acme", 0))
    )
    assert seen is not None and seen.pk == web.pk
    assert phase(web) == (Phase.RUNNING, 0)


def test_a_namespace_without_the_prefix_is_no_tenants_even_when_it_is_a_slug(web, fake_cluster):
    """A Deployment labelled as Isotope's in namespace ``acme`` (not ``isotope-acme``)
    is not tenant acme's workload."""
    before = phase(web)
    assert (
        services.workload_seen_deployment(fake_cluster, deployment_info(reported("acme", 0)))
        is None
    )
    assert phase(web) == before


def test_cluster_events_from_another_installations_namespace_are_dropped(settings):
    raw = {
        "metadata": {"namespace": "isotope-acme", "name": "web.1"},
        "involvedObject": {"kind": "Pod", "name": "web-0"},
        "reason": "Pulled",
        "message": "pulled",
    }
    assert event_info(raw).namespace == "isotope-acme"
    settings.ISOTOPE_K8S_NAMESPACE_PREFIX = "staging-"
    assert event_info(raw) is None

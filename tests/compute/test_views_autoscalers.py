"""The tenant's autoscalers page: one table of the autoscalers of VM pools and of
Deployments, and one create form whose picker lists both kinds of target. The form
creates through the service the panels and the API use; bad input changes nothing;
viewers read but cannot add; another tenant's target or page is refused."""

from __future__ import annotations

import pytest

from compute.models import Autoscaler
from compute.services import autoscalers as autoscaler_services
from tenants.choices import AuditOutcome
from tenants.models import AuditLog
from tests.compute.test_api_pools import make_pool
from tests.compute.test_api_workloads import cluster  # noqa: F401 - fixture
from tests.compute.test_views_pools import SCALER_FORM, client_for
from tests.compute.test_views_workloads import make

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]

LIST = "/t/acme/autoscalers/"
NEW = "/t/acme/autoscalers/new/"
FORM = {**SCALER_FORM, "scale_target": "VMPool/web", "name": ""}


@pytest.fixture
def world(demo, make_host, tiny_image, cluster):  # noqa: F811
    """acme with a host (for a pool) and a Kubernetes cluster record (for Deployments)."""
    demo.host = make_host("node-a")
    return demo


def test_the_empty_list_says_what_an_autoscaler_is_and_links_to_create(world):
    page = client_for(world.bob).get(LIST).content.decode()
    assert 'data-testid="autoscaler-empty"' in page
    assert "keep its members' CPU or memory utilisation near a target" in page
    assert f'href="{NEW}"' in page
    viewer = client_for(world.carol).get(LIST).content.decode()
    assert 'data-testid="autoscaler-empty"' in viewer and f'href="{NEW}"' not in viewer
    assert "ask an operator or admin" in viewer


def test_the_picker_lists_pools_and_deployments_and_disables_those_that_have_one(world):
    make_pool(world, "web")
    batch = make_pool(world, "batch")
    make(world, "api", replicas=2)
    make(world, "one", kind="Pod")
    autoscaler_services.autoscaler_create(
        actor=None, tenant=world.acme, pool=batch, max_replicas=3, target=60
    )
    page = client_for(world.bob).get(NEW).content.decode()
    assert '<optgroup label="VM pools">' in page and '<optgroup label="Deployments">' in page
    assert '<option value="VMPool/web">web</option>' in page
    assert '<option value="Deployment/api">api</option>' in page
    assert '<option value="VMPool/batch" disabled>batch — has the autoscaler batch' in page
    assert "Deployment/one" not in page  # a single pod cannot be autoscaled


def test_an_operator_adds_a_pools_autoscaler_through_the_picker(world):
    pool = make_pool(world, "web")
    done = client_for(world.bob).post(NEW, FORM, follow=True)
    assert done.redirect_chain == [(LIST, 302)]
    page = done.content.decode()
    assert "The autoscaler of web is saved." in page
    autoscaler = Autoscaler.objects.get()
    assert autoscaler.pool == pool and autoscaler.name == "web"
    assert (autoscaler.min_replicas, autoscaler.max_replicas, autoscaler.target) == (1, 4, 50)
    assert 'data-autoscaler-row="web"' in page
    assert 'href="/t/acme/vmpools/web/" data-testid="autoscaler-target">web</a>' in page
    assert "1–4" in page and "50% cpu" in page
    audit = AuditLog.objects.get(action="autoscaler.create")
    assert audit.actor == world.bob and audit.outcome == AuditOutcome.SUCCESS
    assert audit.detail["pool"] == "web"
    # Once it has one, the pool's option is disabled: posting it anyway is refused.
    again = client_for(world.bob).post(NEW, {**FORM, "name": "other"})
    assert again.status_code == 400
    assert b'data-testid="error-scale_target"' in again.content
    assert b"This pool has an autoscaler already." in again.content
    assert Autoscaler.objects.count() == 1


def test_an_operator_adds_a_deployments_autoscaler_named_by_hand(world):
    workload = make(world, "api", replicas=2)
    response = client_for(world.alice).post(
        NEW, {**FORM, "scale_target": "Deployment/api", "name": "api-cpu", "max_replicas": "5"}
    )
    assert response.status_code == 302 and response["Location"] == LIST
    autoscaler = Autoscaler.objects.get()
    assert autoscaler.workload == workload and autoscaler.name == "api-cpu"
    page = client_for(world.carol).get(LIST).content.decode()
    assert 'href="/t/acme/workloads/api/" data-testid="autoscaler-target">api</a>' in page
    assert "Deployment" in page and "1–5" in page and "not run yet" in page
    # Its panel on the Deployment's page says how often its chart gets a point.
    panel = client_for(world.carol).get("/t/acme/workloads/api/").content.decode()
    assert "whenever the HPA's status changes and at least every 30 s" in panel


def test_a_deployments_autoscaler_may_have_a_minimum_of_zero(world):
    workload = make(world, "api", replicas=1)
    response = client_for(world.alice).post(
        NEW, {**FORM, "scale_target": "Deployment/api", "min_replicas": "0"}
    )
    assert response.status_code == 302
    autoscaler = Autoscaler.objects.get()
    assert autoscaler.workload == workload and autoscaler.min_replicas == 0


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"scale_target": ""}, "scale_target", "This field is required."),
        ({"scale_target": "VMPool/nope"}, "scale_target", "Select a valid choice."),
        ({"min_replicas": "9"}, "min_replicas", "Must not be above the maximum."),
        ({"target": "0"}, "target", "Must be between 1 and 100."),
        ({"max_replicas": "lots"}, "max_replicas", "Enter a whole number."),
        ({"name": "Bad Name!"}, "name", ""),
        (
            {"scale_target": "Deployment/api", "min_replicas": "-1"},
            "min_replicas",
            "Must be between 0 and",
        ),
    ],
)
def test_bad_input_shows_on_its_field_and_creates_nothing(world, change, field, says):
    make_pool(world, "web")
    make(world, "api", replicas=2)
    response = client_for(world.bob).post(NEW, {**FORM, **change})
    assert response.status_code == 400
    page = response.content.decode()
    assert f'data-testid="error-{field}"' in page and says in page
    assert not Autoscaler.objects.exists()
    assert not AuditLog.objects.filter(action="autoscaler.create").exists()


def test_a_viewer_sees_the_list_but_may_not_add(world):
    pool = make_pool(world, "web")
    autoscaler_services.autoscaler_create(
        actor=None, tenant=world.acme, pool=pool, max_replicas=3, target=60
    )
    carol = client_for(world.carol)
    page = carol.get(LIST)
    assert page.status_code == 200 and b'data-autoscaler-row="web"' in page.content
    assert b'data-testid="autoscaler-create"' not in page.content
    assert carol.get(NEW).status_code == 403
    refused = carol.post(NEW, {**FORM, "name": "mine"})
    assert refused.status_code == 403
    assert list(Autoscaler.objects.values_list("name", flat=True)) == ["web"]
    denied = AuditLog.objects.filter(actor=world.carol, outcome=AuditOutcome.DENIED)
    assert denied.exists()


def test_another_tenants_page_and_targets_are_refused(world):
    make_pool(world, "web")
    theirs = make_pool(world, "theirs", tenant=world.globex)
    # Another tenant's member: the acme pages are not found.
    dave = client_for(world.dave)
    assert dave.get(LIST).status_code == 404
    assert dave.post(NEW, FORM).status_code == 404
    # An acme operator cannot pick globex's pool: it is not a choice in acme.
    bob = client_for(world.bob)
    assert "theirs" not in bob.get(NEW).content.decode()
    refused = bob.post(NEW, {**FORM, "scale_target": "VMPool/theirs"})
    assert refused.status_code == 400 and b'data-testid="error-scale_target"' in refused.content
    assert not Autoscaler.objects.filter(pool=theirs).exists()
    assert not Autoscaler.objects.exists()

"""A Deployment's page has the pool page's autoscaler panel: operators add, change and
remove its autoscaler (a HorizontalPodAutoscaler) from the form, a refusal shows on its
field and changes nothing, viewers read the status, other tenants get 404; a single
pod's page has no panel. While the autoscaler sizes the Deployment its page has no
Scale button but a note that points to the panel; scaled to zero, Scale is back."""

from __future__ import annotations

import pytest
from django.test import Client

from compute.models import Autoscaler, Workload
from tests.compute.test_views_workloads import LIST, client_for, make, world  # noqa: F401
from tests.page_forms import page_form_data

pytestmark = pytest.mark.unit

FORM = {
    "min_replicas": "1",
    "max_replicas": "4",
    "metric": "cpu",
    "target": "50",
    "scale_down_window_seconds": "60",
    "scale_up_pods": "4",
    "scale_up_percent": "100",
    "scale_down_percent": "100",
}


@pytest.mark.parametrize(
    ("who", "status"),
    [("bob", 302), ("alice", 302), ("carol", 403), ("dave", 404), ("anonymous", 302)],
)
def test_who_may_add_a_deployments_autoscaler(world, who, status):  # noqa: F811
    make(world, "web", replicas=2)
    client = Client() if who == "anonymous" else client_for(getattr(world, who))
    response = client.post(f"{LIST}web/autoscaler/", FORM)
    assert response.status_code == status
    assert Autoscaler.objects.exists() is (who in ("bob", "alice"))


def test_an_operator_adds_changes_and_removes_it_and_a_viewer_reads_it(world):  # noqa: F811
    make(world, "web", replicas=2)
    bob = client_for(world.bob)
    page = bob.get(f"{LIST}web/").content.decode()
    assert 'data-testid="autoscaler-form"' in page and "Add an autoscaler" in page

    refused = bob.post(f"{LIST}web/autoscaler/", {**FORM, "min_replicas": "5"})
    assert refused.status_code == 400
    assert "Must not be above the maximum." in refused.content.decode()
    assert not Autoscaler.objects.exists()

    done = bob.post(f"{LIST}web/autoscaler/", FORM, follow=True).content.decode()
    assert "The autoscaler of web is saved." in done
    autoscaler = Autoscaler.objects.get()
    assert autoscaler.workload.name == "web" and autoscaler.max_replicas == 4
    assert 'data-testid="autoscaler-status"' in done and "no status yet" in done

    bob.post(f"{LIST}web/autoscaler/", {**FORM, "max_replicas": "6"})
    assert Autoscaler.objects.get().max_replicas == 6

    viewer = client_for(world.carol).get(f"{LIST}web/").content.decode()
    assert 'data-testid="autoscaler-status"' in viewer
    assert 'data-testid="autoscaler-form"' not in viewer

    removed = bob.post(f"{LIST}web/autoscaler/", {"remove": "1"}, follow=True).content.decode()
    assert "The autoscaler of web is removed." in removed
    assert not Autoscaler.objects.exists()


def test_a_single_pod_has_no_autoscaler_panel(world):  # noqa: F811
    make(world, "one", kind="Pod")
    page = client_for(world.bob).get(f"{LIST}one/").content.decode()
    assert 'data-testid="autoscaler-panel"' not in page


def test_the_viewer_reads_that_there_is_none(world):  # noqa: F811
    make(world, "web", replicas=2)
    page = client_for(world.carol).get(f"{LIST}web/").content.decode()
    assert "No autoscaler: the Deployment keeps the replicas it is given." in page


def scale_form(page: str) -> str:
    """ "shown", "hidden" or "none": the Scale action's form on a rendered page."""
    if 'data-live-action="scale" hidden' in page:
        return "hidden"
    return "shown" if 'data-live-action="scale"' in page else "none"


def test_minimum_zero_is_accepted_and_scale_gives_way_to_a_note_until_at_zero(world):  # noqa: F811
    workload = make(world, "web", replicas=2)
    bob = client_for(world.bob)
    assert scale_form(bob.get(f"{LIST}web/").content.decode()) == "shown"
    assert scale_form(bob.get(LIST).content.decode()) == "shown"
    bob.post(f"{LIST}web/autoscaler/", {**FORM, "min_replicas": "0"})
    assert Autoscaler.objects.get().min_replicas == 0

    page = bob.get(f"{LIST}web/").content.decode()
    assert scale_form(page) == "hidden"
    assert 'data-testid="workload-sized-note"' in page and 'href="#autoscaler"' in page
    assert "Scaled to zero, it comes back when scaled by hand." in page
    assert scale_form(bob.get(LIST).content.decode()) == "hidden"

    # At zero by its autoscaler's doing: a scale by hand wakes it, so Scale is there.
    Workload.objects.filter(pk=workload.pk).update(replicas=0)
    assert scale_form(bob.get(f"{LIST}web/").content.decode()) == "shown"
    assert scale_form(bob.get(LIST).content.decode()) == "shown"


def test_a_deployments_autoscaler_panel_opened_earlier_sends_only_what_was_changed(
    world,  # noqa: F811
):
    """bob's page shows the Deployment's autoscaler; alice then lowers its scale-down
    window. bob raises the maximum: alice's window stays."""
    from compute.services import autoscalers as autoscaler_services

    make(world, "web", replicas=2)
    bob = client_for(world.bob)
    assert bob.post(f"{LIST}web/autoscaler/", FORM).status_code == 302
    sent = page_form_data(bob.get(f"{LIST}web/").content.decode(), "autoscaler-form")
    autoscaler_services.autoscaler_update(
        actor=world.alice, autoscaler=Autoscaler.objects.get(), scale_down_window_seconds=30
    )

    assert bob.post(f"{LIST}web/autoscaler/", {**sent, "max_replicas": "6"}).status_code == 302

    autoscaler = Autoscaler.objects.get()
    assert (autoscaler.max_replicas, autoscaler.scale_down_window_seconds) == (6, 30)

"""Every kind's live state carries its object's uid and resourceVersion, so a state
written earlier and published later (each writer publishes after its own commit) never
replaces a newer one: not in the resync snapshot, not on an open page (live.js's
guard, tests/e2e/test_live_events.py)."""

from __future__ import annotations

import pytest
from django.db.models import F

from compute.services import networks as network_services
from compute.services import volumes as volume_services
from monitoring import live

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def kept_after_a_late_one(obj, kind: str, publish, capture, **newer_fields) -> tuple:
    """Publish a write's state, then a copy read before that write (the late one); the
    copy, and the state the resync snapshot keeps."""
    model = type(obj)
    stale = model.objects.get(pk=obj.pk)
    model.objects.filter(pk=obj.pk).update(
        resource_version=F("resource_version") + 1, **newer_fields
    )
    with capture(execute=True):
        publish(model.objects.get(pk=obj.pk))
    with capture(execute=True):
        publish(stale)
    [kept] = live.state_snapshot("acme", kind, obj.name)
    return stale, kept["data"]


def test_a_volume_s_and_a_network_s_late_older_state_is_not_kept_over_the_newer(
    demo, make_host, django_capture_on_commit_callbacks
):
    make_host()
    volume = volume_services.volume_create(
        actor=demo.bob, tenant=demo.acme, name="data1", size_gib=1
    )
    stale, kept = kept_after_a_late_one(
        volume,
        "volume",
        volume_services._publish,
        django_capture_on_commit_callbacks,
        phase="Failed",
        message="the disk is full",
    )
    assert kept["uid"] == str(volume.uid)
    assert kept["phase"] == "Failed"
    assert int(kept["resourceVersion"]) == stale.resource_version + 1

    network = network_services.network_create(
        actor=demo.alice, tenant=demo.acme, name="back", cidr="10.42.0.0/24"
    )
    _, kept = kept_after_a_late_one(
        network,
        "network",
        network_services._publish,
        django_capture_on_commit_callbacks,
        phase="Failed",
        message="host refused",
    )
    assert (kept["uid"], kept["phase"]) == (str(network.uid), "Failed")


def test_an_image_s_state_names_its_object(demo, tiny_image):
    """An image's state (public images are published to every tenant) carries them too."""
    from compute.services.images import image_state

    state = image_state(tiny_image)
    assert state["uid"] == str(tiny_image.uid)
    assert state["resourceVersion"] == str(tiny_image.resource_version)

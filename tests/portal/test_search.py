"""The top bar's search: the user's tenants' VMs, workloads, volumes and images by name or
label, never another tenant's, and bad input answered plainly."""

from __future__ import annotations

import pytest
from django.test import Client

from compute.models import Image, KubernetesCluster
from compute.selectors import SEARCH_LIMIT, search
from compute.services import vms as vm_services
from compute.services import volumes as volume_services
from compute.services import workloads as workload_services
from monitoring import crypto

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]


@pytest.fixture
def world(demo, make_host, tiny_image):
    make_host("node-a", cpus=64, memory_mib=256 * 1024)
    KubernetesCluster.objects.create(
        name="fake",
        kubeconfig_encrypted=crypto.encrypt("clusters: []", context=crypto.KUBECONFIG),
        default=True,
    )
    vm = vm_services.vm_create
    vm(actor=None, tenant=demo.acme, name="web-1", image="tiny", vcpus=1, memory_mib=256,
       labels={"tier": "frontend"})  # fmt: skip
    vm(actor=None, tenant=demo.acme, name="db-1", image="tiny", vcpus=1, memory_mib=256,
       labels={"tier": "backend"})  # fmt: skip
    vm(actor=None, tenant=demo.globex, name="web-secret", image="tiny", vcpus=1,
       memory_mib=256, labels={"tier": "frontend"})  # fmt: skip
    workload_services.workload_create(
        actor=None, tenant=demo.acme, name="web-api", image="nginx:1.27", labels={"app": "web"}
    )
    workload_services.workload_create(
        actor=None, tenant=demo.globex, name="web-globex", image="nginx:1.27"
    )
    volume_services.volume_create(actor=None, tenant=demo.acme, name="web-data", size_gib=1)
    volume_services.volume_create(actor=None, tenant=demo.globex, name="web-vault", size_gib=1)
    Image.objects.create(name="web-base", display_name="Web base", tenant=demo.acme, public=False)
    Image.objects.create(name="web-gold", display_name="Gold", tenant=demo.globex, public=False)
    return demo


def names(results) -> dict[str, list[str]]:
    return {
        kind: [o.name for o in getattr(results, kind)]
        for kind in ("vms", "workloads", "volumes", "images")
    }


def test_a_name_finds_every_kind_in_the_users_tenants_only(world):
    assert names(search(world.carol, "web")) == {
        "vms": ["web-1"],
        "workloads": ["web-api"],
        "volumes": ["web-data"],
        "images": ["web-base"],
    }
    # dave (globex) finds globex's, never acme's, with the same words.
    assert names(search(world.dave, "WEB")) == {
        "vms": ["web-secret"],
        "workloads": ["web-globex"],
        "volumes": ["web-vault"],
        "images": ["web-gold"],
    }


def test_labels_match_by_key_or_key_value_and_images_by_display_name(world):
    assert names(search(world.bob, "tier"))["vms"] == ["db-1", "web-1"]
    assert names(search(world.bob, "tier=frontend"))["vms"] == ["web-1"]
    assert names(search(world.bob, "tier = backend"))["vms"] == ["db-1"]
    assert names(search(world.bob, "app=web"))["workloads"] == ["web-api"]
    assert names(search(world.bob, "web base"))["images"] == ["web-base"]
    assert search(world.bob, "nothing-like-this").total == 0
    assert search(world.bob, "   ").q == ""


def test_someone_in_no_tenant_or_signed_out_finds_nothing(world, django_user_model):
    from django.contrib.auth.models import AnonymousUser

    loner = django_user_model.objects.create_user("loner", password="x")
    assert search(loner, "web").total == 0
    assert search(AnonymousUser(), "web").total == 0


def test_long_lists_stop_at_the_limit_and_say_there_is_more(world):
    for i in range(4):
        vm_services.vm_create(
            actor=None, tenant=world.acme, name=f"many-{i}", image="tiny", vcpus=1, memory_mib=128
        )
    results = search(world.bob, "many-", limit=3)
    assert [vm.name for vm in results.vms] == ["many-0", "many-1", "many-2"]
    assert results.more == {"vms"}
    assert SEARCH_LIMIT == 25 and search(world.bob, "many-").more == frozenset()


def test_the_page_links_each_hit_and_shows_nothing_of_other_tenants(world):
    client = Client()
    client.force_login(world.carol)
    page = client.get("/search/", {"q": "web"}).content.decode()
    assert 'href="/t/acme/vms/web-1/"' in page
    assert 'href="/t/acme/workloads/web-api/"' in page
    assert 'href="/t/acme/volumes/web-data/"' in page
    assert "web-base" in page
    assert "web-secret" not in page and "web-globex" not in page and "web-vault" not in page
    assert "4 results for “web”" in page
    empty = client.get("/search/", {"q": "zzz"}).content.decode()
    assert "Nothing in your tenants matches" in empty


def test_a_search_too_long_is_a_400_with_the_reason_and_signed_out_is_sent_to_sign_in(world):
    client = Client()
    client.force_login(world.carol)
    response = client.get("/search/", {"q": "x" * 201})
    assert response.status_code == 400
    assert "at most 200 characters" in response.content.decode()
    assert client.post("/search/", {"q": "web"}).status_code == 405
    anonymous = Client().get("/search/", {"q": "web"})
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]


def test_the_top_bar_has_the_search_box_and_the_shortcut_help(world):
    client = Client()
    client.force_login(world.carol)
    page = client.get("/").content.decode()
    assert 'role="search"' in page and 'id="global-search"' in page
    assert 'aria-keyshortcuts="/"' in page
    assert 'id="shortcut-help"' in page and "<kbd>/</kbd>" in page

"""Role × action × tenant matrix over every web view and API endpoint.

One table (``ALLOWED``) says which standing may do what; every request in the matrix is
checked against it, so an unauthorised success anywhere fails the suite. Writes are also
checked for their effect: a refused write changes nothing, an allowed one changes what
it should and leaves an audit row naming the actor, tenant and client address.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from compute.models import Image, KubernetesCluster, Network, SecurityGroup, Service
from compute.services import load_balancers as service_services
from compute.services import networks as network_services
from compute.services import security_groups as group_services
from tenants import services
from tenants.choices import AuditOutcome, Role
from tenants.models import ApiToken, AuditLog, Membership, Quota, Tenant
from tests.conftest import make_demo, shared_data
from usage.models import QuotaRequest

pytestmark = pytest.mark.unit

ACTORS = ["anonymous", "erin", "carol", "bob", "alice", "dave", "admin"]
# acme and globex exist; initech does not (a missing tenant must look like a foreign one).
TENANTS = ["acme", "globex", "initech"]
MEMBERS = {
    "acme": {"alice": Role.ADMIN, "bob": Role.OPERATOR, "carol": Role.VIEWER},
    "globex": {"dave": Role.ADMIN, "gus": Role.VIEWER},
    "initech": {},
}
# The member each tenant's member-detail requests act on.
TARGET = {"acme": "carol", "globex": "gus", "initech": "carol"}
DISPLAY_NAME = {"acme": "ACME Corporation", "globex": "Globex"}

MEMBER_STANDINGS = {Role.VIEWER, Role.OPERATOR, Role.ADMIN, "superuser"}
# The single permission table: which standings may use an endpoint of each kind.
ALLOWED: dict[str, set[str]] = {
    "public": {"anonymous", "user", "outsider", *MEMBER_STANDINGS},
    "login": {"user", *MEMBER_STANDINGS},
    "read": MEMBER_STANDINGS,
    "operate": {Role.OPERATOR, Role.ADMIN, "superuser"},
    "manage": {Role.ADMIN, "superuser"},
    "staff": {"superuser"},
}


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """Hashing the demo users' passwords with PBKDF2 would make the matrix take minutes."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def standing(actor: str, tenant: str | None) -> str:
    """What ``actor`` is with respect to ``tenant``: the row of ``ALLOWED`` to use."""
    if actor == "anonymous":
        return "anonymous"
    if tenant is None:
        return "superuser" if actor == "admin" else "user"
    if tenant not in DISPLAY_NAME:
        return "absent"  # even a superuser cannot see a tenant that does not exist
    if actor == "admin":
        return "superuser"
    return MEMBERS[tenant].get(actor, "outsider")


@dataclass(frozen=True)
class Endpoint:
    name: str  # the URL name in portal/urls.py
    surface: str  # "web" or "api"
    method: str
    path: str  # formatted with tenant= and target=
    needs: str  # a key of ALLOWED
    ok: int  # the status of a success
    data: dict = field(default_factory=dict)
    # For writes: the audit action of a success, and how to see that it happened.
    audit: str = ""
    done: object = None
    redirect: str = "/t/{tenant}/members/"  # where a web write that succeeded goes

    @property
    def scoped(self) -> bool:
        return "{tenant}" in self.path

    def url(self, tenant: str | None) -> str:
        return self.path.format(tenant=tenant, target=TARGET.get(tenant, ""))


def _role(tenant: str, username: str) -> str | None:
    return (
        Membership.objects.filter(tenant__slug=tenant, user__username=username)
        .values_list("role", flat=True)
        .first()
    )


def erin_added(tenant: str) -> bool:
    return _role(tenant, "erin") == Role.VIEWER


def target_promoted(tenant: str) -> bool:
    return _role(tenant, TARGET[tenant]) == Role.OPERATOR


def target_removed(tenant: str) -> bool:
    return _role(tenant, TARGET[tenant]) is None


def image_imported(tenant: str) -> bool:
    return Image.objects.filter(tenant__slug=tenant, name="imported", phase="Pending").exists()


def golden_deleted(tenant: str) -> bool:
    return not Image.objects.filter(tenant__slug=tenant, name="golden").exists()


IMPORT = {"url": "https://images.example.invalid/disk.qcow2", "name": "imported"}


def network_created(tenant: str) -> bool:
    return Network.objects.filter(tenant__slug=tenant, name="made", cidr="10.5.0.0/24").exists()


def spare_deleting(tenant: str) -> bool:
    return Network.objects.filter(tenant__slug=tenant, name="spare", phase="Deleting").exists()


NETWORK = {"metadata": {"name": "made"}, "spec": {"cidr": "10.5.0.0/24"}}


def group_created(tenant: str) -> bool:
    return SecurityGroup.objects.filter(tenant__slug=tenant, name="made").exists()


def spare_group_ruled(tenant: str) -> bool:
    return SecurityGroup.objects.get(tenant__slug=tenant, name="spare").rules.count() == 1


def spare_group_patched(tenant: str) -> bool:
    return SecurityGroup.objects.get(tenant__slug=tenant, name="spare").description == "patched"


def spare_group_deleted(tenant: str) -> bool:
    return not SecurityGroup.objects.filter(tenant__slug=tenant, name="spare").exists()


def service_created(tenant: str) -> bool:
    return Service.objects.filter(tenant__slug=tenant, name="made").exists()


def spare_service_patched(tenant: str) -> bool:
    return Service.objects.get(tenant__slug=tenant, name="spare").selector == {"app": "api"}


def spare_service_nodeport(tenant: str) -> bool:
    return Service.objects.get(tenant__slug=tenant, name="spare").service_type == "NodePort"


def spare_service_deleting(tenant: str) -> bool:
    return Service.objects.get(tenant__slug=tenant, name="spare").phase == "Deleting"


SERVICE = {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}

RULE = {"direction": "ingress", "protocol": "tcp", "port_min": "22", "remote_cidr": "0.0.0.0/0"}


def quota_changed(tenant: str) -> bool:
    return Quota.objects.get(tenant__slug=tenant).vms == 7


def quota_requested(tenant: str) -> bool:
    return QuotaRequest.objects.filter(tenant__slug=tenant, increase={"vms": 2}).exists()


QUOTA_REQUEST = {"spec": {"increase": {"vms": 2}, "reason": "Two more for the launch."}}


ENDPOINTS = [
    # --- web ---
    Endpoint("dashboard", "web", "get", "/", "login", 200),
    Endpoint("profile", "web", "get", "/profile/", "login", 200),
    Endpoint("tenant-overview", "web", "get", "/t/{tenant}/", "read", 200),
    Endpoint("vm-list", "web", "get", "/t/{tenant}/vms/", "read", 200),
    Endpoint("workload-list", "web", "get", "/t/{tenant}/workloads/", "read", 200),
    # Create from YAML; its POST (which needs a host or a cluster) in
    # tests/compute/test_views_create_from_yaml.py.
    Endpoint("vm-create-yaml", "web", "get", "/t/{tenant}/vms/new/yaml/", "operate", 200),
    Endpoint(
        "workload-create-yaml", "web", "get", "/t/{tenant}/workloads/new/yaml/", "operate", 200
    ),
    Endpoint("volume-list", "web", "get", "/t/{tenant}/volumes/", "read", 200),
    Endpoint("backup-list", "web", "get", "/t/{tenant}/backups/", "read", 200),
    Endpoint("vmpool-list", "web", "get", "/t/{tenant}/vmpools/", "read", 200),
    Endpoint("autoscaler-list", "web", "get", "/t/{tenant}/autoscalers/", "read", 200),
    # Its POST (which needs a pool or a Deployment to pick) in
    # tests/compute/test_views_autoscalers.py.
    Endpoint("autoscaler-create", "web", "get", "/t/{tenant}/autoscalers/new/", "operate", 200),
    Endpoint("event-list", "web", "get", "/t/{tenant}/events/", "read", 200),
    Endpoint("webhook-list", "web", "get", "/t/{tenant}/webhooks/", "manage", 200),
    Endpoint("tenant-members", "web", "get", "/t/{tenant}/members/", "read", 200),
    Endpoint(
        "tenant-member-add",
        "web",
        "post",
        "/t/{tenant}/members/add/",
        "manage",
        302,
        data={"username": "erin", "role": "viewer"},
        audit="member.add",
        done=erin_added,
    ),
    Endpoint(
        "tenant-member-update",
        "web",
        "post",
        "/t/{tenant}/members/{target}/",
        "manage",
        302,
        data={"role": "operator"},
        audit="member.set_role",
        done=target_promoted,
    ),
    Endpoint(
        "tenant-member-update:remove",
        "web",
        "post",
        "/t/{tenant}/members/{target}/",
        "manage",
        302,
        data={"remove": "1"},
        audit="member.remove",
        done=target_removed,
    ),
    Endpoint("image-list", "web", "get", "/t/{tenant}/images/", "read", 200),
    Endpoint("usage-page", "web", "get", "/t/{tenant}/usage/", "read", 200),
    Endpoint("usage-export", "web", "get", "/t/{tenant}/usage/export/?format=csv", "read", 200),
    Endpoint(
        "quota-request-create",
        "web",
        "post",
        "/t/{tenant}/quota/requests/",
        "manage",
        302,
        data={"increase_vms": "2", "reason": "Two more for the launch."},
        audit="quota_request.create",
        done=quota_requested,
        redirect="/t/{tenant}/",
    ),
    Endpoint(
        "image-import",
        "web",
        "post",
        "/t/{tenant}/images/import/",
        "operate",
        302,
        data=IMPORT,
        audit="image.import",
        done=image_imported,
        redirect="/t/{tenant}/images/",
    ),
    Endpoint(
        "image-delete",
        "web",
        "post",
        "/t/{tenant}/images/golden/delete/",
        "manage",
        302,
        data={"confirm": "yes"},
        audit="image.delete",
        done=golden_deleted,
        redirect="/t/{tenant}/images/",
    ),
    Endpoint("network-list", "web", "get", "/t/{tenant}/networks/", "read", 200),
    Endpoint(
        "network-list:post",
        "web",
        "post",
        "/t/{tenant}/networks/",
        "operate",
        302,
        data={"name": "made", "cidr": "10.5.0.0/24", "kind": "isolated"},
        audit="network.create",
        done=network_created,
        redirect="/t/{tenant}/networks/",
    ),
    Endpoint(
        "network-delete",
        "web",
        "post",
        "/t/{tenant}/networks/spare/delete/",
        "manage",
        302,
        audit="network.delete",
        done=spare_deleting,
        redirect="/t/{tenant}/networks/",
    ),
    Endpoint("securitygroup-list", "web", "get", "/t/{tenant}/securitygroups/", "read", 200),
    Endpoint(
        "securitygroup-list:post",
        "web",
        "post",
        "/t/{tenant}/securitygroups/",
        "operate",
        302,
        data={"name": "made", "description": "x"},
        audit="securitygroup.create",
        done=group_created,
        redirect="/t/{tenant}/securitygroups/made/",
    ),
    Endpoint(
        "securitygroup-detail", "web", "get", "/t/{tenant}/securitygroups/spare/", "read", 200
    ),
    Endpoint(
        "securitygroup-detail:post",
        "web",
        "post",
        "/t/{tenant}/securitygroups/spare/",
        "operate",
        302,
        data=RULE,
        audit="securitygroup.update",
        done=spare_group_ruled,
        redirect="/t/{tenant}/securitygroups/spare/",
    ),
    Endpoint(
        "securitygroup-delete",
        "web",
        "post",
        "/t/{tenant}/securitygroups/spare/delete/",
        "manage",
        302,
        audit="securitygroup.delete",
        done=spare_group_deleted,
        redirect="/t/{tenant}/securitygroups/",
    ),
    Endpoint("service-list", "web", "get", "/t/{tenant}/services/", "read", 200),
    Endpoint(
        "service-list:post",
        "web",
        "post",
        "/t/{tenant}/services/",
        "operate",
        302,
        data={"name": "made", "service_type": "ClusterIP", "selector": "app=web", "port": "80"}
        | {"protocol": "TCP"},
        audit="service.create",
        done=service_created,
        redirect="/t/{tenant}/services/made/",
    ),
    Endpoint("service-detail", "web", "get", "/t/{tenant}/services/spare/", "read", 200),
    Endpoint(
        "service-update",
        "web",
        "post",
        "/t/{tenant}/services/spare/edit/",
        "operate",
        302,
        data={"service_type": "NodePort", "protocol": "TCP", "port": "80"},
        audit="service.update",
        done=spare_service_nodeport,
        redirect="/t/{tenant}/services/spare/",
    ),
    Endpoint(
        "service-delete",
        "web",
        "post",
        "/t/{tenant}/services/spare/delete/",
        "operate",
        302,
        audit="service.delete",
        done=spare_service_deleting,
        redirect="/t/{tenant}/services/",
    ),
    # --- API ---
    Endpoint("api-schema", "api", "get", "/api/v1/schema/", "public", 200),
    Endpoint(
        "securitygroup-api-list",
        "api",
        "get",
        "/api/v1/tenants/{tenant}/securitygroups/",
        "read",
        200,
    ),
    Endpoint(
        "securitygroup-api-list:post",
        "api",
        "post",
        "/api/v1/tenants/{tenant}/securitygroups/",
        "operate",
        202,
        data={"metadata": {"name": "made"}},
        audit="securitygroup.create",
        done=group_created,
    ),
    Endpoint(
        "securitygroup-api-detail",
        "api",
        "get",
        "/api/v1/tenants/{tenant}/securitygroups/spare/",
        "read",
        200,
    ),
    Endpoint(
        "securitygroup-api-detail:patch",
        "api",
        "patch",
        "/api/v1/tenants/{tenant}/securitygroups/spare/",
        "operate",
        202,
        data={"spec": {"description": "patched"}},
        audit="securitygroup.update",
        done=spare_group_patched,
    ),
    Endpoint(
        "securitygroup-api-detail:delete",
        "api",
        "delete",
        "/api/v1/tenants/{tenant}/securitygroups/spare/",
        "manage",
        204,
        audit="securitygroup.delete",
        done=spare_group_deleted,
    ),
    Endpoint("network-api-list", "api", "get", "/api/v1/tenants/{tenant}/networks/", "read", 200),
    Endpoint("service-api-list", "api", "get", "/api/v1/tenants/{tenant}/services/", "read", 200),
    Endpoint(
        "service-api-list:post",
        "api",
        "post",
        "/api/v1/tenants/{tenant}/services/",
        "operate",
        202,
        data={"metadata": {"name": "made"}, "spec": SERVICE},
        audit="service.create",
        done=service_created,
    ),
    Endpoint(
        "service-api-detail",
        "api",
        "get",
        "/api/v1/tenants/{tenant}/services/spare/",
        "read",
        200,
    ),
    Endpoint(
        "service-api-detail:patch",
        "api",
        "patch",
        "/api/v1/tenants/{tenant}/services/spare/",
        "operate",
        202,
        data={"spec": {"selector": {"app": "api"}}},
        audit="service.update",
        done=spare_service_patched,
    ),
    Endpoint(
        "service-api-detail:delete",
        "api",
        "delete",
        "/api/v1/tenants/{tenant}/services/spare/",
        "operate",
        202,
        audit="service.delete",
        done=spare_service_deleting,
    ),
    Endpoint("backup-api-list", "api", "get", "/api/v1/tenants/{tenant}/backups/", "read", 200),
    Endpoint(
        "network-api-list:post",
        "api",
        "post",
        "/api/v1/tenants/{tenant}/networks/",
        "operate",
        202,
        data=NETWORK,
        audit="network.create",
        done=network_created,
    ),
    Endpoint(
        "network-api-detail", "api", "get", "/api/v1/tenants/{tenant}/networks/spare/", "read", 200
    ),
    Endpoint(
        "network-api-detail:delete",
        "api",
        "delete",
        "/api/v1/tenants/{tenant}/networks/spare/",
        "manage",
        202,
        audit="network.delete",
        done=spare_deleting,
    ),
    Endpoint("api-docs", "api", "get", "/api/v1/docs/", "public", 200),
    Endpoint("tenant-list", "api", "get", "/api/v1/tenants/", "login", 200),
    Endpoint("tenant-detail", "api", "get", "/api/v1/tenants/{tenant}/", "read", 200),
    Endpoint("tenant-quota", "api", "get", "/api/v1/tenants/{tenant}/quota/", "read", 200),
    Endpoint(
        "tenant-quota:patch",
        "api",
        "patch",
        "/api/v1/tenants/{tenant}/quota/",
        "staff",
        200,
        data={"spec": {"hard": {"vms": 7}}},
        audit="quota.set",
        done=quota_changed,
    ),
    Endpoint("tenant-member-list", "api", "get", "/api/v1/tenants/{tenant}/members/", "read", 200),
    Endpoint("tenant-usage", "api", "get", "/api/v1/tenants/{tenant}/usage/", "read", 200),
    Endpoint(
        "quota-request-api-list",
        "api",
        "get",
        "/api/v1/tenants/{tenant}/quota/requests/",
        "read",
        200,
    ),
    Endpoint(
        "quota-request-api-list:post",
        "api",
        "post",
        "/api/v1/tenants/{tenant}/quota/requests/",
        "manage",
        201,
        data=QUOTA_REQUEST,
        audit="quota_request.create",
        done=quota_requested,
    ),
    Endpoint(
        "tenant-member-list:post",
        "api",
        "post",
        "/api/v1/tenants/{tenant}/members/",
        "manage",
        201,
        data={"metadata": {"name": "erin"}, "spec": {"role": "viewer"}},
        audit="member.add",
        done=erin_added,
    ),
    Endpoint("tenant-event-list", "api", "get", "/api/v1/tenants/{tenant}/events/", "read", 200),
    Endpoint("image-api-list", "api", "get", "/api/v1/tenants/{tenant}/images/", "read", 200),
    Endpoint(
        "image-api-list:post",
        "api",
        "post",
        "/api/v1/tenants/{tenant}/images/",
        "operate",
        202,
        data={"metadata": {"name": "imported"}, "spec": {"source": {"url": IMPORT["url"]}}},
        audit="image.import",
        done=image_imported,
    ),
    Endpoint(
        "image-api-detail", "api", "get", "/api/v1/tenants/{tenant}/images/golden/", "read", 200
    ),
    Endpoint(
        "image-api-detail:delete",
        "api",
        "delete",
        "/api/v1/tenants/{tenant}/images/golden/",
        "manage",
        204,
        audit="image.delete",
        done=golden_deleted,
    ),
    Endpoint("volume-api-list", "api", "get", "/api/v1/tenants/{tenant}/volumes/", "read", 200),
    Endpoint("vmpool-api-list", "api", "get", "/api/v1/tenants/{tenant}/vmpools/", "read", 200),
    Endpoint(
        "autoscaler-api-list", "api", "get", "/api/v1/tenants/{tenant}/autoscalers/", "read", 200
    ),
    Endpoint(
        "tenant-member-detail",
        "api",
        "get",
        "/api/v1/tenants/{tenant}/members/{target}/",
        "read",
        200,
    ),
    Endpoint(
        "tenant-member-detail:patch",
        "api",
        "patch",
        "/api/v1/tenants/{tenant}/members/{target}/",
        "manage",
        200,
        data={"spec": {"role": "operator"}},
        audit="member.set_role",
        done=target_promoted,
    ),
    Endpoint(
        "tenant-member-detail:delete",
        "api",
        "delete",
        "/api/v1/tenants/{tenant}/members/{target}/",
        "manage",
        204,
        audit="member.remove",
        done=target_removed,
    ),
]


def expected(endpoint: Endpoint, who: str) -> int | str:
    """The outcome the table demands: a status, or "login" for a redirect to sign in."""
    if who in ALLOWED[endpoint.needs]:
        return endpoint.ok
    if who == "anonymous":
        return "login" if endpoint.surface == "web" else 401
    if who in {"outsider", "absent"}:
        return 404  # another tenant's things do not exist for you; never 403
    return 403


CASES = [
    pytest.param(endpoint, actor, tenant, id=f"{endpoint.name}-{actor}-{tenant or 'none'}")
    for endpoint in ENDPOINTS
    for tenant in (TENANTS if endpoint.scoped else [None])
    for actor in ACTORS
]


def make_matrix():
    """The demo data plus gus, a viewer of globex (a member the globex requests act on)."""
    demo = make_demo()
    User = get_user_model()
    demo.gus = User.objects.create_user("gus", "gus@example.com", "x")
    services.membership_add(actor=None, tenant=demo.globex, user=demo.gus, role=Role.VIEWER)
    from monitoring import crypto

    KubernetesCluster.objects.create(  # Services need a cluster (nobody reaches this one)
        name="fake",
        server="https://127.0.0.1:1",
        kubeconfig_encrypted=crypto.encrypt("clusters: []", context=crypto.KUBECONFIG),
        default=True,
    )
    for tenant in (demo.acme, demo.globex):  # an imported image each, for image endpoints
        Image.objects.create(
            name="golden", tenant=tenant, public=False, kind="disk", disk_path="/x", source="url"
        )
        network_services.network_create(actor=None, tenant=tenant, name="spare", cidr="10.9.0.0/24")
        group_services.group_create(actor=None, tenant=tenant, name="spare")
        service_services.service_create(
            actor=None, tenant=tenant, name="spare", selector={"app": "web"}, ports=[{"port": 80}]
        )
    return demo


@pytest.fixture(scope="module")
def matrix_data(django_db_setup, django_db_blocker):
    """Made once for the ~1200 tests here (see ``shared_data``): each test's changes are
    rolled back to it, as if each had made its own."""
    yield from shared_data(django_db_blocker, make_matrix)


@pytest.fixture
def matrix(matrix_data, db):
    return copy.deepcopy(matrix_data)


def client_for(surface: str, user) -> Client:
    client = Client() if surface == "web" else APIClient()
    if user is not None:
        client.force_login(user)
    return client


def user_of(demo, actor: str):
    return {
        "anonymous": None,
        "erin": demo.outsider,
        "carol": demo.carol,
        "bob": demo.bob,
        "alice": demo.alice,
        "dave": demo.dave,
        "admin": demo.admin,
    }[actor]


def send(client, endpoint: Endpoint, url: str):
    call = getattr(client, endpoint.method)
    if endpoint.method == "get":
        return call(url)
    if endpoint.surface == "web":
        return call(url, endpoint.data)
    if endpoint.data:
        return call(url, json.dumps(endpoint.data), content_type="application/json")
    return call(url)


def snapshot() -> dict:
    """Everything a write in the matrix could touch."""
    return {
        "members": sorted(Membership.objects.values_list("tenant__slug", "user__username", "role")),
        "quotas": sorted(
            Quota.objects.values_list("tenant__slug", "cpu", "memory", "storage", "vms", "pods")
        ),
        "tenants": sorted(Tenant.objects.values_list("slug", flat=True)),
        "images": sorted(Image.objects.values_list("tenant__slug", "name", "phase")),
        "networks": sorted(Network.objects.values_list("tenant__slug", "name", "phase")),
        "networks_used": sorted(Quota.objects.values_list("tenant__slug", "used_networks")),
        "security_groups": sorted(
            SecurityGroup.objects.values_list(
                "tenant__slug", "name", "description", "resource_version"
            )
        ),
        "services": sorted(
            Service.objects.values_list("tenant__slug", "name", "phase", "resource_version")
        ),
        "storage_used": sorted(Quota.objects.values_list("tenant__slug", "used_storage")),
        "quota_requests": sorted(QuotaRequest.objects.values_list("tenant__slug", "state")),
    }


@pytest.mark.django_db
@pytest.mark.parametrize(("endpoint", "actor", "tenant"), CASES)
def test_every_actor_gets_exactly_what_the_permission_table_allows(matrix, endpoint, actor, tenant):
    user = user_of(matrix, actor)
    url = endpoint.url(tenant)
    want = expected(endpoint, standing(actor, tenant))
    before = snapshot()
    audit_before = set(AuditLog.objects.values_list("pk", flat=True))

    response = send(client_for(endpoint.surface, user), endpoint, url)

    if want == "login":
        assert response.status_code == 302, response.content[:300]
        assert response.url.startswith("/login/?next=")
    else:
        assert response.status_code == want, (
            f"{actor} {endpoint.method.upper()} {url}: "
            f"{response.status_code} {response.content[:300]!r}"
        )
    if want == 302:
        assert response.url == endpoint.redirect.format(tenant=tenant)
    if want == 404 and tenant in DISPLAY_NAME:
        # Not even the tenant's display name leaks through the error page.
        assert DISPLAY_NAME[tenant].encode() not in response.content
    if endpoint.surface == "api" and want in {401, 403, 404}:
        assert response["Content-Type"] == "application/problem+json"

    new_audit = AuditLog.objects.exclude(pk__in=audit_before)
    if not endpoint.audit:
        assert snapshot() == before, "a read changed something"
        assert not new_audit.filter(outcome=AuditOutcome.SUCCESS).exists()
    elif want == endpoint.ok:
        assert endpoint.done(tenant), "the request succeeded but its effect is missing"
        row = new_audit.get(action=endpoint.audit, outcome=AuditOutcome.SUCCESS)
        assert row.actor == user
        assert row.actor_name == user.username
        assert row.tenant.slug == tenant
        assert row.source_ip == "127.0.0.1"
    else:
        assert snapshot() == before, "a refused write changed something"
        assert not new_audit.filter(outcome=AuditOutcome.SUCCESS).exists()


def _route_names(patterns, prefix: str = "") -> set[str]:
    names: set[str] = set()
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            if pattern.namespace == "admin":
                continue
            names |= _route_names(pattern.url_patterns)
        elif isinstance(pattern, URLPattern) and pattern.name:
            names.add(pattern.name)
    return names


# Routes outside the tenant role model, each covered by its own test below or elsewhere.
OUTSIDE_MATRIX = {
    "login": "sign-in page, public",
    "logout": "sign-out, public",
    "healthz": "load balancer probe, public",
    **{
        name: "sign-in flows and the user's own second factors (django-allauth); "
        "tests/portal/identity/"
        for name in (
            "account_login",
            "account_logout",
            "account_inactive",
            "account_reauthenticate",
            "socialaccount_login_cancelled",
            "socialaccount_login_error",
            "socialaccount_signup",
            "openid_connect_login",
            "openid_connect_callback",
            "mfa_index",
            "mfa_authenticate",
            "mfa_reauthenticate",
            "mfa_activate_totp",
            "mfa_deactivate_totp",
            "mfa_view_recovery_codes",
            "mfa_generate_recovery_codes",
            "mfa_download_recovery_codes",
            "mfa_add_webauthn",
            "mfa_list_webauthn",
            "mfa_remove_webauthn",
            "mfa_edit_webauthn",
            "mfa_reauthenticate_webauthn",
        )
    },
    "token-revoke": "owner-only; test_only_the_owner_can_revoke_a_token",
    "preferences-confirmations": "the user's own settings; tests/tenants/test_preferences.py",
    **{
        name: "the user's own notifications; tests/monitoring/test_notifications.py"
        for name in (
            "notification-list",
            "notification-read",
            "notification-open",
            "notification-preferences",
        )
    },
    "preferences-theme": "the user's own settings; tests/tenants/test_preference_theme.py",
    "preferences-language": "the user's own settings (or a signed-out visitor's cookie); "
    "tests/portal/test_i18n.py",
    "search": "finds only the user's tenants' objects; tests/portal/test_search.py",
    "javascript-catalog": "the translations static/js uses, public like static files",
    **{
        name: "viewer reads, outsider 404: tests/compute/test_views_manifest.py"
        for name in ("vm-manifest", "workload-manifest")
    },
    "webhook-add": "own role matrix in tests/monitoring/test_webhook_views.py",
    "webhook-delete": "own role matrix in tests/monitoring/test_webhook_views.py",
    **{
        name: "own role matrix in tests/compute/test_console_tickets.py"
        for name in ("vm-console", "vm-serial", "vm-api-console")
    },
    **{
        name: "own role matrix in tests/compute/test_views_vms.py and test_api_vms.py"
        for name in (
            "vm-create",
            "vm-detail",
            "vm-action",
            "vm-labels",
            "vm-api-list",
            "vm-api-detail",
            *(f"vm-api-{a}" for a in ("start", "stop", "force-stop", "pause", "resume", "reboot")),
        )
    },
    **{
        name: "own role matrix in tests/compute/test_views_migrations_access.py"
        for name in (
            "vm-migrate",
            "migration-cancel",
            "staff-migrations",
            "staff-migrations-state",
            "host-drain",
        )
    },
    **{
        name: "own role matrix in tests/compute/test_api_migrations.py"
        for name in (
            "vm-api-migrate",
            "migration-api-list",
            "migration-api-detail",
            "migration-api-cancel",
        )
    },
    **{
        name: "own role matrix (volumes need a host) in tests/compute/test_api_volumes.py "
        "and test_views_volumes.py"
        for name in (
            "volume-create",
            "volume-detail",
            "volume-action",
            "vm-volume-attach",
            "volume-api-detail",
            "volume-api-attach",
            "volume-api-detach",
            "volume-api-resize",
        )
    },
    **{
        name: "own role matrix (interfaces need a VM) in tests/compute/test_api_networks.py"
        for name in (
            "vm-nic-add",
            "vm-nic-remove",
            "vm-nic-groups",
            "nic-api-list",
            "nic-api-detail",
        )
    },
    "securitygroup-rule-remove": "own role matrix (a rule's id) in "
    "tests/compute/test_api_security_groups.py",
    **{
        name: "own role matrix (snapshots need a volume on a host) in "
        "tests/compute/test_api_snapshots.py and test_views_snapshots.py"
        for name in (
            "volume-clone",
            "snapshot-take",
            "snapshot-action",
            "volume-api-clone",
            "snapshot-api-list",
            "snapshot-api-detail",
            "snapshot-api-restore",
            "vm-snapshot-api-list",
            "vm-snapshot-api-detail",
            "vm-snapshot-api-restore",
            "vm-snapshot-take",
            "vm-snapshot-action",
            "volume-snapshot-schedule-api",
            "vm-snapshot-schedule-api",
            "volume-snapshot-schedule",
            "vm-snapshot-schedule",
            "vm-clone",
            "vm-api-clone",
        )
    },
    **{
        name: "own role matrix (backups need a VM snapshot) in "
        "tests/compute/test_api_backups.py and test_views_backups.py"
        for name in (
            "backup-create",
            "volume-backup-create",
            "backup-restore",
            "backup-restore-disk",
            "backup-delete",
            "backup-api-detail",
            "backup-api-restore",
            "backup-api-restore-disk",
        )
    },
    **{
        name: "own role matrix (pools need a host and an image) in "
        "tests/compute/test_api_pools.py and test_views_pools.py"
        for name in (
            "vmpool-create",
            "vmpool-detail",
            "vmpool-scale",
            "vmpool-update",
            "vmpool-delete",
            "vmpool-autoscaler",
            "vmpool-api-detail",
            "vmpool-api-scale",
            "autoscaler-api-detail",
        )
    },
    "workload-autoscaler": "own role matrix (a Deployment's autoscaler form) in "
    "tests/compute/test_views_workload_autoscaler.py",
    "vm-metrics": "own role matrix in tests/monitoring/test_metrics_views.py",
    "metrics": "token / allow-list, tests/monitoring/test_metrics_views.py",
    "image-api-upload": "tus upload roles in tests/compute/images/test_api_images.py",
    **{
        name: "own role matrix in tests/compute/test_views_workloads.py, test_api_workloads.py "
        "and test_api_workload_groups.py"
        for name in (
            "workload-create",
            "workload-detail",
            "workload-labels",
            "workload-groups",
            "workload-logs",
            "workload-action",
            "workload-api-list",
            "workload-api-detail",
            "workload-api-scale",
            "workload-api-restart",
        )
    },
}


def test_the_matrix_covers_every_named_route_in_the_url_map():
    routes = _route_names(get_resolver().url_patterns)
    covered = {e.name.split(":")[0] for e in ENDPOINTS} | set(OUTSIDE_MATRIX)
    assert routes - covered == set(), "add the new routes to ENDPOINTS in this matrix"
    assert covered - routes == set(), "the matrix names routes that no longer exist"


# --- What each actor sees in lists ----------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("actor", "slugs"),
    [
        ("erin", []),
        ("carol", ["acme"]),
        ("bob", ["acme"]),
        ("alice", ["acme"]),
        ("dave", ["globex"]),
        ("admin", ["acme", "globex"]),
    ],
)
def test_tenant_list_and_dashboard_show_only_the_tenants_you_belong_to(matrix, actor, slugs):
    user = user_of(matrix, actor)
    body = client_for("api", user).get("/api/v1/tenants/").json()
    assert [item["metadata"]["name"] for item in body["items"]] == slugs
    assert body["count"] == len(slugs)

    page = client_for("web", user).get("/").content.decode()
    for slug, name in DISPLAY_NAME.items():
        assert (f'data-testid="tenant-card-{slug}"' in page) is (slug in slugs)
        assert (name in page) is (slug in slugs)


@pytest.mark.django_db
def test_another_tenant_looks_exactly_like_a_tenant_that_does_not_exist(matrix):
    client = client_for("api", matrix.dave)
    for path in ["/", "/quota/", "/members/", "/members/carol/"]:
        foreign = client.get(f"/api/v1/tenants/acme{path}")
        missing = client.get(f"/api/v1/tenants/initech{path}")
        assert foreign.status_code == missing.status_code == 404
        assert json.loads(foreign.content.decode().replace("acme", "initech")) == missing.json()


# --- Refusals are audited ---------------------------------------------------------------
@pytest.mark.django_db
def test_a_viewer_refused_a_member_change_in_the_browser_leaves_a_denied_audit_row(matrix):
    response = client_for("web", matrix.carol).post("/t/acme/members/bob/", {"remove": "1"})
    assert response.status_code == 403
    row = AuditLog.objects.get(outcome=AuditOutcome.DENIED)
    assert (row.actor, row.tenant, row.action) == (matrix.carol, matrix.acme, "member.manage")
    assert row.source_ip == "127.0.0.1"
    assert _role("acme", "bob") == Role.OPERATOR


@pytest.mark.django_db
def test_a_tenant_admin_refused_a_quota_change_leaves_a_denied_audit_row(matrix):
    response = client_for("api", matrix.alice).patch(
        "/api/v1/tenants/acme/quota/", {"spec": {"hard": {"vms": 500}}}, format="json"
    )
    assert response.status_code == 403
    assert Quota.objects.get(tenant=matrix.acme).vms != 500
    row = AuditLog.objects.get(outcome=AuditOutcome.DENIED)
    assert (row.actor, row.tenant, row.action) == (matrix.alice, matrix.acme, "quota.set")
    assert row.source_ip == "127.0.0.1"


# --- Role changes apply to the very next request --------------------------------------
@pytest.mark.django_db
def test_a_removed_member_loses_access_on_the_next_request(matrix):
    carol = client_for("web", matrix.carol)
    assert carol.get("/t/acme/").status_code == 200
    admin = client_for("api", matrix.alice)
    assert admin.delete("/api/v1/tenants/acme/members/carol/").status_code == 204
    assert carol.get("/t/acme/").status_code == 404
    assert carol.get("/t/acme/members/").status_code == 404


@pytest.mark.django_db
def test_a_viewer_promoted_to_admin_can_manage_members_on_the_next_request(matrix):
    carol = client_for("web", matrix.carol)
    assert carol.post("/t/acme/members/add/", {"username": "erin"}).status_code == 403
    admin = client_for("api", matrix.alice)
    response = admin.patch(
        "/api/v1/tenants/acme/members/carol/", {"spec": {"role": "admin"}}, format="json"
    )
    assert response.status_code == 200
    assert carol.post("/t/acme/members/add/", {"username": "erin"}).status_code == 302
    assert _role("acme", "erin") == Role.VIEWER


# --- Pages outside the tenant model ------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("actor", ["erin", "carol", "bob", "alice", "dave"])
def test_django_admin_is_closed_to_everyone_but_platform_staff(matrix, actor):
    client = client_for("web", user_of(matrix, actor))
    for url in ["/admin/", "/admin/tenants/tenant/", "/admin/tenants/auditlog/"]:
        response = client.get(url)
        assert response.status_code == 302
        assert response.url.startswith("/admin/login/")
    assert client_for("web", matrix.admin).get("/admin/tenants/tenant/").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("actor", ["anonymous", "erin", "carol", "bob", "dave", "admin"])
def test_only_the_owner_can_revoke_a_token(matrix, actor):
    token, _ = services.token_create(user=matrix.alice, name="ci")
    client = client_for("web", user_of(matrix, actor))
    response = client.post(f"/profile/tokens/{token.key_id}/revoke/")
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked is None
    assert not AuditLog.objects.filter(action="token.revoke").exists()

    owner = client_for("web", matrix.alice)
    assert owner.post(f"/profile/tokens/{token.key_id}/revoke/").status_code == 302
    assert ApiToken.objects.get(pk=token.pk).revoked is not None
    row = AuditLog.objects.get(action="token.revoke")
    assert row.actor == matrix.alice
    assert row.source_ip == "127.0.0.1"

"""Property-based fuzzing of every API operation with schemathesis, from /api/v1/schema/.

The portal runs as it does in production (the ASGI application under uvicorn, PostgreSQL,
token authentication) and schemathesis sends, per operation, schema-valid and
schema-invalid requests: bodies, query strings, headers and path parameters. Every
answer must be below 500 and match the schema: a documented status code, content type,
headers and body. alice, a tenant admin, calls with her API token in her tenant; names,
usernames, images and sizes are drawn from real objects part of the time (so that writes
get past the 404s into the services) and generated otherwise. A 500 found here gets its
own focused regression test (tests/portal/test_bad_input.py).

Deterministic for CI: a fixed seed, derandomized generation, no example database, and a
bounded number of examples per operation (``ISOTOPE_FUZZ_EXAMPLES``, default 25).
"""

from __future__ import annotations

import json
import os

import pytest
import requests
import schemathesis
from django.db import connection, transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from compute import scheduler
from compute.choices import MigrationPhase
from compute.models import (
    Host,
    KubernetesCluster,
    Migration,
    Snapshot,
    VirtualMachine,
    Volume,
)
from compute.services import autoscalers as autoscaler_services
from compute.services import networks as network_services
from compute.services import pools as pool_services
from compute.services import snapshots as snapshot_services
from compute.services import vms as vm_services
from compute.services import volumes as volume_services
from compute.services import workloads as workload_services
from monitoring import crypto
from tenants import services as tenant_services
from tests.compute.conftest import NODE_XML
from tests.flush import filled_tables

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]

EXAMPLES = int(os.environ.get("ISOTOPE_FUZZ_EXAMPLES", "25"))
SEED = 20261201
REJECTIONS = [400, 401, 403, 404, 405, 406, 409, 412, 415, 422, 428, 429]
MIGRATION_UID = "00000000-0000-4000-8000-000000000001"
# Values of objects that exist (or names free to create), drawn with a probability.
KNOWN = {
    "name": ["web1", "web", "stopped1"],
    "username": ["bob", "carol", "alice", "erin"],
    "uid": [MIGRATION_UID],
    "snapshot": ["s1"],
    "nic": ["nic0"],
    "network": ["web1", "default"],
    "cidr": ["10.78.0.0/24", "192.168.9.0/29"],
    # Free names for new VMs and workloads; erin is a user who is no member yet.
    "new_name": ["fuzz-a", "fuzz-b", "fuzz-c", "erin"],
    "image": ["tiny", "nginx:1.27"],
    "flavor": ["tiny", "small"],
    "vcpus": [1, 2],
    "memory": [256, 512],
    "replicas": [0, 1, 2],
}


# The world's rows, copied aside once (see ``fuzz_world``).
WORLD_SCHEMA = "fuzz_world"
HOST = {"name": "node-a", "cpus": 64, "memory_mib": 256 * 1024}


@pytest.fixture(scope="module")
def world_copy(django_db_setup, django_db_blocker):
    """What the first operation's test built: the names of the tables it filled (their
    rows copied into the schema ``fuzz_world``) and the API keys. Dropped at the end."""
    saved: dict = {}
    yield saved
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA IF EXISTS {WORLD_SCHEMA} CASCADE")


@pytest.fixture
def fuzz_world(live_url, world_copy, request, tmp_path):
    """The world every operation starts from, the same for each: built by the first
    test (``build_world``), then restored from its copy for the others (a few seconds
    less per operation than building it again).

    Every test still gets a fresh one: the previous test's rows were flushed (the live
    server's transactional database), the copied rows are put back with their own ids
    and timestamps, and the host moves to a new libvirt test-driver instance, as
    ``make_host`` would give it."""
    if not world_copy:
        for made_with_the_world in ("tiny_image", "flavors"):
            request.getfixturevalue(made_with_the_world)
        world = build_world(request.getfixturevalue("demo"), request.getfixturevalue("make_host"))
        world_copy.update(tables=_copy_aside(), **world)
    else:
        _restore(world_copy["tables"])
        path = tmp_path / f"{HOST['name']}.xml"
        path.write_text(NODE_XML.format(cpus=HOST["cpus"], memory_kib=HOST["memory_mib"] * 1024))
        Host.objects.filter(name=HOST["name"]).update(uri=f"test://{path}")
    return {
        "url": live_url,
        "token": world_copy["token"],
        "staff_token": world_copy["staff_token"],
    }


def _copy_aside() -> list[str]:
    """Copy every filled table into ``fuzz_world``; return their names."""
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        tables = filled_tables(cursor)
        cursor.execute(f"DROP SCHEMA IF EXISTS {WORLD_SCHEMA} CASCADE")
        cursor.execute(f"CREATE SCHEMA {WORLD_SCHEMA}")
        for table in tables:
            cursor.execute(
                f"CREATE TABLE {WORLD_SCHEMA}.{quote(table)} AS SELECT * FROM {quote(table)}"
            )
    return tables


def _restore(tables: list[str]) -> None:
    """Put the copied rows back (the hosts' placed counters recounted). The flush after
    the previous test emptied every table but those its post-migrate signal refills
    (content types, permissions); those are emptied here so that exactly the copied rows
    are there. Foreign keys are checked at commit (Django's are deferrable), and
    sequences only ever went up since the copy, so new rows get fresh ids."""
    quote = connection.ops.quote_name
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(quote(table) for table in tables)} CASCADE")
        for table in tables:
            cursor.execute(
                f"INSERT INTO {quote(table)} SELECT * FROM {WORLD_SCHEMA}.{quote(table)}"
            )
        # The hosts' rows came back with their placed counters, and the VMs' inserts
        # counted again on top (compute migration 0034's triggers): count afresh.
        scheduler.hosts_recount()


def build_world(demo, make_host) -> dict:
    """The demo tenants with a host, a cluster, VMs, a workload and a migration record;
    alice (tenant admin of acme) calls with an API token, platform staff for quotas."""
    make_host(HOST["name"], cpus=HOST["cpus"], memory_mib=HOST["memory_mib"])
    KubernetesCluster.objects.create(
        name="fake",
        server="https://127.0.0.1:1",
        kubeconfig_encrypted=crypto.encrypt("clusters: []", context=crypto.KUBECONFIG),
        default=True,
    )
    for name in ("web1", "stopped1"):
        vm_services.vm_create(
            actor=demo.alice, tenant=demo.acme, name=name, image="tiny", vcpus=1, memory_mib=256
        )
    VirtualMachine.objects.filter(name="web1").update(phase="Running")
    web1 = VirtualMachine.objects.get(name="web1")
    Migration.objects.create(
        uid=MIGRATION_UID,
        tenant=demo.acme,
        vm=web1,
        vm_name=web1.name,
        source=web1.host,
        phase=MigrationPhase.PENDING,
        reason="Queued",
    )
    VirtualMachine.objects.filter(name="stopped1").update(phase="Stopped")
    workload_services.workload_create(
        actor=demo.alice, tenant=demo.acme, name="web", image="nginx:1.27", replicas=1
    )
    # A Ready volume under a known name, so that volume writes reach the services.
    volume = volume_services.volume_create(
        actor=demo.alice, tenant=demo.acme, name="web1", size_gib=1
    )
    Volume.objects.filter(pk=volume.pk).update(phase="Ready", capacity_gib=1)
    # ... with a Ready snapshot, so that restore and delete reach theirs.
    snapshot = snapshot_services.snapshot_create(
        actor=demo.alice, volume=Volume.objects.get(pk=volume.pk), name="s1"
    )
    Snapshot.objects.filter(pk=snapshot.pk).update(phase="Ready")
    # A network named like the VM (path.name) with an interface of web1 on it.
    network_services.network_create(
        actor=demo.alice, tenant=demo.acme, name="web1", cidr="10.77.0.0/24"
    )
    network_services.nic_create(actor=demo.alice, vm=web1, network="web1")
    # A VM pool "web" with an autoscaler "web" (both reached through path.name).
    pool = pool_services.pool_create(
        actor=demo.alice, tenant=demo.acme, name="web", image="tiny", vcpus=1, memory_mib=256
    )
    autoscaler_services.autoscaler_create(
        actor=demo.alice, tenant=demo.acme, pool=pool, max_replicas=3, target=50
    )
    _, key = tenant_services.token_create(user=demo.alice, name="fuzz")
    _, staff_key = tenant_services.token_create(user=demo.admin, name="fuzz")
    return {"token": key, "staff_token": staff_key}


def _load_schema() -> schemathesis.BaseSchema:
    """The schema that ``/api/v1/schema/`` serves (the same generator; a test below checks
    that they are equal), loaded at collection so that each operation is its own test."""
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {
                "max-examples": EXAMPLES,
                "deterministic": True,
                "database": "none",
                "mode": "all",
            },
            # Schema-valid is not always acceptable: an image must exist, a name must be a
            # DNS label, a VM must be stopped to resize. Those are 4xx answers that the
            # other checks hold to the schema, so "valid data accepted" is left out.
            "checks": {
                "positive_data_acceptance": {"enabled": False},
                # tus answers a wrong or missing Tus-Resumable header with 412, as its
                # protocol says (the image upload endpoint); 4xx refusals otherwise.
                "negative_data_rejection": {"expected-statuses": REJECTIONS},
                "missing_required_header": {"expected-statuses": REJECTIONS},
            },
            # Most path parameters and some body fields come from the objects that exist,
            # so that requests get past the 404s and the image check into the services.
            "dictionaries": {key: {"values": values} for key, values in KNOWN.items()},
            "parameters": {
                # alice's tenant: the budget goes to bodies, headers, queries and names
                # (another tenant's 404 is the role matrix's business).
                "path.tenant": "acme",
                "path.name": {"dictionary": "name", "probability": 0.7},
                "path.username": {"dictionary": "username", "probability": 0.7},
                "path.uid": {"dictionary": "uid", "probability": 0.5},
                "path.snapshot": {"dictionary": "snapshot", "probability": 0.7},
                "path.nic": {"dictionary": "nic", "probability": 0.7},
                "body.spec.network": {"dictionary": "network", "probability": 0.7},
                "body.spec.cidr": {"dictionary": "cidr", "probability": 0.5},
                "body.metadata.name": {"dictionary": "new_name", "probability": 0.5},
                "body.spec.image": {"dictionary": "image", "probability": 0.7},
                "body.spec.template.image": {"dictionary": "image", "probability": 0.7},
                "body.spec.scaleTargetRef.name": {"dictionary": "name", "probability": 0.7},
                "body.spec.flavor": {"dictionary": "flavor", "probability": 0.5},
                "body.spec.vcpus": {"dictionary": "vcpus", "probability": 0.5},
                "body.spec.memoryMiB": {"dictionary": "memory", "probability": 0.5},
                "body.spec.replicas": {"dictionary": "replicas", "probability": 0.5},
                "body.replicas": {"dictionary": "replicas", "probability": 0.5},
            },
        }
    )
    return schemathesis.openapi.from_dict(served_schema(), config=config)


def served_schema() -> dict:
    from drf_spectacular.generators import SchemaGenerator

    return json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True)))


# tus upload chunks are raw bytes (compute/image_api.py ImageUploadView.patch).
schemathesis.openapi.media_type("application/offset+octet-stream", st.binary(max_size=4096))
schema = _load_schema()


def test_the_fuzzed_schema_is_the_one_served(live_url):
    response = requests.get(f"{live_url}/api/v1/schema/?format=json", timeout=30)
    assert response.status_code == 200
    assert response.json() == schema.raw_schema


@schema.parametrize()
# The world is shared by the examples of one operation on purpose: its objects change as
# the fuzzer deletes, stops and scales them, which reaches more states.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_no_request_gets_a_server_error_and_every_answer_matches_the_schema(case, fuzz_world):
    # Only platform staff change quotas: that body gets past the role check as staff.
    staff = case.operation.method.upper() == "PATCH" and case.operation.path.endswith("/quota/")
    token = fuzz_world["staff_token" if staff else "token"]
    case.call_and_validate(base_url=fuzz_world["url"], headers={"Authorization": f"Token {token}"})

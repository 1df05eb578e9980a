"""A Celery worker killed mid-load (SIGKILL to its whole process group, as a crash or an
OOM kill does) loses nothing. Two workers run as the production layout runs them (the
Procfile's ``worker`` command, each a process of its own, on this test's database and
Redis): the first is killed while it holds workload tasks, the second takes over. The
cluster reconcile (beat's task, sent here as beat sends it) applies every workload still
Pending after ISOTOPE_K8S_STUCK_SECONDS, and the tasks the dead worker had taken go back
to their queue after ISOTOPE_BROKER_VISIBILITY_TIMEOUT (kombu looks about every 100 s;
alone, that brought the one held task back after 107 s in a trial run) and run again,
harmlessly. Every workload ends Running, its Deployment made once, the quota charged
once.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import time
from decimal import Decimal

import pytest
import redis
from django.conf import settings

from compute.choices import Phase
from compute.models import Workload
from compute.services import workloads as services
from compute.tasks.kubernetes import cluster_reconcile
from portal.celery import app
from tenants.models import Quota
from tests.conftest import postgres_only, wait_for
from tests.portal.test_web_tier import ROOT, database_url_here, procfile_command

pytestmark = [pytest.mark.kubernetes, pytest.mark.django_db(transaction=True)]

COUNT = 12
QUEUES = ["default", "libvirt", "kubernetes", "monitoring", "storage"]
VISIBILITY = 10  # seconds before a dead worker's tasks are visible again
STUCK = 5  # seconds Pending before the reconcile applies a workload again


def spawn(name: str) -> subprocess.Popen:
    """The Procfile's worker command as a process group of its own."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url_here(),
        "ISOTOPE_BROKER_VISIBILITY_TIMEOUT": str(VISIBILITY),
        "ISOTOPE_K8S_STUCK_SECONDS": str(STUCK),
        "ISOTOPE_LOG_LEVEL": "WARNING",
        "CELERY_TASK_ALWAYS_EAGER": "0",
    }
    log = open(ROOT / "var" / f"test-worker-killed-{name}.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [*procfile_command("worker"), "-n", f"{name}@isotope-test"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    process.log = log
    return process


def stop(process: subprocess.Popen, sig=signal.SIGTERM) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    process.log.close()


def ready(name: str) -> bool:
    log = ROOT / "var" / f"test-worker-killed-{name}.log"
    return log.exists() and f"{name}@isotope-test ready" in log.read_text()


def held(client, workload_ids: set[int]) -> list[int]:
    """The workloads whose apply task a worker has taken and not yet acknowledged (the
    Redis transport keeps each in the ``unacked`` hash until its ack). Entries another
    test's worker left there are not this test's: kombu restores them to their queues
    on its own schedule, so their count says nothing about these tasks."""
    found = []
    for raw in client.hvals("unacked"):
        try:
            message = json.loads(raw)[0]
            headers = message.get("headers") or {}
            if headers.get("task") != "compute.tasks.kubernetes.workload_apply":
                continue
            (workload_id,) = ast.literal_eval(headers.get("argsrepr") or "()")
        except (ValueError, TypeError, SyntaxError, IndexError, AttributeError):
            continue
        if workload_id in workload_ids:
            found.append(workload_id)
    return found


def phases(tenant) -> dict[str, str]:
    return dict(Workload.objects.filter(tenant=tenant).values_list("name", "phase"))


@pytest.fixture
def broker():
    """The test Redis as the broker sees it, every worker queue empty; the test process
    sends tasks to it instead of running them in place."""
    postgres_only()
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    with app.connection_for_write() as conn:
        for queue in QUEUES:
            conn.default_channel.queue_purge(queue)
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    yield client
    app.conf.task_always_eager = eager
    client.close()


def test_a_killed_workers_tasks_run_on_the_other_and_every_workload_runs_once(
    make_tenant, kube, cluster, watcher, broker
):
    tenant = make_tenant()
    # The tasks wait in the queue before any worker runs: the first worker then takes
    # them at its own pace, and is killed the moment it holds one it has not finished
    # (a workload apply takes 100 ms or more; the kill follows within milliseconds).
    ids = set()
    for i in range(COUNT):
        workload = services.workload_create(
            actor=None,
            tenant=tenant,
            name=f"web{i}",
            image="registry.invalid/isotope/web:1",
            replicas=1,
            cpu_request="50m",
            memory_request="16Mi",
        )
        ids.add(workload.pk)
    first = spawn("w1")
    second = None
    try:
        wait_for(lambda: held(broker, ids), 60, 0.002, message="a task held")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        assert held(broker, ids)  # taken by the dead worker, not done
        assert Phase.PENDING in phases(tenant).values()

        second = spawn("w2")
        wait_for(lambda: ready("w2"), 60, 0.2, message="the second worker")
        deadline = time.monotonic() + 120
        sent = 0.0
        while set(phases(tenant).values()) != {Phase.RUNNING}:
            assert time.monotonic() < deadline, phases(tenant)
            if time.monotonic() - sent > STUCK:  # as beat sends it, on its schedule
                cluster_reconcile.delay(cluster.pk)
                sent = time.monotonic()
            time.sleep(0.5)
    finally:
        stop(first, signal.SIGKILL)
        if second is not None:
            stop(second)

    deployments = kube.apps.list_namespaced_deployment(tenant.namespace).items
    assert sorted(d.metadata.name for d in deployments) == sorted(f"web{i}" for i in range(COUNT))
    quota = Quota.objects.get(tenant=tenant)
    assert (quota.used_pods, quota.used_cpu) == (COUNT, Decimal("0.050") * COUNT)

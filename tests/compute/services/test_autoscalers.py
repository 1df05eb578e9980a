"""Autoscalers: the HPA v2 algorithm on real pools, members and metric samples.

The unit tests build a pool with the controller, mark its members Running and Ready
as the libvirt tasks would, store ``VMSample`` rows as the collector does and run the
autoscaler at chosen times (``now``) on PostgreSQL. The last test drives a pool and
its autoscaler through real Celery workers on libvirt's test driver.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from compute.choices import ConditionStatus, Phase, PoolPhase
from compute.models import Autoscaler, VirtualMachine, VMPool
from compute.services import autoscalers as services
from compute.services import pools as pool_services
from monitoring.models import Event, VMSample
from portal.exceptions import Conflict, PermissionDenied, ValidationError
from tenants.models import AuditLog, Quota
from tests.compute.services.test_pools import make_pool, members, set_phase
from tests.conftest import wait_for


def running_pool(demo, replicas: int, **kwargs) -> VMPool:
    """A pool whose members are Running and Ready (what the workers would make)."""
    pool = pool_services.pool_reconcile(make_pool(demo, replicas=replicas, **kwargs).pk)
    for vm in members(pool):
        VirtualMachine.locked(vm.pk).write_locked(
            {"phase": Phase.RUNNING, "ready": ConditionStatus.TRUE}
        )
    return pool_services.pool_reconcile(pool.pk)


def load(pool: VMPool, at, *cpu: float, memory: float = 64.0) -> None:
    """One collector sample per member (in member order), a second before ``at``."""
    for vm, value in zip(live_members(pool), cpu, strict=False):
        sample(vm, at - timedelta(seconds=1), value, memory)


def sample(vm: VirtualMachine, time, cpu: float, memory: float = 64.0) -> None:
    VMSample.objects.create(
        vm=vm,
        time=time,
        cpu_percent=cpu,
        memory_used_mib=memory,
        disk_read_bps=0,
        disk_write_bps=0,
        net_rx_bps=0,
        net_tx_bps=0,
    )


def live_members(pool) -> list[VirtualMachine]:
    return [vm for vm in members(pool) if vm.phase != Phase.DELETING]


def autoscaler(demo, pool, **settings) -> Autoscaler:
    settings.setdefault("max_replicas", 10)
    settings.setdefault("target", 50)
    return services.autoscaler_create(actor=demo.bob, tenant=demo.acme, pool=pool, **settings)


def run(scaler: Autoscaler, at) -> tuple[Autoscaler, VMPool]:
    services.autoscaler_reconcile(scaler.pk, now=at)
    scaler = Autoscaler.objects.get(pk=scaler.pk)
    return scaler, VMPool.objects.get(pk=scaler.pool_id)


pytestmark = pytest.mark.unit


def test_scale_up_is_ceil_of_replicas_times_utilisation_over_target(
    pg, demo, make_host, tiny_image
):
    make_host()
    pool = running_pool(demo, 2)
    scaler = autoscaler(demo, pool)
    now = timezone.now()
    load(pool, now, 90, 90)
    scaler, pool = run(scaler, now)
    assert pool.replicas == 4  # ceil(2 × 90 / 50)
    assert (scaler.current_metric, scaler.desired_replicas, scaler.reason) == (90.0, 4, "ScaleUp")
    assert scaler.decisions[0]["from"] == 2 and scaler.decisions[0]["to"] == 4
    event = Event.objects.get(kind="autoscaler", name="web", reason="SuccessfulRescale")
    assert event.message.startswith("New size: 4; reason: CPU utilisation 90% (target 50%)")
    assert AuditLog.objects.filter(action="vmpool.scale", actor_name="autoscaler/web").exists()
    # The chart's history: one point per run (the new size and what was measured).
    assert scaler.history == [{"t": now.timestamp(), "replicas": 4, "metric": 90.0}]
    later = now + timedelta(seconds=services.HISTORY_SECONDS + 15)
    load(pool, later, 90, 90)
    scaler, _ = run(scaler, later)
    assert [point["t"] for point in scaler.history] == [later.timestamp()]


def test_within_ten_percent_of_the_target_nothing_changes(pg, demo, make_host, tiny_image):
    make_host()
    pool = running_pool(demo, 2)
    scaler = autoscaler(demo, pool)
    now = timezone.now()
    load(pool, now, 54, 54)
    scaler, pool = run(scaler, now)
    assert pool.replicas == 2
    assert scaler.reason == "DesiredWithinRange" and scaler.decisions == []


def test_never_above_max_and_the_step_limit_applies_per_period(pg, demo, make_host, tiny_image):
    make_host()
    pool = running_pool(demo, 2)
    scaler = autoscaler(demo, pool, max_replicas=20, scale_up_pods=3, scale_up_percent=50)
    now = timezone.now()
    load(pool, now, 100, 100)
    scaler, pool = run(scaler, now)
    # ceil(2 × 100 / 50) = 4: within the step limit max(2 + 3, ceil(2 × 1.5)) = 5.
    assert pool.replicas == 4
    pool = pool_services.pool_reconcile(pool.pk)
    for vm in live_members(pool):
        VirtualMachine.locked(vm.pk).write_locked(
            {"phase": Phase.RUNNING, "ready": ConditionStatus.TRUE}
        )
    later = now + timedelta(seconds=5)
    load(pool, later, 100, 100, 100, 100)
    scaler, pool = run(scaler, later)
    # ceil(4 × 100 / 50) = 8, but within the same 15 s period only 2 + 3 = 5.
    assert (pool.replicas, scaler.reason) == (5, "ScaleUpLimit")
    scaler = services.autoscaler_update(actor=demo.bob, autoscaler=scaler, max_replicas=6)
    pool = pool_services.pool_reconcile(pool.pk)
    for vm in live_members(pool):
        VirtualMachine.locked(vm.pk).write_locked(
            {"phase": Phase.RUNNING, "ready": ConditionStatus.TRUE}
        )
    after = now + timedelta(seconds=20)
    load(pool, after, *[100] * 5)
    scaler, pool = run(scaler, after)
    assert (pool.replicas, scaler.reason) == (6, "TooManyReplicas")


def test_scale_down_waits_for_the_highest_recommendation_of_the_window(
    pg, demo, make_host, tiny_image
):
    make_host()
    pool = running_pool(demo, 4)
    scaler = autoscaler(demo, pool, min_replicas=1)
    start = timezone.now()
    load(pool, start + timedelta(seconds=10), 10, 10, 10, 10)
    scaler, pool = run(scaler, start + timedelta(seconds=10))
    # ceil(4 × 10 / 50) = 1, but 4 (the size when created) is in the window.
    assert (pool.replicas, scaler.reason) == (4, "ScaleDownStabilized")
    load(pool, start + timedelta(seconds=200), 30, 30, 30, 30)
    scaler, pool = run(scaler, start + timedelta(seconds=200))
    assert pool.replicas == 4  # recommends ceil(4 × 0.6) = 3, still held at 4
    load(pool, start + timedelta(seconds=310), 10, 10, 10, 10)
    scaler, pool = run(scaler, start + timedelta(seconds=310))
    # 4 left the window; the highest left is the 3 of second 200.
    assert (pool.replicas, scaler.reason) == (3, "ScaleDownStabilized")
    pool = pool_services.pool_reconcile(pool.pk)
    assert [vm.name for vm in live_members(pool)] == ["web-0", "web-1", "web-2"]


def test_missing_samples_count_as_busy_when_scaling_down(pg, demo, make_host, tiny_image):
    make_host()
    pool = running_pool(demo, 3)
    scaler = autoscaler(demo, pool, scale_down_window_seconds=0)
    now = timezone.now()
    load(pool, now, 20, 20)  # the third member has no sample yet
    scaler, pool = run(scaler, now)
    # Alone, 2 × 20 / 50 would give 1; with the third at 100 %: 46.7 % is within 10 %.
    assert pool.replicas == 3 and scaler.current_metric == 20.0


def test_members_not_ready_count_as_idle_when_scaling_up(pg, demo, make_host, tiny_image):
    make_host()
    pool = running_pool(demo, 2)
    pool = pool_services.pool_scale(actor=demo.bob, pool=pool, replicas=4)
    pool = pool_services.pool_reconcile(pool.pk)  # two new members, Pending
    scaler = autoscaler(demo, pool)
    now = timezone.now()
    load(pool, now, 90, 90)
    scaler, pool = run(scaler, now)
    # 90 % asks for more, but with the two booting ones at 0 %: 45 %, the other way.
    assert pool.replicas == 4 and scaler.reason == "DesiredWithinRange"


def test_no_samples_means_no_decision_and_a_warning(pg, demo, make_host, tiny_image):
    make_host()
    pool = running_pool(demo, 2)
    scaler = autoscaler(demo, pool)
    scaler, pool = run(scaler, timezone.now())
    assert pool.replicas == 2 and scaler.reason == "FailedGetMetrics"
    assert Event.objects.get(kind="autoscaler", reason="FailedGetMetrics").type == "Warning"


def test_never_above_what_the_quota_holds(pg, demo, make_host, tiny_image):
    make_host()
    Quota.objects.filter(tenant=demo.acme).update(vms=3)
    pool = running_pool(demo, 2)
    scaler = autoscaler(demo, pool)
    now = timezone.now()
    load(pool, now, 100, 100)
    scaler, pool = run(scaler, now)
    assert (pool.replicas, scaler.reason) == (3, "ScaleUpLimitedByQuota")
    assert "vms is the limit" in scaler.message


def test_memory_utilisation_is_used_memory_over_the_members_memory(pg, demo, make_host, tiny_image):
    make_host()
    pool = running_pool(demo, 2)  # 256 MiB members
    scaler = autoscaler(demo, pool, metric="memory")
    now = timezone.now()
    load(pool, now, 0, 0, memory=192)
    scaler, pool = run(scaler, now)
    assert (scaler.current_metric, pool.replicas) == (75.0, 3)  # ceil(2 × 75 / 50)


def test_min_zero_scales_to_zero_and_waits_there(pg, demo, make_host, tiny_image):
    make_host()
    pool = running_pool(demo, 2)
    scaler = autoscaler(demo, pool, min_replicas=0, scale_down_window_seconds=0)
    now = timezone.now()
    load(pool, now, 0, 0)
    scaler, pool = run(scaler, now)
    assert pool.replicas == 0
    scaler, pool = run(scaler, now + timedelta(seconds=30))
    assert (pool.replicas, scaler.reason) == (0, "ScaledToZero")


def test_utilisation_is_whole_percent_so_an_idle_pool_below_one_percent_reaches_zero(
    pg, demo, make_host, tiny_image
):
    make_host()
    pool = running_pool(demo, 2)
    scaler = autoscaler(demo, pool, min_replicas=0, scale_down_window_seconds=0, target=10)
    now = timezone.now()
    load(pool, now, 0.4, 0.9)  # an idle guest's timer ticks: 0 % as the HPA counts
    scaler, pool = run(scaler, now)
    assert (scaler.current_metric, pool.replicas) == (0.0, 0)
    assert scaler.decisions[0]["reason"] == "ScaleDown"


def test_cpu_samples_from_before_a_member_turned_ready_are_not_counted(
    pg, demo, make_host, tiny_image
):
    make_host()
    pool = running_pool(demo, 2)
    scaler = autoscaler(demo, pool, scale_down_window_seconds=0)
    now = timezone.now()
    first, second = live_members(pool)
    load(pool, now - timedelta(seconds=2), 100, 100)  # both booting flat out
    VirtualMachine.objects.filter(pk=second.pk).update(ready_changed=now - timedelta(seconds=2))
    sample(first, now - timedelta(seconds=1), 40)
    VirtualMachine.objects.filter(pk=first.pk).update(ready_changed=now - timedelta(seconds=1.5))
    scaler, pool = run(scaler, now)
    # web-0: only its 40 % after Ready; web-1: no sample since Ready, so not Ready for
    # the calculator: 40 % against 50 % asks to scale down, the unready one is ignored.
    assert scaler.current_metric == 40.0
    assert pool.replicas == 1


def test_a_degraded_pool_is_not_scaled_up(pg, demo, make_host, tiny_image):
    make_host()
    pool = running_pool(demo, 3)
    set_phase(live_members(pool)[0], Phase.STOPPED)
    pool = pool_services.pool_reconcile(pool.pk)
    assert pool.phase == PoolPhase.DEGRADED
    scaler = autoscaler(demo, pool)
    now = timezone.now()
    load(pool, now, 100, 100, 100)  # the stopped member is not measured
    scaler, pool = run(scaler, now)
    assert (pool.replicas, scaler.reason) == (3, "ScaleUpBlocked")
    assert "web-0 is Stopped" in scaler.message


def test_a_pool_whose_members_fail_to_boot_stops_scaling_up_and_says_so(
    pg, demo, make_host, tiny_image
):
    make_host()
    pool = running_pool(demo, 2)
    scaler = autoscaler(demo, pool, max_replicas=4, target=30)
    broken = live_members(pool)[1]
    set_phase(broken, Phase.FAILED, "the guest crashed while booting")
    pool = pool_services.pool_reconcile(pool.pk)  # deleted and replaced: MemberFailed
    now = timezone.now()
    # The survivor is busy; its replacement booting counts 0 %: (100 + 0) / 2 over 30 %.
    load(pool, now, 100)
    scaler, pool = run(scaler, now)
    assert (pool.replicas, scaler.reason) == (2, "ScaleUpBlocked")
    assert scaler.message.startswith("Not scaling up: members fail to boot (web-1 failed:")
    assert "the guest crashed while booting" in scaler.message
    warning = Event.objects.get(kind="autoscaler", name="web", reason="ScaleUpBlocked")
    assert warning.type == "Warning"
    # A member turning Ready after the failure shows new members boot again.
    replacement = next(vm for vm in live_members(pool) if vm.pk != live_members(pool)[0].pk)
    VirtualMachine.locked(replacement.pk).write_locked(
        {
            "phase": Phase.RUNNING,
            "ready": ConditionStatus.TRUE,
            "ready_changed": timezone.now() + timedelta(seconds=1),
        }
    )
    later = now + timedelta(seconds=30)
    load(pool, later + timedelta(seconds=2), 100, 100)
    scaler, pool = run(scaler, later + timedelta(seconds=2))
    assert (pool.replicas, scaler.decisions[0]["to"]) == (4, 4)


def test_bounds_are_applied_before_the_metric(pg, demo, make_host, tiny_image):
    make_host()
    pool = running_pool(demo, 5)
    scaler = autoscaler(demo, pool, min_replicas=1, max_replicas=3)
    scaler, pool = run(scaler, timezone.now())
    assert (pool.replicas, scaler.reason) == (3, "TooManyReplicas")


def test_bad_settings_are_refused_by_field(pg, demo, make_host, tiny_image):
    make_host()
    pool = make_pool(demo)
    with pytest.raises(ValidationError) as caught:
        services.autoscaler_create(
            actor=demo.bob,
            tenant=demo.acme,
            pool=pool,
            min_replicas=5,
            max_replicas=3,
            target=50,
        )
    assert set(caught.value.errors) == {"min_replicas"}
    with pytest.raises(ValidationError) as caught:
        services.autoscaler_create(
            actor=demo.bob, tenant=demo.acme, pool=pool, max_replicas=0, target=0, metric="io"
        )
    assert set(caught.value.errors) == {"max_replicas", "target", "metric"}
    with pytest.raises(PermissionDenied):
        services.autoscaler_create(
            actor=demo.carol, tenant=demo.acme, pool=pool, max_replicas=3, target=50
        )
    autoscaler(demo, pool)
    with pytest.raises(Conflict):
        autoscaler(demo, pool, name="second")
    assert Autoscaler.objects.count() == 1


@pytest.mark.libvirt_test_driver
def test_autoscaler_scales_a_pool_through_workers(demo, make_host, tiny_image, celery_worker):
    """A pool of 2 under load → the autoscaler's run (as beat starts it) scales it to 4
    and the controller boots the new members; idle with a 0 s window → back to min."""
    from compute.tasks.pools import autoscalers_sweep

    make_host()
    pool = make_pool(demo, replicas=2)
    wait_for(lambda: VMPool.objects.get(pk=pool.pk).ready_replicas == 2, 30)
    scaler = autoscaler(demo, pool, min_replicas=1, max_replicas=4)
    # Samples from now on: one taken before a member turned Ready (its boot) is not
    # counted, and the members have only just turned Ready.
    load(pool, timezone.now() + timedelta(seconds=1), 95, 95)
    autoscalers_sweep.delay()
    wait_for(
        lambda: VMPool.objects.get(pk=pool.pk).ready_replicas == 4,
        30,
        message="the autoscaler did not bring the pool to 4 ready members",
    )
    assert Autoscaler.objects.get(pk=scaler.pk).decisions[0]["to"] == 4
    services.autoscaler_update(actor=demo.bob, autoscaler=scaler, scale_down_window_seconds=0)
    VMSample.objects.all().delete()  # the busy minute is over
    load(VMPool.objects.get(pk=pool.pk), timezone.now() + timedelta(seconds=1), 1, 1, 1, 1)
    autoscalers_sweep.delay()
    wait_for(
        lambda: VirtualMachine.objects.filter(pool=pool).count() == 1,
        30,
        message="the autoscaler did not bring the pool back to 1",
    )
    assert VMPool.objects.get(pk=pool.pk).replicas == 1


@pytest.mark.django_db(transaction=True)
def test_a_deployments_scale_button_follows_its_autoscaler_in_the_resync_snapshot(
    demo, fake_cluster
):
    """An autoscaler sizes its Deployment: the Deployment's state is published again
    with it, so a page that resyncs (and gets the snapshot) hides Scale — and shows it
    again once the autoscaler is gone. Before, the snapshot kept the state published
    before the autoscaler, and a resyncing page put the Scale button back."""
    from compute.services import workloads as workload_services
    from monitoring import live

    workload = workload_services.workload_create(
        actor=None, tenant=demo.acme, name="shop", image="nginx:1.27", kind="Deployment"
    )

    def operator_actions() -> list[str]:
        [item] = live.state_snapshot("acme", "workload", "shop")
        return item["data"]["actionsByRole"]["operator"]

    assert "scale" in operator_actions()
    autoscaler = services.autoscaler_create(
        actor=demo.alice, tenant=demo.acme, workload=workload, max_replicas=4, target=50
    )
    assert "scale" not in operator_actions()
    services.autoscaler_delete(actor=demo.alice, autoscaler=autoscaler)
    assert "scale" in operator_actions()

"""Browser tests use the compute fixtures too (an isolated libvirt host, the tiny image,
the local Kubernetes cluster and its watch)."""

import pytest

from tests.compute.conftest import flavors, make_host, tiny_image  # noqa: F401
from tests.compute.images.conftest import file_server, image_dir  # noqa: F401, E402
from tests.compute.kubernetes.conftest import cluster, kube, make_tenant, watcher  # noqa: F401
from tests.portal.identity.conftest import (  # noqa: F401
    clean_allauth_counters,
    oidc_provider,
    sso,
)
from tests.rerun_reasons import STATE

SHOWN_VMS = 20  # the reruns' summary prints a failure's last lines


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A browser test that failed says what the database held for its VMs: a page that
    still shows Starting after its wait is a late worker when the database says Starting
    too, and a lost live message when it says Running."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed or "live_url" not in item.fixturenames:
        return
    try:
        from compute.models import VirtualMachine

        vms = [
            f"{tenant}/{name}: phase {phase}, desired {desired}, message {message!r}"
            for tenant, name, phase, desired, message in VirtualMachine.objects.order_by(
                "tenant__slug", "name"
            ).values_list("tenant__slug", "name", "phase", "desired_state", "message")
        ]
    except Exception as error:  # noqa: BLE001 - a report, not a test
        vms = [f"(not read: {error})"]
    if len(vms) > SHOWN_VMS:
        vms = [*vms[:SHOWN_VMS], f"... and {len(vms) - SHOWN_VMS} more"]
    report.sections.append((f"{STATE}: the VMs in the database", "\n".join(vms) or "(none)"))


@pytest.fixture
def axe():
    """``axe(page, label)`` fails the test on a serious or critical axe-core violation."""
    from tests.e2e.axe import assert_accessible

    return assert_accessible

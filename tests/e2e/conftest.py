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


@pytest.fixture
def axe():
    """``axe(page, label)`` fails the test on a serious or critical axe-core violation."""
    from tests.e2e.axe import assert_accessible

    return assert_accessible

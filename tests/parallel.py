"""Running the suite on several pytest-xdist workers (``-n N --dist loadgroup``).

Loaded with ``-p tests.parallel`` (pyproject.toml addopts), before pytest-django imports
the settings, so that what it sets in the environment is what the settings read.

- Each worker gets its own test database from pytest-django (``test_<name>_gw0``, ...)
  and, here, its own Redis database: worker ``gwN`` uses database index base + N + 1 of
  ``REDIS_URL``. The cache (and its throttle counters), the channel layer, the Celery
  broker and results and the live-state keys all live there, so one worker's purge,
  wipe or message never reaches another's. Redis pub/sub is server-wide, so each worker
  also has its own channel-layer prefix (``ISOTOPE_CHANNEL_PREFIX``). Subprocesses a
  test starts inherit both.
- Tests of the tiers that use the shared infrastructure (``SHARED_TIERS``), and any other
  test that signs in through the OIDC provider (``SHARED_FIXTURES``), form one group per
  infrastructure (``SHARED_GROUPS``, see ``SharedGroup``): the libvirt nodes (``qemu``,
  ``migration``), and the cluster with the OIDC provider (``kubernetes``, ``oidc``: the
  API server trusts the provider's tokens, and tests of both tiers use both). With
  ``--dist loadgroup`` each group runs on one worker, one test after another, as without
  xdist, and the two groups run side by side. A test that uses both (a QEMU guest and a
  workload) runs with the libvirt group: its objects in the cluster are in a namespace of
  its own, as every Kubernetes test's are (a tenant with a unique slug,
  ``tests/compute/kubernetes/conftest.py``).
- Every other test spreads over the workers. That includes the browser tests of the
  ``e2e`` tier that reach none of it: each worker has its own Chromium, live server,
  database and Redis database, and their libvirt hosts are test-driver instances of
  their own. (A browser test against a QEMU guest or the cluster carries that tier's
  mark too.)

Without xdist (no ``-n``, or ``-n 0``) nothing here changes anything.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from xdist.scheduler import LoadScopeScheduling  # requirements-dev.txt

LIBVIRT_NODES = "shared-libvirt-nodes"
CLUSTER_AND_PROVIDER = "shared-cluster-and-oidc-provider"
# Each group's tiers; a test with tiers of both is in the first.
SHARED_GROUPS = {LIBVIRT_NODES: ("qemu", "migration"), CLUSTER_AND_PROVIDER: ("kubernetes", "oidc")}
SHARED_TIERS = tuple(tier for tiers in SHARED_GROUPS.values() for tier in tiers)
# Fixtures of shared infrastructure that tests of other tiers use, and their group.
SHARED_FIXTURES = {"oidc_provider": CLUSTER_AND_PROVIDER}
REDIS_DATABASES = 16  # Redis's default ``databases``
_DIRECTORY_KEY = "isotope_shared_group_directory"


def worker_redis_url(url: str, worker: str) -> str:
    """``url`` moved to the Redis database of xdist worker ``worker`` ("gw0", "gw1", ...)."""
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    index = base + int(worker.removeprefix("gw")) + 1
    if index >= REDIS_DATABASES:
        raise pytest.UsageError(
            f"xdist worker {worker} would need Redis database {index}; Redis has "
            f"{REDIS_DATABASES} (0-{REDIS_DATABASES - 1}): run fewer workers"
        )
    return urlunsplit(parts._replace(path=f"/{index}"))


_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER:
    if "REDIS_URL" in os.environ:
        os.environ["REDIS_URL"] = worker_redis_url(os.environ["REDIS_URL"], _WORKER)
    # Pub/sub channels (the channel layer's groups) are not per Redis database.
    os.environ["ISOTOPE_CHANNEL_PREFIX"] = f"isotope:ch:{_WORKER}"


def _distributed(config) -> bool:
    return config.pluginmanager.hasplugin("xdist") and config.getoption("dist", "no") != "no"


def pytest_configure(config):
    if _WORKER:
        return
    if _distributed(config):
        if config.getoption("dist") != "loadgroup":
            raise pytest.UsageError(
                "run xdist with --dist loadgroup: the shared-infrastructure tiers must stay "
                f"on one worker (got --dist {config.getoption('dist')})"
            )
        config.pluginmanager.register(SharedGroup(), "isotope-shared-group")


class SharedGroup:
    """The controller's side: one group per shared infrastructure (``SHARED_GROUPS``).

    xdist's own ``xdist_group`` mark cannot be used: pytest-xdist 3.8 groups by a suffix it
    writes into ``item._nodeid``, which pytest 9 no longer reads (``item.nodeid`` comes
    from ``item._id``), so the mark schedules nothing. Instead each worker writes the ids
    of its shared-infrastructure tests and their groups to a file
    (``pytest_collection_modifyitems`` below, before it reports its collection) and the
    scheduler, which starts once every worker has reported, reads them.
    """

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="isotope-xdist-"))

    def pytest_configure_node(self, node):
        node.workerinput[_DIRECTORY_KEY] = str(self.directory)

    def pytest_xdist_make_scheduler(self, config, log):
        return SharedGroupScheduling(config, log, directory=self.directory)

    def pytest_unconfigure(self, config):
        shutil.rmtree(self.directory, ignore_errors=True)


class SharedGroupScheduling(LoadScopeScheduling):
    """``--dist loadgroup`` with a group per shared infrastructure: each group's tests go
    to one worker as a single unit of work; every other test is scheduled on its own."""

    def __init__(self, config, log=None, *, directory: Path) -> None:
        super().__init__(config, log)
        self.directory = directory
        self.shared: dict[str, str] | None = None  # node id: its group

    def schedule(self) -> None:
        if self.collection is None and self.collection_is_completed:
            # xdist hands out work by node id: items sharing one would all but one never
            # run, and nothing would say so (schemathesis's fuzz test yields one item per
            # API operation, all with the test's own id).
            collection = next(iter(self.registered_collections.values()), [])
            repeated = sorted(n for n, count in Counter(collection).items() if count > 1)
            if repeated:
                raise pytest.UsageError(
                    "xdist would run only one of the items sharing each of these node ids: "
                    + ", ".join(f"{n} ({collection.count(n)} items)" for n in repeated)
                    + ". Deselect them (-k / -m) or run without -n."
                )
        super().schedule()

    def _split_scope(self, nodeid: str) -> str:
        if self.shared is None:  # every worker has written its file by now
            self.shared = {}
            for path in self.directory.glob("*.json"):
                self.shared.update(json.loads(path.read_text()))
        return self.shared.get(nodeid, nodeid)


def shared_group(item) -> str | None:
    """The shared-infrastructure group ``item`` runs in (on one worker), or None."""
    for group, tiers in SHARED_GROUPS.items():
        if any(item.get_closest_marker(tier) for tier in tiers):
            return group
    for name in getattr(item, "fixturenames", ()):
        if name in SHARED_FIXTURES:
            return SHARED_FIXTURES[name]
    return None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    directory = getattr(config, "workerinput", {}).get(_DIRECTORY_KEY)
    if directory is None:
        return
    shared = {item.nodeid: group for item in items if (group := shared_group(item))}
    path = Path(directory) / f"{_WORKER}.json"
    partial = path.with_suffix(".part")
    partial.write_text(json.dumps(shared))
    partial.replace(path)

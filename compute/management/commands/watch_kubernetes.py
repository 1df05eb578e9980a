"""``manage.py watch_kubernetes``: watch every enabled cluster until interrupted.

The long-running process of the Procfile (``watcher``): one :class:`ClusterWatcher`
per cluster, workload phases and events from Kubernetes watches, not polling. Clusters
added later are picked up within ``--rescan`` seconds.

Leader election: any number of these may run (on different machines, for availability);
only the holder of a lease in Redis (``ISOTOPE_WATCHER_LEASE_SECONDS``, renewed every
third of it) watches, the others wait and take over within one lease when it stops or
dies. A leader that cannot renew (Redis unreachable, lease expired and taken) stops
watching at that renewal; its renewals come every third of a lease, so it stops before
a standby can take the lease unless the process itself stalls for that long.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from redis.exceptions import LockError, RedisError

from compute.models import KubernetesCluster
from compute.services.watch import ClusterWatcher
from monitoring.live import redis_client

logger = logging.getLogger(__name__)

LEASE_KEY = "isotope:watcher:leader"


class Command(BaseCommand):
    help = "Watch the Kubernetes clusters' workloads and publish their status live."

    def add_arguments(self, parser):
        parser.add_argument("--cluster", help="Only this cluster (by name).")
        parser.add_argument("--rescan", type=float, default=30.0, help="Seconds between scans.")

    def handle(self, *args, cluster=None, rescan=30.0, **options):
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        seconds = settings.ISOTOPE_WATCHER_LEASE_SECONDS
        key = LEASE_KEY + (f":{cluster}" if cluster else "")
        lease = redis_client().lock(key, timeout=seconds, thread_local=False)
        leading = False
        watchers: dict[int, ClusterWatcher] = {}
        next_scan = 0.0
        self.stdout.write("standing by for the lead")
        while not stop.is_set():
            was_leading, leading = leading, self.keep_lease(lease, leading)
            if not leading:
                for watcher in watchers.values():
                    watcher.stop()
                watchers.clear()
            elif not was_leading or time.monotonic() >= next_scan:
                self.scan(watchers, cluster)
                next_scan = time.monotonic() + rescan
            stop.wait(min(rescan, seconds / 3))
        for watcher in watchers.values():
            watcher.stop()
        if leading:
            try:
                lease.release()  # a standby takes over now, not after the lease runs out
            except (LockError, RedisError):
                pass

    def keep_lease(self, lease, leading: bool) -> bool:
        """Renew the lease we hold, or try to take it; True while we hold it."""
        try:
            if leading:
                lease.reacquire()
                return True
            if lease.acquire(blocking=False):
                self.stdout.write("leading: watching the clusters")
                return True
            return False
        except (LockError, RedisError) as error:
            if leading:
                self.stdout.write(f"lost the lead ({error}); standing by")
            return False

    def scan(self, watchers: dict[int, ClusterWatcher], cluster: str | None) -> None:
        clusters = KubernetesCluster.objects.filter(enabled=True)
        if cluster:
            clusters = clusters.filter(name=cluster)
        wanted = {c.pk: c for c in clusters}
        for pk in set(watchers) - set(wanted):
            watchers.pop(pk).stop()
        for pk, obj in wanted.items():
            if pk not in watchers:
                self.stdout.write(f"watching {obj.name} ({obj.server})")
                watchers[pk] = ClusterWatcher(obj)
                watchers[pk].start()
        if not wanted:
            self.stdout.write("no enabled Kubernetes cluster; waiting")

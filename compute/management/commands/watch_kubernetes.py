"""``manage.py watch_kubernetes``: watch every enabled cluster until interrupted.

The long-running process of the Procfile (``watcher``): one :class:`ClusterWatcher`
per cluster, workload phases and events from Kubernetes watches, not polling. Clusters
added later are picked up within ``--rescan`` seconds.
"""

from __future__ import annotations

import logging
import signal
import threading

from django.core.management.base import BaseCommand

from compute.models import KubernetesCluster
from compute.services.watch import ClusterWatcher

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Watch the Kubernetes clusters' workloads and publish their status live."

    def add_arguments(self, parser):
        parser.add_argument("--cluster", help="Only this cluster (by name).")
        parser.add_argument("--rescan", type=float, default=30.0, help="Seconds between scans.")

    def handle(self, *args, cluster=None, rescan=30.0, **options):
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        watchers: dict[int, ClusterWatcher] = {}
        while not stop.is_set():
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
            stop.wait(rescan)
        for watcher in watchers.values():
            watcher.stop()

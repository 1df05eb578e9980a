"""The cluster watch: Kubernetes changes become workload phases and portal events.

:class:`ClusterWatcher` runs one :class:`~compute.backends.kubernetes.watch.ResourceWatch`
thread per resource type (Deployments, pods and HorizontalPodAutoscalers with Isotope's
labels, Events in ``isotope-*`` namespaces) and hands what they see to
``compute.services.workloads`` (and ``compute.services.hpa``).
When the API server is gone for longer than ``ISOTOPE_K8S_UNKNOWN_AFTER`` seconds the
cluster's workloads turn ``Unknown``; after reconnecting each watch relists, so every
phase is derived again from what the server holds.

The watch writes only through ``compute.services.workloads`` (``workload_seen_*``,
``cluster_workloads_unknown``), which lock each workload's row before deriving its phase,
and through ``cluster_reachability``, which records the API server's reachability.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import close_old_connections

from compute.backends.kubernetes.backend import api_client
from compute.backends.kubernetes.watch import ResourceWatch
from compute.models import KubernetesCluster
from compute.services import clusters as cluster_services
from compute.services import hpa as hpa_services
from compute.services import workloads as workload_services

logger = logging.getLogger(__name__)

RESOURCES = ("deployments", "pods", "events", "autoscalers")


class ClusterWatcher:
    """Watches one cluster until ``stop()``; ``start()`` returns at once."""

    def __init__(self, cluster: KubernetesCluster):
        self.cluster = cluster
        self.stop_event = threading.Event()
        api = api_client(cluster_services.cluster_kubeconfig(cluster))
        self.watches = {
            name: ResourceWatch(
                api,
                name,
                self._handler(name),
                on_state=lambda state, detail, name=name: self._state(name, state, detail),
            )
            for name in RESOURCES
        }
        self.threads: list[threading.Thread] = []
        self.down_since: dict[str, float] = {}
        self.marked_unknown = False
        self._lock = threading.Lock()

    # --- handlers --------------------------------------------------------------------
    def _handler(self, resource: str):
        def handle(kind: str, info) -> None:
            close_old_connections()
            if resource == "deployments":
                workload_services.workload_seen_deployment(
                    self.cluster, info, deleted=kind == "DELETED"
                )
            elif resource == "pods":
                workload_services.workload_seen_pod(self.cluster, info, deleted=kind == "DELETED")
            elif resource == "autoscalers":
                hpa_services.autoscaler_seen(self.cluster, info, deleted=kind == "DELETED")
            elif kind != "DELETED":
                workload_services.workload_seen_event(self.cluster, info)

        return handle

    def _state(self, resource: str, state: str, detail: str) -> None:
        with self._lock:
            if state == "disconnected":
                self.down_since.setdefault(resource, time.monotonic())
                self._reachability(False, detail)
                # Relist on reconnect: phases are then derived again from the server.
                self.watches[resource].resource_version = None
            else:
                self.down_since.pop(resource, None)
                if not self.down_since:
                    self.marked_unknown = False
                    self._reachability(True, "")

    def _reachability(self, reachable: bool, detail: str) -> None:
        close_old_connections()
        cluster_services.cluster_reachability(self.cluster, reachable=reachable, message=detail)

    # --- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        for name, watch in self.watches.items():
            thread = threading.Thread(
                target=self._run, args=(watch,), name=f"watch-{self.cluster.name}-{name}"
            )
            thread.daemon = True
            thread.start()
            self.threads.append(thread)
        monitor = threading.Thread(target=self._monitor, name=f"watch-{self.cluster.name}")
        monitor.daemon = True
        monitor.start()
        self.threads.append(monitor)

    def _run(self, watch: ResourceWatch) -> None:
        try:
            watch.run(self.stop_event)
        finally:
            close_old_connections()

    def _monitor(self) -> None:
        """Turn workloads Unknown once the API server has been gone long enough."""
        grace = float(settings.ISOTOPE_K8S_UNKNOWN_AFTER)
        while not self.stop_event.wait(0.5):
            with self._lock:
                since = min(self.down_since.values()) if self.down_since else None
                due = since is not None and not self.marked_unknown
                due = due and time.monotonic() - since >= grace
                if due:
                    self.marked_unknown = True
            if due:
                close_old_connections()
                count = workload_services.cluster_workloads_unknown(
                    self.cluster, "API server unreachable"
                )
                logger.warning("%s unreachable: %s workloads Unknown", self.cluster, count)
        close_old_connections()

    def stop(self, timeout: float = 5) -> None:
        self.stop_event.set()
        for watch in self.watches.values():
            watch.interrupt()
        for thread in self.threads:
            thread.join(timeout=timeout)

    @property
    def relists(self) -> int:
        return sum(w.relists for w in self.watches.values())

"""List-and-watch of one resource type across a cluster, as Kubernetes informers do.

``ResourceWatch.run(stop)`` lists the objects (``SYNC`` each one, and ``DELETED`` for
every object known before that the list no longer has, so nothing is missed across a
gap), then watches from the list's resourceVersion. A ``410 Gone`` (the version
expired) relists; a lost connection reconnects with exponential backoff (0.5 s … 15 s,
jitter) and reports it through ``on_state``. Handlers receive the contract's plain
dataclasses: Kubernetes UIDs never leave this module.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.rest import ApiException

from compute.backends.containers import AutoscalerInfo, ClusterEvent, DeploymentInfo, PodInfo
from compute.backends.kubernetes import manifests
from compute.backends.kubernetes.backend import TRANSPORT_ERRORS, autoscaler_info, pod_info

logger = logging.getLogger(__name__)

SELECTOR = f"{manifests.MANAGED_BY}={manifests.MANAGER},{manifests.WORKLOAD_LABEL}"
AUTOSCALER_SELECTOR = f"{manifests.MANAGED_BY}={manifests.MANAGER},{manifests.AUTOSCALER_LABEL}"
WATCH_SECONDS = 50  # the server ends each watch after this; we resume from the last rv
BACKOFF_MIN, BACKOFF_MAX = 0.5, 15.0

Handler = Callable[[str, object], None]
"""``handler(type, info)`` with type ``SYNC`` (from a list), ``ADDED``, ``MODIFIED`` or
``DELETED``."""


def deployment_info(raw: dict) -> DeploymentInfo:
    meta, spec, status = raw.get("metadata", {}), raw.get("spec", {}), raw.get("status") or {}
    annotations = meta.get("annotations") or {}
    failure = ""
    for condition in status.get("conditions") or []:
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            failure = condition.get("message") or condition.get("reason", "")
        elif (
            condition.get("type") == "Progressing"
            and condition.get("reason") == "ProgressDeadlineExceeded"
        ):
            failure = failure or condition.get("message", "")
    return DeploymentInfo(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        replicas=int(spec.get("replicas") or 0),
        current=int(status.get("replicas") or 0),
        ready=int(status.get("readyReplicas") or 0),
        available=int(status.get("availableReplicas") or 0),
        updated=int(status.get("updatedReplicas") or 0),
        up_to_date=int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0),
        failure=failure,
        terminating=bool(meta.get("deletionTimestamp")),
        portal_generation=_int(annotations.get(manifests.GENERATION_ANNOTATION)),
    )


def _int(value) -> int:
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0


def event_info(raw: dict) -> ClusterEvent | None:
    meta = raw.get("metadata", {})
    namespace = meta.get("namespace", "")
    if not namespace.startswith(settings.ISOTOPE_K8S_NAMESPACE_PREFIX):
        return None  # not a namespace of this installation's tenants
    involved = raw.get("involvedObject") or raw.get("regarding") or {}
    stamp = raw.get("lastTimestamp") or raw.get("eventTime") or meta.get("creationTimestamp")
    when = None
    if stamp:
        try:
            when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            when = None
    return ClusterEvent(
        namespace=namespace,
        object_kind=involved.get("kind", ""),
        object_name=involved.get("name", ""),
        type=raw.get("type") or "Normal",
        reason=raw.get("reason") or "",
        message=raw.get("message") or raw.get("note") or "",
        last_seen=when,
    )


def _key(raw: dict) -> str:
    meta = raw.get("metadata", {})
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


class ResourceWatch:
    """Lists then watches one resource type in every namespace; calls ``handler``."""

    RESOURCES = {
        # name: (list function name, API class, label selector, reader)
        "deployments": ("list_deployment_for_all_namespaces", k8s.AppsV1Api, SELECTOR),
        "pods": ("list_pod_for_all_namespaces", k8s.CoreV1Api, SELECTOR),
        "events": ("list_event_for_all_namespaces", k8s.CoreV1Api, None),
        "autoscalers": (
            "list_horizontal_pod_autoscaler_for_all_namespaces",
            k8s.AutoscalingV2Api,
            AUTOSCALER_SELECTOR,
        ),
    }

    def __init__(
        self,
        api: k8s.ApiClient,
        resource: str,
        handler: Handler,
        *,
        on_state: Callable[[str, str], None] | None = None,
    ):
        name, api_class, selector = self.RESOURCES[resource]
        self.resource = resource
        self.list_fn = getattr(api_class(api), name)
        self.api = api
        self.selector = selector
        self.handler = handler
        self.on_state = on_state or (lambda state, detail: None)
        self.resource_version: str | None = None
        self.known: set[str] = set()
        self.relists = 0
        self.reconnects = 0
        self._watch: k8s_watch.Watch | None = None
        self._latest_event: datetime | None = None
        # A version the next watch request must start from (``interrupt``): kept apart
        # from ``resource_version`` so an event still in flight cannot overwrite it.
        self._restart_from: str | None = None

    # --- reading objects -------------------------------------------------------------
    def _info(self, raw: dict):
        if self.resource == "deployments":
            return deployment_info(raw)
        if self.resource == "pods":
            return pod_info(raw)
        if self.resource == "autoscalers":
            return autoscaler_info(raw)
        return event_info(raw)

    def _kwargs(self) -> dict:
        kwargs: dict = {"_request_timeout": (5, WATCH_SECONDS + 20)}
        if self.selector:
            kwargs["label_selector"] = self.selector
        return kwargs

    # --- the loop --------------------------------------------------------------------
    def relist(self) -> None:
        """List everything; SYNC what exists and DELETE what vanished since."""
        listing = self.list_fn(**self._kwargs(), _preload_content=False)
        import json

        body = json.loads(listing.data)
        seen: set[str] = set()
        for raw in body.get("items", []):
            key = _key(raw)
            seen.add(key)
            info = self._info(raw)
            if info is None:
                continue
            if self.resource == "events":
                # Only events newer than the last one handled: a relist replays none.
                if self._latest_event and info.last_seen and info.last_seen <= self._latest_event:
                    continue
                if self._latest_event is None:
                    continue  # the first list: history, not news
            self._dispatch("SYNC", info)
        if self.resource != "events":
            for key in self.known - seen:
                namespace, name = key.split("/", 1)
                self._dispatch("DELETED", self._stub(namespace, name))
        self.known = seen if self.resource != "events" else set()
        if self.resource == "events" and self._latest_event is None:
            from django.utils import timezone

            self._latest_event = timezone.now()
        self.resource_version = body.get("metadata", {}).get("resourceVersion")
        self.relists += 1

    def _stub(self, namespace: str, name: str):
        if self.resource == "deployments":
            return DeploymentInfo(namespace, name, 0, 0, 0, 0, 0, True, terminating=True)
        if self.resource == "autoscalers":
            return AutoscalerInfo(namespace=namespace, name=name, deleted=True)
        return PodInfo(namespace=namespace, name=name, workload="", phase="Unknown")

    def _dispatch(self, kind: str, info) -> None:
        if isinstance(info, ClusterEvent) and info.last_seen:
            if self._latest_event is None or info.last_seen > self._latest_event:
                self._latest_event = info.last_seen
        try:
            self.handler(kind, info)
        except Exception:  # noqa: BLE001 - one bad object must not stop the watch
            logger.exception("%s handler failed on %s %s", self.resource, kind, info)

    def watch_once(self, stop: threading.Event) -> None:
        """One watch request from ``resource_version`` until the server ends it."""
        self._watch = k8s_watch.Watch()
        if self._restart_from is not None:
            self.resource_version, self._restart_from = self._restart_from, None
        stream = self._watch.stream(
            self.list_fn,
            resource_version=self.resource_version,
            timeout_seconds=WATCH_SECONDS,
            allow_watch_bookmarks=True,
            **self._kwargs(),
        )
        for event in stream:
            if stop.is_set():
                self._watch.stop()
                break
            kind, raw = event["type"], event["raw_object"]
            self.resource_version = self._watch.resource_version or self.resource_version
            if kind == "BOOKMARK":
                continue
            info = self._info(raw)
            if self.resource != "events":
                key = _key(raw)
                if kind == "DELETED":
                    self.known.discard(key)
                else:
                    self.known.add(key)
            if info is not None:
                self._dispatch(kind, info)

    def interrupt(self, *, resource_version: str | None = None) -> None:
        """End the current watch request now (tests: ``resource_version="1"`` makes the
        next one start from an expired version, i.e. a 410 and a relist). The current
        request ends at its next event; the events it still delivers are handled as
        usual, and the next request starts from ``resource_version`` whatever they said."""
        if resource_version is not None:
            self._restart_from = resource_version
        if self._watch is not None:
            self._watch.stop()

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set: list, watch, relist on 410, reconnect with backoff."""
        backoff = BACKOFF_MIN
        connected = False
        while not stop.is_set():
            try:
                if self.resource_version is None:
                    self.relist()
                if not connected:
                    connected = True
                    self.on_state("connected", "")
                self.watch_once(stop)
                backoff = BACKOFF_MIN
            except ApiException as error:
                if error.status == 410:
                    logger.info("%s watch expired (410 Gone): relisting", self.resource)
                    self.resource_version = None
                    continue
                connected = self._lost(connected, f"{error.status} {error.reason}")
                stop.wait(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, BACKOFF_MAX)
            except TRANSPORT_ERRORS as error:
                if stop.is_set():
                    break  # interrupted on purpose: not a lost connection
                connected = self._lost(connected, str(error))
                stop.wait(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, BACKOFF_MAX)
            except Exception as error:  # noqa: BLE001 - a watch thread must never die
                logger.exception("%s watch failed", self.resource)
                connected = self._lost(connected, str(error))
                stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    def _lost(self, connected: bool, detail: str) -> bool:
        self.reconnects += 1
        logger.warning("%s watch lost: %s (reconnecting)", self.resource, detail[:300])
        if connected:
            self.on_state("disconnected", detail[:300])
        return False

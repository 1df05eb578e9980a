"""Kubernetes implementation of the container backend contract.

One API client per cluster (kubeconfig) per process. Objects are written with
server-side apply (field manager ``isotope``, forced), so re-applying an unchanged spec
is a no-op on the server and keeps every resourceVersion. Clusters whose nodes are all
KWOK fake nodes provide no container logs, which ``capabilities`` says.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from decimal import Decimal

import urllib3
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException
from kubernetes.utils import parse_quantity

from compute.backends.base import BackendError, TransientBackendError
from compute.backends.containers import (
    AutoscalerInfo,
    AutoscalerSpec,
    ClaimSpec,
    ClaimStatus,
    ClusterFacts,
    ClusterSnapshot,
    ContainerBackend,
    GroupPolicySpec,
    LoadBalancerSpec,
    LoadBalancerStatus,
    LogsUnavailable,
    PodInfo,
    PodUsage,
    ProvisionReport,
    QuotaRefused,
    TenantSpec,
    WorkloadNotFound,
    WorkloadSpec,
)
from compute.backends.kubernetes import manifests

logger = logging.getLogger(__name__)

TIMEOUT = 10  # seconds per API call (the watches use their own)
FIELD_MANAGER = "isotope"
# Holds a Deployment's replicas for a moment when a HorizontalPodAutoscaler takes them
# over, so that Isotope giving the field up does not reset it to the default of 1.
HANDOVER_MANAGER = "isotope-handover"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"

# apiVersion → URL prefix; kind → plural.
_GROUPS = {
    "v1": "/api/v1",
    "apps/v1": "/apis/apps/v1",
    "autoscaling/v2": "/apis/autoscaling/v2",
    "discovery.k8s.io/v1": "/apis/discovery.k8s.io/v1",
    "networking.k8s.io/v1": "/apis/networking.k8s.io/v1",
    "rbac.authorization.k8s.io/v1": "/apis/rbac.authorization.k8s.io/v1",
    "storage.k8s.io/v1": "/apis/storage.k8s.io/v1",
}
_PLURALS = {
    "Namespace": "namespaces",
    "ResourceQuota": "resourcequotas",
    "LimitRange": "limitranges",
    "NetworkPolicy": "networkpolicies",
    "ServiceAccount": "serviceaccounts",
    "RoleBinding": "rolebindings",
    "Deployment": "deployments",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "Pod": "pods",
    "Service": "services",
    "EndpointSlice": "endpointslices",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "PersistentVolume": "persistentvolumes",
    "StorageClass": "storageclasses",
}
# Kinds outside any namespace.
_CLUSTER_SCOPED = {"Namespace", "PersistentVolume", "StorageClass"}

_clients: dict[str, k8s.ApiClient] = {}
_lock = threading.Lock()


def api_client(kubeconfig: str) -> k8s.ApiClient:
    """This process's API client for ``kubeconfig`` (YAML text), made once."""
    key = hashlib.sha256(kubeconfig.encode()).hexdigest()
    with _lock:
        found = _clients.get(key)
        if found is None:
            configuration = k8s.Configuration()
            try:
                k8s_config.load_kube_config_from_dict(
                    yaml.safe_load(kubeconfig), client_configuration=configuration
                )
            except (yaml.YAMLError, k8s_config.ConfigException, TypeError, ValueError) as error:
                raise BackendError(f"The kubeconfig is not usable: {error}") from None
            configuration.retries = 1  # our tasks retry with backoff; fail fast here
            found = _clients[key] = k8s.ApiClient(configuration)
        return found


def path_of(obj: dict) -> str:
    """The REST path of a manifest's object."""
    prefix = _GROUPS[obj["apiVersion"]]
    plural = _PLURALS[obj["kind"]]
    meta = obj["metadata"]
    if obj["kind"] in _CLUSTER_SCOPED:
        return f"{prefix}/{plural}/{meta['name']}"
    return f"{prefix}/namespaces/{meta['namespace']}/{plural}/{meta['name']}"


def translate(error: Exception, what: str) -> BackendError:
    """An API or connection error as the contract's exception."""
    if isinstance(error, ApiException):
        status = error.status or 0
        detail = _reason(error)
        if status == 403 and "exceeded quota" in detail:
            return QuotaRefused(f"The cluster refused {what}: {detail}")
        if status == 404:
            return WorkloadNotFound(f"{what} does not exist.")
        if status in (0, 429) or status >= 500:
            return TransientBackendError(f"The API server could not {what} ({status}): {detail}")
        return BackendError(f"The cluster refused {what} ({status}): {detail}")
    return TransientBackendError(f"The API server is unreachable: {error}")


def _reason(error: ApiException) -> str:
    import json

    try:
        return json.loads(error.body).get("message") or error.reason or ""
    except (TypeError, ValueError, AttributeError):
        return str(error.reason or error.body or "")


TRANSPORT_ERRORS = (urllib3.exceptions.HTTPError, OSError)

# What a reconcile pass lists once across the cluster (selected on the managed-by
# label, which every object Isotope writes carries): the tenant namespaces' objects and
# the workloads' main objects. A Deployment's pods are left out of the pod list (they
# carry pod-template-hash); only bare pods are workloads.
SNAPSHOT_KINDS = (
    ("v1", "Namespace"),
    ("v1", "ResourceQuota"),
    ("v1", "LimitRange"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("v1", "ServiceAccount"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("apps/v1", "Deployment"),
    ("v1", "Pod"),
)
_SNAPSHOT_EXTRA_SELECTOR = {"Pod": "!pod-template-hash"}
LIST_PAGE = 500  # objects per list request (limit/continue)


def in_place(desired: dict, live: dict | None) -> bool:
    """Whether ``live`` already holds every field of ``desired`` at its path, equal
    (strict: same type and value; quantities compared as text, so a value the API
    server wrote in another form counts as different and is applied again, which costs
    calls, never a wrong report). An object being deleted is never in place.
    ``apiVersion`` and ``kind`` are not compared: a list's items leave them out (the
    list says them once)."""
    if live is None or (live.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return _subset({k: v for k, v in desired.items() if k not in ("apiVersion", "kind")}, live)


def _subset(desired, live) -> bool:
    if isinstance(desired, dict):
        if live is None:
            return not desired
        return isinstance(live, dict) and all(_subset(v, live.get(k)) for k, v in desired.items())
    if isinstance(desired, list):
        # An empty list is what the API server leaves out (omitempty), so absent is equal.
        if live is None:
            return not desired
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(_subset(d, v) for d, v in zip(desired, live, strict=True))
        )
    return type(desired) is type(live) and desired == live


def _apply_changed(desired: dict, before: dict, after: dict) -> bool:
    """Whether applying ``desired`` over ``before`` changed the object: its spec (the
    API server counts a spec change in ``metadata.generation``) or one of the labels
    and annotations ``desired`` sets. Not the ``resourceVersion``: the controller's
    status and revision writes change it too, and one landing between the read and
    the apply is no edit of anyone's."""
    old, new = before.get("metadata") or {}, after.get("metadata") or {}
    if old.get("generation") != new.get("generation"):
        return True
    wanted = desired.get("metadata") or {}
    return any(
        (old.get(key) or {}).get(name) != value
        for key in ("labels", "annotations")
        for name, value in (wanted.get(key) or {}).items()
    )


# What a write of an object's status changes besides the status itself.
_STATUS_WRITE_METADATA = ("resourceVersion", "managedFields")


def _changed_beyond_status(before: dict, after: dict) -> bool:
    """Whether ``after`` differs from ``before`` in more than a status write changes:
    the status, the ``resourceVersion`` and the field managers. Not the
    ``resourceVersion`` alone: a ResourceQuota's controller writes its ``used`` as pods
    come and go, and a write landing between a read and an apply is no edit."""

    def kept(obj: dict) -> dict:
        meta = dict(obj.get("metadata") or {})
        for key in _STATUS_WRITE_METADATA:
            meta.pop(key, None)
        return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}

    return kept(before) != kept(after)


class KubernetesBackend(ContainerBackend):
    """One Kubernetes cluster, reached with the kubeconfig it is given."""

    capabilities = {
        "logs": True,
        "scale": True,
        "rollout_restart": True,
        "services": True,
        "volume_claims": True,
        "security_groups": True,
        "load_balancers": True,
        "autoscalers": True,
    }

    def __init__(self, *, kubeconfig: str, capabilities: dict | None = None):
        self.api = api_client(kubeconfig)
        if capabilities is not None:
            self.capabilities = {**self.capabilities, **capabilities}

    # --- plumbing --------------------------------------------------------------------
    def _call(self, method: str, path: str, *, body=None, query=None, headers=None, what=""):
        try:
            data, status, _ = self.api.call_api(
                path,
                method,
                query_params=query or [],
                header_params={"Accept": "application/json", **(headers or {})},
                body=body,
                response_types_map={200: "object", 201: "object", 202: "object"},
                auth_settings=["BearerToken"],
                _return_http_data_only=False,
                _request_timeout=TIMEOUT,
            )
        except ApiException as error:
            raise translate(error, what or f"{method} {path}") from None
        except TRANSPORT_ERRORS as error:
            raise translate(error, what or path) from None
        return data, status

    def _get(self, path: str) -> dict | None:
        try:
            data, _ = self._call("GET", path)
        except WorkloadNotFound:
            return None
        return data

    def apply(self, obj: dict, *, manager: str = FIELD_MANAGER) -> dict:
        """Server-side apply one manifest (creates it when missing)."""
        what = f"{obj['kind']} {obj['metadata']['name']}"
        data, _ = self._call(
            "PATCH",
            path_of(obj),
            body=obj,
            query=[("fieldManager", manager), ("force", "true")],
            headers={"Content-Type": "application/apply-patch+yaml"},
            what=f"to apply {what}",
        )
        return data

    def _delete(self, path: str, what: str, propagation: str = "Background") -> None:
        try:
            self._call(
                "DELETE",
                path,
                body={"propagationPolicy": propagation},
                headers={"Content-Type": "application/json"},
                what=f"to delete {what}",
            )
        except WorkloadNotFound:
            pass

    # --- the contract ----------------------------------------------------------------
    def facts(self) -> ClusterFacts:
        version, _ = self._call("GET", "/version", what="read the version")
        nodes, _ = self._call("GET", "/api/v1/nodes", what="list nodes")
        cpu, memory, pods, ready, fake = Decimal(0), 0, 0, 0, 0
        for node in nodes.get("items", []):
            conditions = node.get("status", {}).get("conditions") or []
            if not any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                continue
            ready += 1
            allocatable = node["status"].get("allocatable", {})
            cpu += _cores(allocatable.get("cpu", "0"))
            memory += _bytes(allocatable.get("memory", "0")) // manifests.MIB
            pods += int(allocatable.get("pods", "0"))
            annotations = node["metadata"].get("annotations") or {}
            fake += annotations.get(KWOK_ANNOTATION) == "fake"
        return ClusterFacts(
            version=version.get("gitVersion", ""),
            nodes=ready,
            cpu=cpu,
            memory_mib=memory,
            pods=pods,
            capabilities={**self.capabilities, "logs": ready > 0 and fake < ready},
        )

    def _list(self, path: str, selector: str, what: str) -> list[dict]:
        """Every object at ``path`` matching ``selector``, page by page."""
        items: list[dict] = []
        token = ""
        while True:
            query = [("labelSelector", selector), ("limit", str(LIST_PAGE))]
            if token:
                query.append(("continue", token))
            data, _ = self._call("GET", path, query=query, what=what)
            items += data.get("items") or []
            token = (data.get("metadata") or {}).get("continue") or ""
            if not token:
                return items

    def snapshot(self) -> ClusterSnapshot:
        snapshot = ClusterSnapshot()
        listed = set()
        managed = f"{manifests.MANAGED_BY}={manifests.MANAGER}"
        for api_version, kind in SNAPSHOT_KINDS:
            selector = ",".join(filter(None, (managed, _SNAPSHOT_EXTRA_SELECTOR.get(kind))))
            path = f"{_GROUPS[api_version]}/{_PLURALS[kind]}"
            try:
                items = self._list(path, selector, f"list {_PLURALS[kind]}")
            except BackendError as error:
                logger.warning("reconcile: listing %s failed: %s", _PLURALS[kind], error)
                snapshot.failed[kind] = str(error)
                continue
            listed.add(kind)
            for item in items:
                meta = item.get("metadata") or {}
                meta.pop("managedFields", None)  # never compared; the bulk of an object
                snapshot.add(kind, meta.get("namespace") or "", meta.get("name") or "", item)
        snapshot.listed = frozenset(listed)
        return snapshot

    def ensure_tenant(
        self, spec: TenantSpec, *, snapshot: ClusterSnapshot | None = None
    ) -> ProvisionReport:
        report = ProvisionReport()
        for obj in manifests.tenant_objects(spec):
            label = f"{obj['kind']}/{obj['metadata']['name']}"
            if _listed_in_place(obj, snapshot):
                report.unchanged.append(label)
                continue
            # Missing, different or not listed: read and apply, and tell from the two
            # whether anything was there and whether the apply changed it.
            before = self._get(path_of(obj))
            after = self.apply(obj)
            if before is None:
                report.created.append(label)
            elif _changed_beyond_status(before, after):
                report.repaired.append(label)
            else:
                report.unchanged.append(label)
        return report

    def apply_workload(self, spec: WorkloadSpec) -> None:
        for obj in manifests.workload_objects(spec):
            if obj["kind"] == "Pod":
                live = self._get(path_of(obj))
                if live is not None:  # a pod's spec is immutable, its labels are not
                    self._pod_relabel(obj, live)
                    continue
            if obj["kind"] == "Deployment" and "replicas" not in obj["spec"]:
                self._hand_over_replicas(obj, spec.replicas)
            self.apply(obj)
        if not spec.service_type:
            self._delete(f"/api/v1/namespaces/{spec.namespace}/services/{spec.name}", "the service")
        if spec.service_type != "NodePort":
            self._delete(
                f"/apis/networking.k8s.io/v1/namespaces/{spec.namespace}/networkpolicies/"
                f"{spec.name}-ingress",
                "the service's network policy",
            )

    def workload_repair(self, spec: WorkloadSpec, *, snapshot: ClusterSnapshot | None) -> bool:
        # Deployments only: a bare pod's spec cannot be changed, so applying it again
        # could not undo an edit (its labels are re-applied with every spec change).
        if spec.kind != "Deployment" or snapshot is None:
            return False
        live = snapshot.get("Deployment", spec.namespace, spec.name)
        annotations = ((live or {}).get("metadata") or {}).get("annotations") or {}
        if annotations.get(manifests.GENERATION_ANNOTATION) != str(spec.portal_generation):
            return False  # not there, or applied from another spec: its apply decides
        desired = manifests.deployment(spec)
        if in_place(desired, live):
            return False
        # Read and apply, and tell whether the apply changed what Isotope owns (a field
        # another manager added, e.g. a second container, stays: it costs these two
        # calls per pass and is never reported).
        before = self._get(path_of(desired))
        if before is None:
            return False  # gone meanwhile: the next pass finds it missing
        return _apply_changed(desired, before, self.apply(desired))

    def _hand_over_replicas(self, obj: dict, wanted: int) -> None:
        """Before Isotope's manifest leaves ``replicas`` out (its HorizontalPodAutoscaler
        sizes the Deployment), a second field manager applies the live value, so the
        field keeps an owner and its value until the HPA writes it (Kubernetes'
        "transferring ownership" for server-side apply). A Deployment at 0 (scaled to
        zero) that the portal wants back at ``wanted`` gets that instead: at 0 the HPA
        does not act, so nothing else would bring it back."""
        live = self._get(path_of(obj))
        replicas = ((live or {}).get("spec") or {}).get("replicas")
        if replicas is None:
            return
        if replicas == 0 and wanted > 0:
            replicas = wanted
        meta = {"name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"]}
        body = {**{k: obj[k] for k in ("apiVersion", "kind")}, "metadata": meta}
        self.apply({**body, "spec": {"replicas": replicas}}, manager=HANDOVER_MANAGER)

    def autoscalers_sync(
        self, namespace: str, deployment: str, wanted: AutoscalerSpec | None
    ) -> None:
        if wanted is not None:
            self.apply(manifests.horizontal_pod_autoscaler(wanted))
        base = f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers"
        selector = (
            f"{manifests.MANAGED_BY}={manifests.MANAGER},"
            f"{manifests.WORKLOAD_LABEL}={deployment},{manifests.AUTOSCALER_LABEL}"
        )
        held, _ = self._call(
            "GET",
            base,
            query=[("labelSelector", selector)],
            what=f"list the HorizontalPodAutoscalers of {deployment}",
        )
        for item in held.get("items", []):
            name = item["metadata"]["name"]
            if wanted is None or name != wanted.name:
                self._delete(f"{base}/{name}", f"HorizontalPodAutoscaler {name}")

    def autoscaler_status(self, namespace: str, name: str) -> AutoscalerInfo | None:
        raw = self._get(
            f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers/{name}"
        )
        return None if raw is None else autoscaler_info(raw)

    def pod_usage(self, namespace: str, workload: str) -> dict[str, PodUsage]:
        raw, _ = self._call(
            "GET",
            f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods",
            query=[("labelSelector", f"{manifests.WORKLOAD_LABEL}={workload}")],
            what=f"read the usage of {workload}'s pods",
        )
        usage = {}
        for item in raw.get("items", []):
            containers = item.get("containers") or []
            usage[item["metadata"]["name"]] = PodUsage(
                cpu_m=float(sum(_cores(c["usage"].get("cpu", "0")) for c in containers) * 1000),
                memory_bytes=sum(_bytes(c["usage"].get("memory", "0")) for c in containers),
            )
        return usage

    def _pod_relabel(self, obj: dict, live: dict) -> None:
        """Bring a live pod's labels and annotations to the manifest's with a merge patch:
        a tenant label it was given before (its annotation lists their keys) or a security
        group label (Isotope's own prefix) it no longer wants is set to null; labels others
        put there stay. Nothing when already equal."""
        meta, held = obj["metadata"], live.get("metadata") or {}
        held_labels = held.get("labels") or {}
        held_notes = held.get("annotations") or {}
        notes = meta.get("annotations") or {}
        given = held_notes.get(manifests.TENANT_LABELS_ANNOTATION, "").split(",")
        given += [key for key in held_labels if key.startswith(manifests.GROUP_LABEL_PREFIX)]
        gone = [key for key in given if key and key not in meta["labels"]]
        current = all(held_labels.get(k) == v for k, v in meta["labels"].items())
        if current and not gone and all(held_notes.get(k) == v for k, v in notes.items()):
            return
        labels = {key: None for key in gone}
        labels.update(meta["labels"])
        self._call(
            "PATCH",
            path_of(obj),
            body={"metadata": {"labels": labels, "annotations": notes}},
            headers={"Content-Type": "application/merge-patch+json"},
            what=f"to relabel Pod {meta['name']}",
        )

    def delete_workload(self, namespace: str, name: str, kind: str) -> bool:
        main = (
            f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
            if kind == "Deployment"
            else f"/api/v1/namespaces/{namespace}/pods/{name}"
        )
        # Foreground: the Deployment stays until its ReplicaSets and pods are gone.
        self._delete(main, f"{kind} {name}", propagation="Foreground")
        self._delete(f"/api/v1/namespaces/{namespace}/services/{name}", f"Service {name}")
        self._delete(
            f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies/{name}-ingress",
            f"NetworkPolicy {name}-ingress",
        )
        return self._get(main) is not None or bool(self.pods(namespace, name))

    def group_policies_sync(
        self,
        namespace: str,
        tenant: str,
        groups: list[GroupPolicySpec],
        *,
        snapshot: ClusterSnapshot | None = None,
    ) -> list[str]:
        wanted = [manifests.group_policy(namespace, tenant, group) for group in groups]
        for obj in wanted:
            if not _listed_in_place(obj, snapshot):
                self.apply(obj)
        names = {obj["metadata"]["name"] for obj in wanted}
        base = f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies"
        if snapshot is not None and snapshot.known("NetworkPolicy"):
            # The pass's list (Isotope's policies): those labelled as a group's.
            held = [
                name
                for name in snapshot.names("NetworkPolicy", namespace)
                if manifests.GROUP_POLICY_LABEL
                in _labels(snapshot.get("NetworkPolicy", namespace, name))
            ]
        else:
            found, _ = self._call(
                "GET",
                base,
                query=[("labelSelector", manifests.GROUP_POLICY_LABEL)],
                what="list the security group policies",
            )
            held = [item["metadata"]["name"] for item in found.get("items", [])]
        for name in held:
            if name not in names:
                self._delete(f"{base}/{name}", f"NetworkPolicy {name}")
        return sorted(names)

    def _endpoint_slice_names(self, namespace: str, service: str) -> list[str]:
        held, _ = self._call(
            "GET",
            f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
            query=[("labelSelector", manifests.endpoint_slice_selector(service))],
            what=f"list the EndpointSlices of {service}",
        )
        return [item["metadata"]["name"] for item in held.get("items", [])]

    def load_balancer_apply(self, spec: LoadBalancerSpec) -> LoadBalancerStatus:
        applied = self.apply(manifests.load_balancer_service(spec))
        wanted = manifests.endpoint_slices(spec)
        for obj in wanted:
            self.apply(obj)
        # Slices no longer needed (fewer members than before) go after the new ones are
        # written, so no member is ever missing from all of them.
        names = {obj["metadata"]["name"] for obj in wanted}
        base = f"/apis/discovery.k8s.io/v1/namespaces/{spec.namespace}/endpointslices"
        for name in self._endpoint_slice_names(spec.namespace, spec.name):
            if name not in names:
                self._delete(f"{base}/{name}", f"EndpointSlice {name}")
        body = applied.get("spec") or {}
        return LoadBalancerStatus(
            cluster_ip=body.get("clusterIP") or "",
            node_ports={
                port.get("name") or "": int(port["nodePort"])
                for port in body.get("ports") or []
                if port.get("nodePort")
            },
        )

    def load_balancer_delete(self, namespace: str, name: str) -> bool:
        service = f"/api/v1/namespaces/{namespace}/services/{name}"
        base = f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"
        # The first slice by its name too: one written before slices were labelled
        # for listing is still found.
        slices = set(self._endpoint_slice_names(namespace, name))
        slices.add(manifests.endpoint_slice_name(name))
        for slice_name in sorted(slices):
            self._delete(f"{base}/{slice_name}", f"EndpointSlice {slice_name}")
        self._delete(service, f"Service {name}")
        return self._get(service) is not None or bool(self._endpoint_slice_names(namespace, name))

    def workload_exists(self, namespace: str, name: str, kind: str) -> bool:
        plural = "deployments" if kind == "Deployment" else "pods"
        group = "/apis/apps/v1" if kind == "Deployment" else "/api/v1"
        return self._get(f"{group}/namespaces/{namespace}/{plural}/{name}") is not None

    def pods(self, namespace: str, workload: str) -> list[PodInfo]:
        data, _ = self._call(
            "GET",
            f"/api/v1/namespaces/{namespace}/pods",
            query=[("labelSelector", f"{manifests.WORKLOAD_LABEL}={workload}")],
            what="list pods",
        )
        return sorted((pod_info(item) for item in data.get("items", [])), key=lambda p: p.name)

    def logs(self, namespace: str, pod: str, *, tail: int = 200) -> Iterator[str]:
        if not self.capabilities.get("logs"):
            raise LogsUnavailable(
                "The nodes of this cluster are KWOK fake nodes: no container runs on them, "
                "so there are no logs to show."
            )
        try:
            response = k8s.CoreV1Api(self.api).read_namespaced_pod_log(
                pod,
                namespace,
                container=manifests.CONTAINER,
                follow=True,
                tail_lines=tail,
                _preload_content=False,
                _request_timeout=(5, 300),
            )
        except ApiException as error:
            raise LogsUnavailable(f"The node gave no logs: {_reason(error)}") from None
        except TRANSPORT_ERRORS as error:
            raise translate(error, "read logs") from None
        try:
            for chunk in response.stream(4096):
                yield chunk.decode(errors="replace")
        except TRANSPORT_ERRORS:
            return
        finally:
            response.release_conn()

    # --- Volume claims ----------------------------------------------------------------
    def claim_apply(self, spec: ClaimSpec) -> None:
        storage = self._get(f"/apis/storage.k8s.io/v1/storageclasses/{spec.storage_class}")
        if storage is None:
            raise BackendError(
                f"The cluster has no StorageClass {spec.storage_class}: ask a platform admin."
            )
        claim_path = f"/api/v1/namespaces/{spec.namespace}/persistentvolumeclaims/{spec.name}"
        if self._get(claim_path) is not None:
            return  # a claim's spec is immutable (but its size): it is as created
        volume_name = ""
        if storage.get("provisioner") == manifests.NO_PROVISIONER:
            # Nothing makes volumes for this class: the portal does, one per claim.
            volume = manifests.persistent_volume(spec)
            self.apply(volume)
            volume_name = volume["metadata"]["name"]
        self.apply(manifests.persistent_volume_claim(spec, volume_name=volume_name))

    def claim_status(self, namespace: str, name: str) -> ClaimStatus | None:
        raw = self._get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}")
        if raw is None:
            return None
        status = raw.get("status") or {}
        capacity = (status.get("capacity") or {}).get("storage", "0")
        return ClaimStatus(
            phase=status.get("phase") or "Pending",
            capacity_gib=_bytes(capacity) // 1024**3,
            volume=(raw.get("spec") or {}).get("volumeName") or "",
            terminating=bool(raw["metadata"].get("deletionTimestamp")),
        )

    def claim_delete(self, namespace: str, name: str) -> bool:
        path = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}"
        self._delete(path, f"PersistentVolumeClaim {name}")
        if self._get(path) is not None:
            return True  # kubernetes.io/pvc-protection: a pod still uses it
        # The volumes the portal made for this claim (bound or not) go with it.
        volumes, _ = self._call(
            "GET",
            "/api/v1/persistentvolumes",
            query=[
                (
                    "labelSelector",
                    f"{manifests.MANAGED_BY}={manifests.MANAGER},{manifests.VOLUME_LABEL}={name}",
                )
            ],
            what="list persistent volumes",
        )
        for volume in volumes.get("items", []):
            claim = (volume.get("spec") or {}).get("claimRef") or {}
            if claim.get("namespace") == namespace and claim.get("name") == name:
                pv = volume["metadata"]["name"]
                self._delete(f"/api/v1/persistentvolumes/{pv}", f"PersistentVolume {pv}")
        return False


def _listed_in_place(obj: dict, snapshot: ClusterSnapshot | None) -> bool:
    """Whether the pass's snapshot shows ``obj`` in place (False when it has no list
    of its kind: then nothing is known)."""
    if snapshot is None or not snapshot.known(obj["kind"]):
        return False
    meta = obj["metadata"]
    return in_place(obj, snapshot.get(obj["kind"], meta.get("namespace") or "", meta["name"]))


def _labels(obj: dict | None) -> dict:
    return ((obj or {}).get("metadata") or {}).get("labels") or {}


# --- Object readers (shared with the watches) --------------------------------------------
def pod_info(raw: dict) -> PodInfo:
    meta, status = raw.get("metadata", {}), raw.get("status") or {}
    statuses = status.get("containerStatuses") or []
    reason = ""
    for cs in statuses:
        state = cs.get("state") or {}
        waiting = state.get("waiting") or state.get("terminated") or {}
        reason = reason or waiting.get("reason", "")
    return PodInfo(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        workload=(meta.get("labels") or {}).get(manifests.WORKLOAD_LABEL, ""),
        phase=status.get("phase") or "Pending",
        node=(raw.get("spec") or {}).get("nodeName") or "",
        restarts=sum(int(cs.get("restartCount") or 0) for cs in statuses),
        ready=bool(statuses) and all(cs.get("ready") for cs in statuses),
        terminating=bool(meta.get("deletionTimestamp")),
        reason=reason,
        ip=status.get("podIP") or "",
        ports=tuple(
            (port["name"], port.get("protocol") or "TCP", int(port["containerPort"]))
            for container in (raw.get("spec") or {}).get("containers") or []
            for port in container.get("ports") or []
            if port.get("name") and port.get("containerPort")
        ),
    )


def autoscaler_info(raw: dict) -> AutoscalerInfo:
    """A HorizontalPodAutoscaler's status as the contract's observation."""
    from datetime import datetime

    meta, status = raw.get("metadata", {}), raw.get("status") or {}
    utilisation = None
    for metric in status.get("currentMetrics") or []:
        current = (metric.get("resource") or {}).get("current") or {}
        if current.get("averageUtilization") is not None:
            utilisation = int(current["averageUtilization"])
            break
    stamp = status.get("lastScaleTime")
    when = datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None
    conditions = tuple(
        {
            "type": c.get("type", ""),
            "status": c.get("status", ""),
            "reason": c.get("reason", ""),
            "message": c.get("message", ""),
        }
        for c in status.get("conditions") or []
    )
    return AutoscalerInfo(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        current_replicas=int(status.get("currentReplicas") or 0),
        desired_replicas=int(status.get("desiredReplicas") or 0),
        current_utilisation=utilisation,
        conditions=conditions,
        last_scale_time=when,
        deleted=bool(meta.get("deletionTimestamp")),
    )


def _bytes(text: str) -> int:
    """A memory or storage quantity as the API server reports it, in whole bytes."""
    return int(parse_quantity(text))


def _cores(text: str) -> Decimal:
    """A CPU quantity (``2``, ``1500m``, ``250000n`` from the metrics API, ``1k``)."""
    return parse_quantity(text)

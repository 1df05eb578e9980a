"""The contract between Isotope and a container cluster backend (Kubernetes).

Terms:
- A *cluster* is one API server, addressed through the credentials of its
  ``KubernetesCluster`` record. A tenant owns one *namespace* on it; a *workload* is a
  Deployment or a single Pod in that namespace, with an optional Service. Callers pass
  namespace and workload names only: backend ids (Kubernetes UIDs) stay inside the
  backend and never appear in the specs, statuses and observations it returns.
- Every call blocks until the API server has answered; none waits for pods to run.
  Status arrives by watches (:mod:`compute.backends.kubernetes.watch`), not polling.
- Errors: :class:`~compute.backends.base.TransientBackendError` when the API server
  cannot be reached or answers 429/5xx (retry with backoff); :class:`QuotaRefused`
  when the API server's ResourceQuota admission refused an object (403);
  :class:`WorkloadNotFound` for a missing workload; ``BackendError`` for everything
  else that is permanent, with a message fit for users.
- Every mutating call is idempotent: applying the same spec twice changes nothing
  (server-side apply; resourceVersions stay), deleting a missing object succeeds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from compute.backends.base import BackendError
from compute.texts import hosts as host_texts


class QuotaRefused(BackendError):
    """The cluster's own ResourceQuota refused an object (HTTP 403 "exceeded quota")."""


class WorkloadNotFound(BackendError):
    """No such workload (Deployment or Pod) in the namespace."""


class LogsUnavailable(BackendError):
    """The node cannot provide container logs (e.g. KWOK's fake nodes run nothing)."""


@dataclass(frozen=True)
class ClusterFacts:
    version: str
    nodes: int
    cpu: Decimal
    """Allocatable cores of the Ready nodes."""
    memory_mib: int
    pods: int
    capabilities: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TenantSpec:
    """What a tenant's namespace holds; built from the tenant and its quota."""

    tenant: str
    namespace: str
    cpu: Decimal
    """Cores the namespace's pods may request in total."""
    memory_mib: int
    pods: int
    limit_ratio: Decimal = Decimal(2)
    """limits.cpu/limits.memory of the namespace quota = requests × this ratio."""
    storage_gib: int | None = None
    """GiB the namespace's volume claims may request in total (``requests.storage``)."""


@dataclass(frozen=True)
class PolicyRule:
    """One allow rule of a security group as the cluster sees it: ``ingress`` or
    ``egress``, ``tcp``/``udp``/``any`` (ICMP has no NetworkPolicy form), an optional
    port range, and the other side: a CIDR or the pods of a group (``remote_group``)."""

    direction: str
    protocol: str
    port_min: int | None = None
    port_max: int | None = None
    remote_cidr: str = ""
    remote_group: str = ""


@dataclass(frozen=True)
class GroupPolicySpec:
    """A tenant's security group as one NetworkPolicy of its namespace, selecting the
    pods labelled as the group's members."""

    name: str
    rules: tuple[PolicyRule, ...] = ()


@dataclass(frozen=True)
class ServicePort:
    name: str
    protocol: str
    """``TCP`` or ``UDP``."""
    port: int
    target_port: int | str
    """A number, or the name of a pod's container port (resolved per member)."""


@dataclass(frozen=True)
class Endpoint:
    """One member of a load-balanced service: a pod (``kind`` ``Pod``, named by a
    targetRef) or a VM (``VirtualMachine``, named by the endpoint's hostname)."""

    kind: str
    name: str
    address: str
    ready: bool
    target_ports: tuple = ()
    """The number each of the service's ports reaches on this member (``None``: the
    member has no such port); empty: every port's own numeric ``target_port``."""


@dataclass(frozen=True)
class LoadBalancerSpec:
    """An Isotope Service: a Kubernetes Service without a selector and the
    EndpointSlices that list its members (kept by Isotope, not the cluster), at most
    ``endpoints_per_slice`` members in each, as Kubernetes' own controller splits them."""

    tenant: str
    namespace: str
    name: str
    service_type: str
    ports: tuple[ServicePort, ...]
    endpoints: tuple[Endpoint, ...] = ()
    portal_uid: str = ""
    endpoints_per_slice: int = 100


@dataclass(frozen=True)
class LoadBalancerStatus:
    cluster_ip: str
    node_ports: dict[str, int] = field(default_factory=dict)
    """Port name → the node port the cluster allocated (NodePort)."""


@dataclass(frozen=True)
class ProvisionReport:
    """What ``ensure_tenant`` did, object by object (``Kind/name``)."""

    created: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.repaired)


@dataclass(frozen=True)
class WorkloadSpec:
    """The desired state of one workload; built by the services from a Workload row."""

    tenant: str
    namespace: str
    name: str
    kind: str
    """``Deployment`` or ``Pod``."""
    image: str
    replicas: int
    cpu_request_m: int
    cpu_limit_m: int
    memory_request: int
    memory_limit: int
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    ports: list[int] = field(default_factory=list)
    service_type: str = ""
    restarted_at: str = ""
    """An RFC 3339 time: a new value rolls the Deployment's pods (rollout restart)."""
    portal_uid: str = ""
    """Isotope's own uid of the workload (not a Kubernetes UID), kept as an annotation."""
    portal_generation: int = 0
    """Isotope's generation of this spec, kept as an annotation so that the watch can
    tell whether what it sees was applied from the newest spec."""
    mounts: list[VolumeMount] = field(default_factory=list)
    """Volume claims of the namespace its pods mount."""
    autoscaled: bool = False
    """A HorizontalPodAutoscaler sizes the Deployment: ``replicas`` is left to it (the
    applied manifest has none, so Isotope's field manager gives the field up)."""
    labels: dict[str, str] = field(default_factory=dict)
    """The tenant's labels, on its pods (a Deployment's pod template: a change rolls the
    pods; a bare pod's own labels). Isotope's own labels win over one of the same key."""
    security_groups: list[str] = field(default_factory=list)
    """The tenant's security groups its pods are in (none: the default group): each is
    one label on the pods, which that group's NetworkPolicy selects."""


@dataclass(frozen=True)
class VolumeMount:
    claim: str
    """A PersistentVolumeClaim of the workload's namespace."""
    mount_path: str
    read_only: bool = False


@dataclass(frozen=True)
class ClaimSpec:
    """A volume claim (PVC) in a tenant's namespace."""

    tenant: str
    namespace: str
    name: str
    size_gib: int
    storage_class: str
    portal_uid: str
    volume_root: str = ""
    """Where a hostPath PersistentVolume made for the claim keeps its data, when its
    StorageClass has no provisioner (``<root>/<namespace>/<name>``)."""


@dataclass(frozen=True)
class ClaimStatus:
    phase: str
    """``Pending``, ``Bound`` or ``Lost`` (Kubernetes' PVC phases)."""
    capacity_gib: int = 0
    volume: str = ""
    """The PersistentVolume it is bound to."""
    terminating: bool = False


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    workload: str
    phase: str
    node: str = ""
    restarts: int = 0
    ready: bool = False
    terminating: bool = False
    reason: str = ""
    """Why a container waits or ended (e.g. ImagePullBackOff), when it does."""
    ip: str = ""
    """The pod's IPv4 address (``status.podIP``), once it has one."""
    ports: tuple = ()
    """Its containers' named ports as ``(name, protocol, number)``."""


@dataclass(frozen=True)
class DeploymentInfo:
    namespace: str
    name: str
    replicas: int
    """spec.replicas"""
    current: int
    """status.replicas: pods that exist (not terminated)."""
    ready: int
    available: int
    updated: int
    up_to_date: bool
    """The controller has seen the latest spec (observedGeneration ≥ generation)."""
    failure: str = ""
    """Why the rollout is stuck (ReplicaFailure or ProgressDeadlineExceeded), if it is."""
    terminating: bool = False
    portal_generation: int = 0
    """The portal's generation of the spec it was applied from (0: not annotated)."""


@dataclass(frozen=True)
class AutoscalerSpec:
    """A HorizontalPodAutoscaler (``autoscaling/v2``) for one Deployment of a namespace."""

    tenant: str
    namespace: str
    name: str
    deployment: str
    min_replicas: int
    max_replicas: int
    metric: str
    """``cpu`` or ``memory``: a Resource metric with an average Utilization target."""
    target: int
    """Percent of the pods' requests."""
    scale_down_window_seconds: int
    scale_down_percent: int
    scale_up_pods: int
    scale_up_percent: int
    portal_uid: str = ""
    portal_generation: int = 0


@dataclass(frozen=True)
class AutoscalerInfo:
    """What a HorizontalPodAutoscaler's status says (the watch's observation)."""

    namespace: str
    name: str
    current_replicas: int = 0
    desired_replicas: int = 0
    current_utilisation: int | None = None
    """The metric's current average utilisation (percent of the requests), if known."""
    conditions: tuple = ()
    """``({"type", "status", "reason", "message"}, ...)``: AbleToScale, ScalingActive,
    ScalingLimited."""
    last_scale_time: datetime | None = None
    deleted: bool = False


@dataclass(frozen=True)
class ClusterEvent:
    """A Kubernetes Event about an object in a tenant namespace."""

    namespace: str
    object_kind: str
    object_name: str
    type: str
    reason: str
    message: str
    last_seen: datetime | None = None


@dataclass(frozen=True)
class PodUsage:
    """One pod's usage as the metrics API reports it (summed over its containers)."""

    cpu_m: float
    memory_bytes: int


@dataclass
class ClusterSnapshot:
    """Isotope's objects on a cluster, each kind listed once for a reconcile pass.

    ``objects[(kind, namespace, name)]`` is the live object as the backend read it
    (opaque above the backend; namespace ``""`` for cluster-scoped kinds). ``listed``
    are the kinds whose list succeeded: of any other kind nothing is known, which is
    never the same as missing (``failed`` says why, by kind)."""

    objects: dict[tuple[str, str, str], dict] = field(default_factory=dict)
    listed: frozenset[str] = frozenset()
    failed: dict[str, str] = field(default_factory=dict)
    # (kind, namespace) → names, so that a pass over many tenants stays linear.
    _names: dict[tuple[str, str], list[str]] = field(default_factory=dict, repr=False)

    def add(self, kind: str, namespace: str, name: str, obj: dict) -> None:
        if (kind, namespace, name) not in self.objects:
            self._names.setdefault((kind, namespace), []).append(name)
        self.objects[(kind, namespace, name)] = obj

    def known(self, kind: str) -> bool:
        return kind in self.listed

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        """The live object, or None: missing when ``known(kind)``, else unknown."""
        return self.objects.get((kind, namespace, name))

    def present(self, kind: str, namespace: str, name: str) -> bool | None:
        """Whether the object was there; None when its kind could not be listed."""
        if not self.known(kind):
            return None
        return (kind, namespace, name) in self.objects

    def names(self, kind: str, namespace: str) -> list[str]:
        """The listed objects of ``kind`` in ``namespace``, by name."""
        return sorted(self._names.get((kind, namespace), []))


class ContainerBackend(ABC):
    """One cluster. Instances are cheap; API clients are pooled per process."""

    #: Keys: ``logs`` (nodes provide container logs), ``scale``, ``rollout_restart``,
    #: ``services``. The UI and API consult these instead of backend types.
    capabilities: dict[str, bool] = {}

    @abstractmethod
    def facts(self) -> ClusterFacts:
        """Version and Ready-node capacity. Raises TransientBackendError."""

    @abstractmethod
    def ensure_tenant(
        self, spec: TenantSpec, *, snapshot: ClusterSnapshot | None = None
    ) -> ProvisionReport:
        """Create or repair the tenant's namespace and its fixed objects (quota, limit
        range, network policies, service account, role binding). Idempotent. With a
        ``snapshot``, an object it shows in place is reported unchanged without a call;
        the others (missing, different, or of a kind it could not list) are checked and
        applied one by one as without it."""

    def snapshot(self) -> ClusterSnapshot | None:
        """Isotope's objects on the cluster (tenant namespaces' objects, workloads),
        each kind listed once, for a reconcile pass. A kind whose list fails is left
        out of ``listed``; never raises. Default: None (callers ask object by object)."""
        return None

    @abstractmethod
    def apply_workload(self, spec: WorkloadSpec) -> None:
        """Create or update the workload's objects. Raises QuotaRefused."""

    def workload_repair(self, spec: WorkloadSpec, *, snapshot: ClusterSnapshot | None) -> bool:
        """Apply the workload's main object again when the pass's ``snapshot`` shows it
        edited outside Isotope (a field Isotope sets holds another value); True when that
        changed it. Not judged (False, no call) without a listed object applied from
        ``spec``'s generation. Default: False (a backend without lists cannot tell)."""
        return False

    @abstractmethod
    def delete_workload(self, namespace: str, name: str, kind: str) -> bool:
        """Ask for the workload's objects to go. True while any of them (or its pods)
        still exists, False once everything is gone."""

    @abstractmethod
    def pods(self, namespace: str, workload: str) -> list[PodInfo]:
        """The workload's pods, by name."""

    def logs(self, namespace: str, pod: str, *, tail: int = 200) -> Iterator[str]:
        """Stream the pod's log lines (follows). Default: ``LogsUnavailable``."""
        raise LogsUnavailable("This cluster's nodes provide no container logs.")

    # --- Security groups (optional: ``capabilities["security_groups"]``) ------------
    def group_policies_sync(
        self,
        namespace: str,
        tenant: str,
        groups: list[GroupPolicySpec],
        *,
        snapshot: ClusterSnapshot | None = None,
    ) -> list[str]:
        """Make the namespace's security group policies exactly ``groups`` (applied,
        others of Isotope's removed); the default-deny and the namespace's fixed
        policies are left alone. Returns the policy names. With a ``snapshot`` that
        listed the policies, those in place are not applied again and the ones to
        remove are taken from it."""
        raise BackendError(host_texts.CLUSTER_NO_SECURITY_GROUPS)

    # --- Load-balanced services (optional: ``capabilities["load_balancers"]``) --------
    def load_balancer_apply(self, spec: LoadBalancerSpec) -> LoadBalancerStatus:
        """Make the Service and its EndpointSlices exactly ``spec`` (idempotent) and
        return what the cluster allocated. Raises QuotaRefused, BackendError."""
        raise BackendError(host_texts.CLUSTER_NO_LOAD_BALANCERS)

    def load_balancer_delete(self, namespace: str, name: str) -> bool:
        """Ask for the Service and its EndpointSlices to go. True while any exists."""
        raise BackendError(host_texts.CLUSTER_NO_LOAD_BALANCERS)

    # --- HorizontalPodAutoscalers (optional: ``capabilities["autoscalers"]``) ---------
    def autoscalers_sync(
        self, namespace: str, deployment: str, wanted: AutoscalerSpec | None
    ) -> None:
        """Make Isotope's HorizontalPodAutoscalers of ``deployment`` exactly ``wanted``
        (applied; idempotent) or none (each other one of them deleted)."""
        raise BackendError(host_texts.CLUSTER_NO_AUTOSCALERS)

    def autoscaler_status(self, namespace: str, name: str) -> AutoscalerInfo | None:
        """The HorizontalPodAutoscaler's status, or None when it does not exist."""
        raise BackendError(host_texts.CLUSTER_NO_AUTOSCALERS)

    def pod_usage(self, namespace: str, workload: str) -> dict[str, PodUsage]:
        """The current usage of the workload's pods from the cluster's resource metrics
        API (metrics.k8s.io), by pod name; pods it has no sample of yet are left out.
        Raises TransientBackendError when the metrics API does not answer."""
        raise BackendError(host_texts.CLUSTER_NO_AUTOSCALERS)

    # --- Volume claims (optional: ``capabilities["volume_claims"]``) ------------------
    def claim_apply(self, spec: ClaimSpec) -> None:
        """Create the claim (idempotent). When its StorageClass has no provisioner
        (``kubernetes.io/no-provisioner``), also a hostPath PersistentVolume of that
        size pre-bound to it, so the cluster's own binder binds them. Raises
        QuotaRefused when the namespace's ResourceQuota refuses the claim, BackendError
        when the StorageClass does not exist."""
        raise BackendError(host_texts.CLUSTER_NO_VOLUME_CLAIMS)

    def claim_status(self, namespace: str, name: str) -> ClaimStatus | None:
        """The claim's phase and bound size, or None when it does not exist."""
        raise BackendError(host_texts.CLUSTER_NO_VOLUME_CLAIMS)

    def claim_delete(self, namespace: str, name: str) -> bool:
        """Ask for the claim (and a PersistentVolume made for it) to go. True while the
        claim still exists (a pod using it holds it), False once it is gone."""
        raise BackendError(host_texts.CLUSTER_NO_VOLUME_CLAIMS)

"""Translation of Isotope specs into Kubernetes manifests (plain dicts).

Pure functions, no API calls: what a tenant namespace and a workload look like on the
cluster. Every object carries ``app.kubernetes.io/managed-by: isotope`` and the tenant;
workload objects also carry ``isotope.dev/workload``, which the watches select on.
"""

from __future__ import annotations

from decimal import Decimal

from compute.backends.containers import (
    AutoscalerSpec,
    ClaimSpec,
    GroupPolicySpec,
    LoadBalancerSpec,
    TenantSpec,
    WorkloadSpec,
)

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "isotope"
TENANT_LABEL = "isotope.dev/tenant"
WORKLOAD_LABEL = "isotope.dev/workload"
UID_ANNOTATION = "isotope.dev/uid"
GENERATION_ANNOTATION = "isotope.dev/generation"
# On a bare pod: the keys of the tenant's labels it was given, comma separated, so that a
# relabel removes the ones no longer wanted and never a label someone else put there.
TENANT_LABELS_ANNOTATION = "isotope.dev/tenant-labels"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
# A HorizontalPodAutoscaler of Isotope's: its autoscaler's name (the HPA's own), and the
# Deployment it scales under WORKLOAD_LABEL.
AUTOSCALER_LABEL = "isotope.dev/autoscaler"
# The period of the step limits, as Isotope's own controller counts them for VM pools.
SCALE_PERIOD_SECONDS = 15
# An Isotope Service's EndpointSlice: named after it, and marked as Isotope's so that
# the cluster's EndpointSlice controllers leave it alone.
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
SLICE_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
SLICE_MANAGER = "isotope.dev"
LOAD_BALANCER_LABEL = "isotope.dev/service"

QUOTA_NAME = "isotope-quota"
LIMITS_NAME = "isotope-defaults"
DENY_POLICY = "default-deny"
SAME_NAMESPACE_POLICY = "allow-same-namespace"
SERVICE_ACCOUNT = "isotope-workload"
ROLE_BINDING = "isotope-workload-view"
CONTAINER = "main"
# Security groups: a pod in group G carries GROUP_LABEL_PREFIX + G; each group is the
# NetworkPolicy GROUP_POLICY_PREFIX + G, labelled GROUP_POLICY_LABEL = G.
GROUP_LABEL_PREFIX = "securitygroup.isotope.dev/"
GROUP_POLICY_LABEL = "isotope.dev/securitygroup"
GROUP_POLICY_PREFIX = "sg-"
DEFAULT_GROUP = "default"

# Defaults for containers created without requests/limits (outside the portal).
DEFAULT_REQUEST = {"cpu": "100m", "memory": "128Mi"}
DEFAULT_LIMIT = {"cpu": "500m", "memory": "256Mi"}

MIB = 1024 * 1024


# Quantities are written in the form the API server stores them in (its canonical form:
# the largest suffix that keeps the number whole), so that what a reconcile pass lists
# compares equal to what Isotope applies: "1024Gi" is stored as "1Ti", 1000 cores as "1k".
_DECIMAL_SUFFIXES = (("E", 10**18), ("P", 10**15), ("T", 10**12), ("G", 10**9), ("M", 10**6))
_BINARY_SUFFIXES = (
    ("Ei", 1024**6),
    ("Pi", 1024**5),
    ("Ti", 1024**4),
    ("Gi", 1024**3),
    ("Mi", 1024**2),
    ("Ki", 1024),
)


def cpu_quantity(millicores: int) -> str:
    """``1500`` → ``1500m``; whole cores as plain numbers (``2000`` → ``2``), thousands
    of them with a decimal suffix (``1000000`` → ``1k``)."""
    if millicores % 1000:
        return f"{millicores}m"
    cores = millicores // 1000
    for suffix, factor in (*_DECIMAL_SUFFIXES, ("k", 10**3)):
        if cores and cores % factor == 0:
            return f"{cores // factor}{suffix}"
    return str(cores)


def memory_quantity(size: int) -> str:
    """Bytes with the largest binary suffix that keeps them whole (``Ki`` … ``Ei``), else
    with the largest decimal one (``k`` … ``E``), else plain bytes."""
    for suffix, factor in (*_BINARY_SUFFIXES, *_DECIMAL_SUFFIXES, ("k", 10**3)):
        if size and size % factor == 0:
            return f"{size // factor}{suffix}"
    return str(size)


def cores_quantity(cores: Decimal) -> str:
    return cpu_quantity(int(cores * 1000))


def tenant_labels(tenant: str) -> dict[str, str]:
    return {MANAGED_BY: MANAGER, TENANT_LABEL: tenant}


def _meta(name: str, spec: TenantSpec, namespaced: bool = True) -> dict:
    meta = {"name": name, "labels": tenant_labels(spec.tenant)}
    if namespaced:
        meta["namespace"] = spec.namespace
    return meta


def namespace(spec: TenantSpec) -> dict:
    meta = _meta(spec.namespace, spec, namespaced=False)
    # Pod Security "baseline": no privileged pods, host namespaces or host paths.
    meta["labels"] = {
        **meta["labels"],
        "pod-security.kubernetes.io/enforce": "baseline",
        "kubernetes.io/metadata.name": spec.namespace,
    }
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def resource_quota(spec: TenantSpec) -> dict:
    """The tenant's limits as the namespace's backstop (Isotope's ledger decides first)."""
    memory_mib = int(spec.memory_mib)
    hard = {
        "requests.cpu": cores_quantity(spec.cpu),
        "requests.memory": memory_quantity(memory_mib * MIB),
        "limits.cpu": cores_quantity(spec.cpu * spec.limit_ratio),
        "limits.memory": memory_quantity(int(memory_mib * spec.limit_ratio) * MIB),
        "count/pods": str(spec.pods),
    }
    if spec.storage_gib is not None:
        # The tenant's one storage limit; VM disks share it in Isotope's ledger.
        hard["requests.storage"] = memory_quantity(int(spec.storage_gib) * 1024**3)
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": _meta(QUOTA_NAME, spec),
        "spec": {"hard": hard},
    }


def limit_range(spec: TenantSpec) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": _meta(LIMITS_NAME, spec),
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "default": dict(DEFAULT_LIMIT),
                    "defaultRequest": dict(DEFAULT_REQUEST),
                }
            ]
        },
    }


def deny_policy(spec: TenantSpec) -> dict:
    """Nothing in, nothing out, unless another policy allows it."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(DENY_POLICY, spec),
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }


def same_namespace_policy(spec: TenantSpec) -> dict:
    """Pods of the tenant talk to each other, and resolve names through cluster DNS."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(SAME_NAMESPACE_POLICY, spec),
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {}}]}],
            "egress": [
                {"to": [{"podSelector": {}}]},
                {
                    "to": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                            }
                        }
                    ],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                },
            ],
        },
    }


def service_account(spec: TenantSpec) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(SERVICE_ACCOUNT, spec),
        "automountServiceAccountToken": False,
    }


def role_binding(spec: TenantSpec) -> dict:
    """The workloads' service account may read (only) its own namespace."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(ROLE_BINDING, spec),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [
            {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": spec.namespace}
        ],
    }


def tenant_objects(spec: TenantSpec) -> list[dict]:
    """Everything a tenant namespace holds, namespace first."""
    return [
        namespace(spec),
        resource_quota(spec),
        limit_range(spec),
        deny_policy(spec),
        same_namespace_policy(spec),
        service_account(spec),
        role_binding(spec),
    ]


# --- Workloads -------------------------------------------------------------------------
def workload_labels(spec: WorkloadSpec) -> dict[str, str]:
    return {MANAGED_BY: MANAGER, TENANT_LABEL: spec.tenant, WORKLOAD_LABEL: spec.name}


def portal_annotations(uid: str, generation: int) -> dict[str, str]:
    """Isotope's uid and spec generation of an object it writes, as annotations (the
    watch tells by them whether what it sees was applied from the newest spec)."""
    annotations = {}
    if uid:
        annotations[UID_ANNOTATION] = uid
    if generation:
        annotations[GENERATION_ANNOTATION] = str(generation)
    return annotations


def _workload_meta(spec: WorkloadSpec, name: str | None = None) -> dict:
    meta = {
        "name": name or spec.name,
        "namespace": spec.namespace,
        "labels": workload_labels(spec),
    }
    if annotations := portal_annotations(spec.portal_uid, spec.portal_generation):
        meta["annotations"] = annotations
    return meta


def container(spec: WorkloadSpec) -> dict:
    body: dict = {
        "name": CONTAINER,
        "image": spec.image,
        "resources": {
            "requests": {
                "cpu": cpu_quantity(spec.cpu_request_m),
                "memory": memory_quantity(spec.memory_request),
            },
            "limits": {
                "cpu": cpu_quantity(spec.cpu_limit_m),
                "memory": memory_quantity(spec.memory_limit),
            },
        },
    }
    if spec.command:
        body["command"] = list(spec.command)
    if spec.args:
        body["args"] = list(spec.args)
    if spec.env:
        body["env"] = [{"name": k, "value": v} for k, v in sorted(spec.env.items())]
    if spec.ports:
        body["ports"] = [
            {"name": f"p{port}", "containerPort": port, "protocol": "TCP"} for port in spec.ports
        ]
    return body


def pod_spec(spec: WorkloadSpec) -> dict:
    body = {
        "serviceAccountName": SERVICE_ACCOUNT,
        "automountServiceAccountToken": False,
        "containers": [container(spec)],
    }
    if spec.mounts:
        body["volumes"], body["containers"][0]["volumeMounts"] = claim_mounts(spec)
    return body


def claim_mounts(spec: WorkloadSpec) -> tuple[list[dict], list[dict]]:
    """The pod's volumes (one per claim) and the container's mounts of them."""
    volumes, mounts = [], []
    for index, mount in enumerate(spec.mounts):
        name = f"claim-{index}"
        volumes.append(
            {
                "name": name,
                "persistentVolumeClaim": {"claimName": mount.claim, "readOnly": mount.read_only},
            }
        )
        mounts.append({"name": name, "mountPath": mount.mount_path, "readOnly": mount.read_only})
    return volumes, mounts


def pod_labels(spec: WorkloadSpec) -> dict[str, str]:
    """A workload's pods carry the tenant's labels and Isotope's own (which win), one of
    them per security group they are in: the workload's groups, or the tenant's default
    group when it names none (as VM interfaces that name no group are)."""
    groups = spec.security_groups or [DEFAULT_GROUP]
    return {
        **spec.labels,
        **workload_labels(spec),
        **{GROUP_LABEL_PREFIX + group: "member" for group in groups},
    }


def deployment(spec: WorkloadSpec) -> dict:
    labels = pod_labels(spec)
    template_meta: dict = {"labels": labels}
    if spec.restarted_at:
        template_meta["annotations"] = {RESTARTED_AT: spec.restarted_at}
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _workload_meta(spec),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": {WORKLOAD_LABEL: spec.name}},
            # No surge: a rollout never needs more quota than the replicas charged.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
            },
            "template": {"metadata": template_meta, "spec": pod_spec(spec)},
        },
    }
    if spec.autoscaled and spec.replicas > 0:
        # The HorizontalPodAutoscaler's field, except at 0 (scaled to zero): an HPA
        # cannot go below 1, so Isotope holds it there and the HPA stops acting.
        del body["spec"]["replicas"]
    return body


def horizontal_pod_autoscaler(spec: AutoscalerSpec) -> dict:
    """An ``autoscaling/v2`` HorizontalPodAutoscaler for one Deployment: a Resource
    metric with an average Utilization target, and the behaviour Isotope's autoscalers
    have (scale-down stabilisation window, step limits per 15 s period)."""
    meta = {
        "name": spec.name,
        "namespace": spec.namespace,
        "labels": {
            MANAGED_BY: MANAGER,
            TENANT_LABEL: spec.tenant,
            WORKLOAD_LABEL: spec.deployment,
            AUTOSCALER_LABEL: spec.name,
        },
    }
    if annotations := portal_annotations(spec.portal_uid, spec.portal_generation):
        meta["annotations"] = annotations
    up = [{"type": "Pods", "value": spec.scale_up_pods, "periodSeconds": SCALE_PERIOD_SECONDS}]
    if spec.scale_up_percent > 0:  # 0 % adds nothing: the pods policy alone limits
        up.append(
            {
                "type": "Percent",
                "value": spec.scale_up_percent,
                "periodSeconds": SCALE_PERIOD_SECONDS,
            }
        )
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta,
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": spec.deployment,
            },
            "minReplicas": spec.min_replicas,
            "maxReplicas": spec.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": spec.metric,
                        "target": {"type": "Utilization", "averageUtilization": spec.target},
                    },
                }
            ],
            "behavior": {
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "selectPolicy": "Max",
                    "policies": up,
                },
                "scaleDown": {
                    "stabilizationWindowSeconds": spec.scale_down_window_seconds,
                    "selectPolicy": "Max",
                    "policies": [
                        {
                            "type": "Percent",
                            "value": spec.scale_down_percent,
                            "periodSeconds": SCALE_PERIOD_SECONDS,
                        }
                    ],
                },
            },
        },
    }


def pod(spec: WorkloadSpec) -> dict:
    meta = {**_workload_meta(spec), "labels": pod_labels(spec)}
    meta["annotations"] = {
        **meta.get("annotations", {}),
        TENANT_LABELS_ANNOTATION: ",".join(sorted(spec.labels)),
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {**pod_spec(spec), "restartPolicy": "Always"},
    }


def service(spec: WorkloadSpec) -> dict | None:
    """A Service for the workload's ports, when it asks for one."""
    if not spec.service_type or not spec.ports:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _workload_meta(spec),
        "spec": {
            "type": spec.service_type,
            "selector": {WORKLOAD_LABEL: spec.name},
            "ports": [
                {"name": f"p{port}", "port": port, "targetPort": port, "protocol": "TCP"}
                for port in spec.ports
            ],
        },
    }


def service_policy(spec: WorkloadSpec) -> dict | None:
    """A NodePort service is reached from outside the namespace: allow its ports in."""
    if spec.service_type != "NodePort" or not spec.ports:
        return None
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _workload_meta(spec, f"{spec.name}-ingress"),
        "spec": {
            "podSelector": {"matchLabels": {WORKLOAD_LABEL: spec.name}},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": p} for p in spec.ports]}],
        },
    }


def workload_objects(spec: WorkloadSpec) -> list[dict]:
    """The workload's objects in apply order (the main object first)."""
    main = deployment(spec) if spec.kind == "Deployment" else pod(spec)
    return [obj for obj in (main, service(spec), service_policy(spec)) if obj is not None]


# --- Security groups -------------------------------------------------------------------
def _group_selector(group: str) -> dict:
    return {"matchExpressions": [{"key": GROUP_LABEL_PREFIX + group, "operator": "Exists"}]}


def _policy_peer_rule(rule, side: str) -> dict:
    if rule.remote_group:
        peer = {"podSelector": _group_selector(rule.remote_group)}
    else:
        peer = {"ipBlock": {"cidr": rule.remote_cidr}}
    item: dict = {side: [peer]}
    if rule.protocol != "any":
        port: dict = {"protocol": rule.protocol.upper()}
        if rule.port_min is not None:
            port["port"] = rule.port_min
            if rule.port_max is not None and rule.port_max > rule.port_min:
                port["endPort"] = rule.port_max
        item["ports"] = [port]
    return item


def group_policy(namespace: str, tenant: str, group: GroupPolicySpec) -> dict:
    """The group's rules as one allow policy for the pods labelled with the group (the
    namespace's default-deny drops everything no policy allows). ICMP rules have no
    NetworkPolicy form and are left out."""
    ingress = [
        _policy_peer_rule(r, "from")
        for r in group.rules
        if r.direction == "ingress" and r.protocol != "icmp"
    ]
    egress = [
        _policy_peer_rule(r, "to")
        for r in group.rules
        if r.direction == "egress" and r.protocol != "icmp"
    ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": GROUP_POLICY_PREFIX + group.name,
            "namespace": namespace,
            "labels": {**tenant_labels(tenant), GROUP_POLICY_LABEL: group.name},
        },
        "spec": {
            "podSelector": _group_selector(group.name),
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        },
    }


# --- Volume claims ---------------------------------------------------------------------
NO_PROVISIONER = "kubernetes.io/no-provisioner"
PV_PREFIX = "isotope-"


def storage_class(name: str) -> dict:
    """Local volumes bound at once to PersistentVolumes the portal makes per claim."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name, "labels": {MANAGED_BY: MANAGER}},
        "provisioner": NO_PROVISIONER,
        "volumeBindingMode": "Immediate",
        "reclaimPolicy": "Retain",
        "allowVolumeExpansion": False,
    }


def claim_labels(spec: ClaimSpec) -> dict[str, str]:
    return {MANAGED_BY: MANAGER, TENANT_LABEL: spec.tenant, VOLUME_LABEL: spec.name}


VOLUME_LABEL = "isotope.dev/volume"


def persistent_volume_name(spec: ClaimSpec) -> str:
    return f"{PV_PREFIX}{spec.portal_uid}"


def persistent_volume_claim(spec: ClaimSpec, *, volume_name: str = "") -> dict:
    body = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": f"{spec.size_gib}Gi"}},
        "storageClassName": spec.storage_class,
    }
    if volume_name:
        body["volumeName"] = volume_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "labels": claim_labels(spec),
            "annotations": {UID_ANNOTATION: spec.portal_uid},
        },
        "spec": body,
    }


def persistent_volume(spec: ClaimSpec) -> dict:
    """A hostPath volume of the claim's size, reserved for that claim (claimRef), for a
    StorageClass without a provisioner. Retained: the portal deletes it with the claim."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": persistent_volume_name(spec),
            "labels": claim_labels(spec),
            "annotations": {UID_ANNOTATION: spec.portal_uid},
        },
        "spec": {
            "capacity": {"storage": f"{spec.size_gib}Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": spec.storage_class,
            "volumeMode": "Filesystem",
            "hostPath": {
                "path": f"{spec.volume_root.rstrip('/')}/{spec.namespace}/{spec.name}",
                "type": "DirectoryOrCreate",
            },
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": spec.namespace,
                "name": spec.name,
            },
        },
    }


# --- Isotope Services (VMs and pods behind one name) -----------------------------------
def _load_balancer_meta(spec: LoadBalancerSpec, name: str) -> dict:
    meta = {
        "name": name,
        "namespace": spec.namespace,
        "labels": {**tenant_labels(spec.tenant), LOAD_BALANCER_LABEL: spec.name},
    }
    if spec.portal_uid:
        meta["annotations"] = {UID_ANNOTATION: spec.portal_uid}
    return meta


def load_balancer_service(spec: LoadBalancerSpec) -> dict:
    """The Service, without a selector: its endpoints are Isotope's EndpointSlice."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _load_balancer_meta(spec, spec.name),
        "spec": {
            "type": spec.service_type,
            "ports": [
                {
                    "name": port.name,
                    "protocol": port.protocol,
                    "port": port.port,
                    "targetPort": port.target_port,
                }
                for port in spec.ports
            ],
        },
    }


def endpoint_slice_name(service: str, index: int = 0) -> str:
    """The first slice is ``<service>-isotope``, the next ``<service>-isotope-2``, …"""
    return f"{service}-isotope" if index == 0 else f"{service}-isotope-{index + 1}"


def endpoint_slice_selector(service: str) -> str:
    """The label selector of every slice Isotope keeps for ``service``."""
    return f"{SERVICE_NAME_LABEL}={service},{SLICE_MANAGED_BY}={SLICE_MANAGER}"


def _numeric_targets(spec: LoadBalancerSpec) -> tuple:
    """Each port's target as a number (``None`` for a named one)."""
    return tuple(p.target_port if isinstance(p.target_port, int) else None for p in spec.ports)


def _target_ports(spec: LoadBalancerSpec, member) -> tuple:
    """The number each port reaches on ``member`` (``None``: it has no such port)."""
    return tuple(member.target_ports) if member.target_ports else _numeric_targets(spec)


def endpoint_slices(spec: LoadBalancerSpec) -> list[dict]:
    """The members in slices of at most ``spec.endpoints_per_slice`` (one, empty, when
    there are none): a pod by its targetRef, a VM by its hostname (a VM is no Kubernetes
    object), each with its readiness. A slice's ports are one list for all its members,
    so members whose named target ports resolve to different numbers go into different
    slices (as Kubernetes' own controller does), grouped by those numbers. Members are
    sorted, so each keeps its slice while others come and go after it."""
    per_slice = max(1, spec.endpoints_per_slice)
    groups: dict[tuple, list] = {}
    for member in sorted(spec.endpoints, key=lambda m: (m.kind, m.name)):
        groups.setdefault(_target_ports(spec, member), []).append(member)
    chunks = []
    for targets in sorted(groups, key=lambda t: [-1 if n is None else n for n in t]):
        members = groups[targets]
        chunks += [(targets, members[i : i + per_slice]) for i in range(0, len(members), per_slice)]
    if not chunks:
        chunks = [(_numeric_targets(spec), [])]
    return [
        _endpoint_slice(spec, index, members, targets)
        for index, (targets, members) in enumerate(chunks)
    ]


def _endpoint_slice(spec: LoadBalancerSpec, index: int, members, targets: tuple) -> dict:
    meta = _load_balancer_meta(spec, endpoint_slice_name(spec.name, index))
    meta["labels"].update({SERVICE_NAME_LABEL: spec.name, SLICE_MANAGED_BY: SLICE_MANAGER})
    endpoints = []
    for member in members:
        ready = bool(member.ready)
        item: dict = {
            "addresses": [member.address],
            "conditions": {"ready": ready, "serving": ready, "terminating": False},
        }
        if member.kind == "Pod":
            item["targetRef"] = {"kind": "Pod", "namespace": spec.namespace, "name": member.name}
        else:
            item["hostname"] = member.name
        endpoints.append(item)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": meta,
        "addressType": "IPv4",
        "ports": [
            {"name": port.name, "protocol": port.protocol, "port": number}
            for port, number in zip(spec.ports, targets, strict=True)
            if number is not None
        ],
        "endpoints": endpoints,
    }

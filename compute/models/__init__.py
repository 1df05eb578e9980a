"""Compute models: hosts, images, flavors, virtual machines, VM pools, volumes,
idempotency keys, migrations, networks, services."""

from compute.models.backups import Backup
from compute.models.console import ConsoleTicket
from compute.models.hosts import Host
from compute.models.idempotency import IdempotencyKey
from compute.models.images import Flavor, Image
from compute.models.kubernetes import KubernetesCluster, TenantNamespace, Workload
from compute.models.migrations import HostDrain, Migration, MigrationPolicy
from compute.models.networks import Network, NetworkInterface, SecurityGroup, SecurityGroupRule
from compute.models.pools import Autoscaler, VMPool
from compute.models.services import Service
from compute.models.snapshots import Snapshot, SnapshotSchedule
from compute.models.vms import VirtualMachine
from compute.models.volumes import Volume

__all__ = [
    "Autoscaler",
    "Backup",
    "ConsoleTicket",
    "Flavor",
    "Host",
    "HostDrain",
    "IdempotencyKey",
    "Image",
    "KubernetesCluster",
    "Migration",
    "MigrationPolicy",
    "Network",
    "NetworkInterface",
    "SecurityGroup",
    "SecurityGroupRule",
    "Service",
    "Snapshot",
    "SnapshotSchedule",
    "TenantNamespace",
    "VMPool",
    "VirtualMachine",
    "Volume",
    "Workload",
]

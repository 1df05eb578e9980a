"""Choices for hosts, images and virtual machines (SPEC's lifecycle vocabulary)."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class VirtType(models.TextChoices):
    AUTO = "auto", _("Auto (KVM only where a probe guest boots)")
    KVM = "kvm", _("KVM")
    QEMU = "qemu", _("QEMU (TCG)")


class ImageKind(models.TextChoices):
    KERNEL = "kernel", _("Kernel + initrd (direct boot)")
    DISK = "disk", _("Disk base image (copy-on-write)")


class ImagePhase(models.TextChoices):
    """Where an image stands (CDI's DataVolume phases, simplified)."""

    UPLOADING = "Uploading"
    PENDING = "Pending"
    IMPORTING = "Importing"
    CONVERTING = "Converting"
    READY = "Ready"
    FAILED = "Failed"


# Image phases in which an import task (or the uploader) still works on the image.
IMAGE_IMPORT_PHASES = frozenset({ImagePhase.PENDING, ImagePhase.IMPORTING, ImagePhase.CONVERTING})


class ImageSource(models.TextChoices):
    PLATFORM = "", _("Platform (registered by staff)")
    UPLOAD = "upload", _("Uploaded from the browser or a tus client")
    URL = "url", _("Imported from an HTTP(S) URL")


class Phase(models.TextChoices):
    PENDING = "Pending"
    PROVISIONING = "Provisioning"
    STARTING = "Starting"
    RUNNING = "Running"
    PAUSED = "Paused"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    MIGRATING = "Migrating"
    DELETING = "Deleting"
    FAILED = "Failed"
    UNKNOWN = "Unknown"


class ConditionStatus(models.TextChoices):
    """A condition's status, as Kubernetes spells it."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class DesiredState(models.TextChoices):
    RUNNING = "running", _("Running")
    STOPPED = "stopped", _("Stopped")
    PAUSED = "paused", _("Paused")
    DELETED = "deleted", _("Deleted")


class RestartPolicy(models.TextChoices):
    ALWAYS = "Always", _("Always")
    ON_FAILURE = "OnFailure", _("On failure")
    NEVER = "Never", _("Never")


# Phases in which the portal is waiting on a task: the reconciler leaves them alone
# unless they are stuck for longer than a task could take.
TRANSITIONAL_PHASES = frozenset(
    {
        Phase.PENDING,
        Phase.PROVISIONING,
        Phase.STARTING,
        Phase.STOPPING,
        Phase.MIGRATING,
        Phase.DELETING,
    }
)


class MigrationPhase(models.TextChoices):
    """Where one live migration stands (``Pending`` waits for a free slot)."""

    PENDING = "Pending"
    SCHEDULING = "Scheduling"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


# Migrations that hold (or wait for) a slot; the others are history.
ACTIVE_MIGRATION_PHASES = frozenset(
    {MigrationPhase.PENDING, MigrationPhase.SCHEDULING, MigrationPhase.RUNNING}
)
# Migrations that occupy a parallel slot (the cluster's and their source host's).
SLOT_MIGRATION_PHASES = frozenset({MigrationPhase.SCHEDULING, MigrationPhase.RUNNING})


class WorkloadKind(models.TextChoices):
    DEPLOYMENT = "Deployment", _("Deployment (replicas, rolling restart)")
    POD = "Pod", _("Single pod")


class ServiceType(models.TextChoices):
    NONE = "", _("No service")
    CLUSTER_IP = "ClusterIP", _("ClusterIP (inside the cluster)")
    NODE_PORT = "NodePort", _("NodePort (on every node)")


# The phases a workload can show (SPEC's pod column; the VM-only ones never occur).
WORKLOAD_PHASES = (Phase.PENDING, Phase.RUNNING, Phase.DELETING, Phase.FAILED, Phase.UNKNOWN)


# --- Volumes ---------------------------------------------------------------------------
class VolumePhase(models.TextChoices):
    """Where a volume stands (issue 12's vocabulary).

    ``Pending`` until its storage exists, ``Importing`` while data is copied in,
    ``Ready`` (exists, attached to nothing), ``Attached`` (a VM's disk), ``Restoring``
    (a snapshot's data is copied back), ``Failed`` (``message`` says why), ``Deleting``.
    """

    PENDING = "Pending"
    IMPORTING = "Importing"
    READY = "Ready"
    ATTACHED = "Attached"
    RESTORING = "Restoring"
    FAILED = "Failed"
    DELETING = "Deleting"


class SnapshotPhase(models.TextChoices):
    """Where a volume snapshot stands: ``Pending`` while its copy is made, ``Ready``,
    ``Restoring`` while its data is copied back onto the volume, ``Failed``,
    ``Deleting``."""

    PENDING = "Pending"
    READY = "Ready"
    RESTORING = "Restoring"
    FAILED = "Failed"
    DELETING = "Deleting"


class StorageClass(models.TextChoices):
    """Where a volume's data lives: a VM host's libvirt pool, or a Kubernetes claim."""

    LOCAL = "local", _("Local disk (libvirt pool on a VM host)")
    CLUSTER = "cluster", _("Kubernetes volume claim (for pods)")


class VolumeFormat(models.TextChoices):
    QCOW2 = "qcow2", _("qcow2")
    RAW = "raw", _("raw")
    FILESYSTEM = "filesystem", _("Filesystem (PersistentVolumeClaim)")


class VolumeSource(models.TextChoices):
    """What a volume was created from."""

    BLANK = "blank", _("Blank")
    IMAGE = "image", _("Image")
    SNAPSHOT = "snapshot", _("Snapshot")
    VOLUME = "volume", _("Another volume")
    BACKUP = "backup", _("Backup")


class BackupPhase(models.TextChoices):
    """Where a backup stands: ``Pending`` until its task starts, ``Exporting`` while
    its files are written (with progress), ``Ready``, ``Failed``, ``Deleting``."""

    PENDING = "Pending"
    EXPORTING = "Exporting"
    READY = "Ready"
    FAILED = "Failed"
    DELETING = "Deleting"


# Formats each storage class supports (the first is the default).
STORAGE_CLASS_FORMATS = {
    StorageClass.LOCAL: (VolumeFormat.QCOW2, VolumeFormat.RAW),
    StorageClass.CLUSTER: (VolumeFormat.FILESYSTEM,),
}


# Every phase word any resource shows, in the reader's language. The stored and API
# value stays English (``data-phase`` in pages); only what is displayed is translated,
# here for templates (``phase_label``) and in static/js/live.js for live updates.
PHASE_LABELS = {
    "Pending": _("Pending"),
    "Provisioning": _("Provisioning"),
    "Starting": _("Starting"),
    "Running": _("Running"),
    "Paused": _("Paused"),
    "Stopping": _("Stopping"),
    "Stopped": _("Stopped"),
    "Migrating": _("Migrating"),
    "Deleting": _("Deleting"),
    "Failed": _("Failed"),
    "Unknown": _("Unknown"),
    "Scheduling": _("Scheduling"),
    "Succeeded": _("Succeeded"),
    "Cancelled": _("Cancelled"),
    "Uploading": _("Uploading"),
    "Importing": _("Importing"),
    "Converting": _("Converting"),
    "Ready": _("Ready"),
    "Attached": _("Attached"),
    "Restoring": _("Restoring"),
    "Scaling": _("Scaling"),
    "Degraded": _("Degraded"),
    "Detaching": _("Detaching"),
    "Exporting": _("Exporting"),
}


# --- Networks --------------------------------------------------------------------------
class NetworkKind(models.TextChoices):
    """What a tenant network reaches: only its own members (and the host), or also the
    outside world through NAT on the host's uplink."""

    ISOLATED = "isolated", _("Isolated (members only)")
    NAT = "nat", _("NAT to the host's uplink")


class NetworkPhase(models.TextChoices):
    """A network is ``Ready`` once recorded (each host makes its libvirt network when a
    VM attached to it is placed there), ``Deleting`` while it is removed from the hosts,
    ``Failed`` when a host refused it (``message`` says why)."""

    READY = "Ready"
    DELETING = "Deleting"
    FAILED = "Failed"


class NicPhase(models.TextChoices):
    """A VM's network interface: ``Pending`` until it is in the VM's domain,
    ``Attached``, ``Detaching`` while it is taken out, ``Failed``."""

    PENDING = "Pending"
    ATTACHED = "Attached"
    DETACHING = "Detaching"
    FAILED = "Failed"


class RuleDirection(models.TextChoices):
    """Which traffic a security group rule lets through: into the interface
    (``ingress``) or out of it (``egress``). Replies to allowed traffic pass too."""

    INGRESS = "ingress", _("Ingress (into the VM)")
    EGRESS = "egress", _("Egress (out of the VM)")


class RuleProtocol(models.TextChoices):
    TCP = "tcp", "TCP"
    UDP = "udp", "UDP"
    ICMP = "icmp", "ICMP"
    ANY = "any", _("Any")


# --- VM pools and autoscalers ----------------------------------------------------------
class PoolPhase(models.TextChoices):
    """Where a VM pool stands: ``Scaling`` while members are created or removed,
    ``Updating`` while a template change is rolled out, ``Ready`` when every wanted
    member is Running and Ready (and made from the current template), ``Degraded`` when the pool
    cannot have what it wants (quota, no host: ``message`` says why), ``Deleting``."""

    PENDING = "Pending"
    SCALING = "Scaling"
    UPDATING = "Updating"
    READY = "Ready"
    DEGRADED = "Degraded"
    DELETING = "Deleting"


class PoolStrategy(models.TextChoices):
    """How a VM pool replaces its members when the template changes: ``rolling`` a few
    at a time (``max_unavailable``, one extra first), ``recreate`` every old member
    deleted first, the new ones made once their quota is back."""

    ROLLING = "rolling", _("Rolling")
    RECREATE = "recreate", _("Recreate")


class WarmMode(models.TextChoices):
    """How a VM pool keeps its warm members: ``stopped`` (defined, a scale-up boots them)
    or ``paused`` (booted, then suspended: a scale-up resumes them)."""

    STOPPED = "stopped", _("Stopped")
    PAUSED = "paused", _("Paused")


class AutoscalerMetric(models.TextChoices):
    """What an autoscaler measures: the members' average utilisation in percent."""

    # xgettext:no-python-format
    CPU = "cpu", _("CPU utilisation (% of the vCPUs)")
    # xgettext:no-python-format
    MEMORY = "memory", _("Memory utilisation (% of the memory)")


class ServicePhase(models.TextChoices):
    """A Service is ``Pending`` until its objects are on the cluster, ``Ready`` once
    its Service and EndpointSlice are there (whatever the number of members),
    ``Failed`` when the cluster refused them (``message`` says why), ``Deleting``."""

    PENDING = "Pending"
    READY = "Ready"
    FAILED = "Failed"
    DELETING = "Deleting"


# A Service's types: a workload's choices without "no service".
SERVICE_TYPES = [(value, label) for value, label in ServiceType.choices if value]


class PortProtocol(models.TextChoices):
    TCP = "TCP", "TCP"
    UDP = "UDP", "UDP"

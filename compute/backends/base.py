"""The contract between Isotope and a VM hypervisor backend.

Terms:
- A *domain* is one VM on one host, named by Isotope (``isotope-<vm uid>``,
  with the tenant and VM in its metadata). Callers only
  ever pass names; backend ids (libvirt UUIDs) are returned for record keeping but never
  needed to address a domain.
- All calls block until the hypervisor has answered; none waits for a guest to finish
  booting or shutting down (``shutdown`` only asks the guest).
- Errors: :class:`TransientBackendError` when the host cannot be reached or the call
  may succeed if repeated (tasks retry with backoff); :class:`DomainNotFound` when the
  domain does not exist; :class:`BackendError` for everything permanent. Each carries a
  plain reason fit for tenants (``str(error)``) and the hypervisor's own words in
  ``detail``, which only platform staff see.
- Every mutating call is idempotent where the hypervisor allows it: starting a running
  domain, stopping a stopped one or deleting a missing one succeeds.
- *Volumes* (optional, ``capabilities["volumes"]``) live in a *pool* of the host, named
  by Isotope (``pool``, ``name``); a domain's disks refer to them by pool and name, so
  the same definition works on any host whose pool holds a volume of that name (live
  migration pre-creates it there). :class:`VolumeNotFound` when one is missing.
- *Networks* (optional, ``capabilities["networks"]``) are named by Isotope; a domain's
  interfaces refer to them by name, so a VM's definition works on any host where its
  networks were made (``network_ensure``, before ``define``, a start or a migration).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from compute.texts import hosts as host_texts
from compute.texts import vms as vm_texts


class BackendError(Exception):
    """A permanent failure. ``str(error)`` is a plain reason shown to tenants (never the
    hypervisor's own words); ``detail`` holds those, for platform staff only."""

    def __init__(self, message: str = "", *, detail: str = ""):
        super().__init__(message)
        self.detail = detail or message


class TransientBackendError(BackendError):
    """The host is unreachable or busy; the same call may succeed later."""


class DomainNotFound(BackendError):
    """No domain by that name on this host."""


class VolumeNotFound(BackendError):
    """No volume by that name in the pool."""


@dataclass(frozen=True)
class HostFacts:
    hostname: str
    cpus: int
    memory_mib: int
    virt_type: str
    """Domain type guests get here: ``kvm``, ``qemu`` or ``test``."""
    capabilities: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DomainSpec:
    """What a domain should look like; built by the services from a VirtualMachine."""

    name: str
    vcpus: int
    memory_mib: int
    tenant: str
    vm_name: str
    vm_uid: str
    kernel: str = ""
    initrd: str = ""
    cmdline: str = ""
    disk_gib: int = 0
    base_image: str = ""
    base_format: str = "qcow2"
    disks: tuple[DiskSpec, ...] = ()
    """The domain's disks (root ``vda`` first); when given, ``define`` creates no
    volume of its own: the volumes exist already (``volume_create``)."""
    nics: tuple[NicSpec, ...] = ()
    """The domain's interfaces on tenant networks; without any, the guest gets one
    user-mode (SLIRP) interface, which no other guest can reach."""


@dataclass(frozen=True)
class NicSpec:
    """One virtio interface of a domain on a network (made with ``network_ensure``)."""

    network: str
    mac: str
    """``52:54:00:xx:xx:xx``, lowercase; identifies the interface."""
    filter: str = ""
    """The packet filter the interface is bound to (``filter_define``), if any."""


@dataclass(frozen=True)
class FilterRule:
    """One allow rule of a packet filter. ``direction`` is ``in`` (to the guest) or
    ``out`` (from it); ``protocol`` ``tcp``/``udp``/``icmp``/``any``; the other side
    is ``remote_ip`` (a CIDR) or, for ``in`` only, ``remote_mac``. Replies to what a
    rule allows pass too."""

    direction: str
    protocol: str
    port_min: int | None = None
    port_max: int | None = None
    remote_ip: str = ""
    remote_mac: str = ""


@dataclass(frozen=True)
class FilterSpec:
    """A named packet filter of the host: its own rules, the filters it includes
    and, with ``drop_rest``, DHCP allowed and everything no rule allows dropped."""

    name: str
    rules: tuple[FilterRule, ...] = ()
    includes: tuple[str, ...] = ()
    drop_rest: bool = False


@dataclass(frozen=True)
class NetworkSpec:
    """A host's copy of a tenant network: its own bridge, the gateway's address on it,
    dnsmasq's DHCP range and host entries (``(mac, ip)`` fixed addresses)."""

    name: str
    bridge: str
    gateway: str
    prefix: int
    dhcp_start: str
    dhcp_end: str
    nat: bool = False
    hosts: tuple[tuple[str, str], ...] = ()
    title: str = ""
    extension: bool = False
    """Only the bridge (``bridge``, the host's own): no address, DHCP or forwarding.
    The network's home host serves those; a tunnel (``tunnel_ensure``) joins this
    bridge to the home's into one L2 segment."""


@dataclass(frozen=True)
class TunnelSpec:
    """A VXLAN device of this host joining ``bridge`` to the same network's bridges on
    ``peers`` (``(address, UDP port)`` of each other host): ``vni`` names the segment,
    ``local``/``port`` are this host's tunnel address and port. No MAC learning on the
    device: frames the bridge does not know go to every peer (head-end replication)."""

    name: str
    bridge: str
    vni: int
    local: str
    port: int
    peers: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class DiskSpec:
    """One disk of a domain: a volume of the host's pool at a virtio target device."""

    device: str
    """``vda`` (the root disk), ``vdb``, …: the target the hypervisor uses. The guest
    names disks in the order it finds them, so it may call it otherwise."""
    pool: str
    volume: str
    format: str = "qcow2"
    serial: str = ""
    """What the guest reads in ``/sys/block/<disk>/serial`` (≤ 20 characters)."""


@dataclass(frozen=True)
class VolumeSpec:
    """A volume to create in the host's pool: blank, or a copy-on-write overlay of a
    ``backing`` file (an image base) that must exist on the host."""

    pool: str
    name: str
    size_gib: int
    format: str = "qcow2"
    backing: str = ""
    backing_format: str = "qcow2"


@dataclass(frozen=True)
class VolumeInfo:
    """A volume as the host reports it (sizes in bytes)."""

    pool: str
    name: str
    path: str
    capacity: int
    allocation: int
    format: str = ""


@dataclass(frozen=True)
class LiveCopy:
    """How a live snapshot's copies were made: with the filesystems frozen by the guest
    agent (``quiesced``), in ``seconds``."""

    quiesced: bool
    seconds: float


@dataclass(frozen=True)
class PoolInfo:
    """The host's volume pool (sizes in bytes)."""

    name: str
    path: str
    capacity: int
    available: int


@dataclass(frozen=True)
class DomainStatus:
    """The observed state of a domain, from one bulk call per host."""

    name: str
    state: str
    """One of: running, paused, shutoff, crashed, shutdown (in progress), migrating,
    blocked, pmsuspended, nostate."""
    reason: str = ""
    backend_id: str = ""


@dataclass(frozen=True)
class Readiness:
    """What a readiness probe saw inside a guest (the VM's Ready condition)."""

    ready: bool
    reason: str
    """CamelCase, e.g. GuestBooted, GuestAgentResponds, GuestBooting, NoReadinessProbe."""
    message: str


NO_PROBE = Readiness(True, "NoReadinessProbe", vm_texts.NO_PROBE)


class ComputeBackend(ABC):
    """One host's hypervisor. Instances are cheap; connections are pooled per process."""

    #: What this backend supports on this host. Keys: ``live_migration``, ``console``,
    #: ``metrics``, ``acpi_shutdown``, ``volumes`` (the storage calls below),
    #: ``disk_hotplug`` (attach/detach reach a running guest), ``online_resize``.
    #: The UI and API consult these instead of types.
    capabilities: dict[str, bool] = {}

    @abstractmethod
    def facts(self) -> HostFacts:
        """Read the host's identity and capacity. Raises TransientBackendError."""

    @abstractmethod
    def define(self, spec: DomainSpec) -> str:
        """Create the domain's volumes and define it (not started). Returns its backend
        id. Defining an existing domain of that name returns its id unchanged."""

    @abstractmethod
    def start(self, name: str) -> None:
        """Power on. A running domain stays as it is."""

    @abstractmethod
    def shutdown(self, name: str) -> None:
        """Ask the guest to power off (ACPI). Returns at once."""

    @abstractmethod
    def destroy(self, name: str) -> None:
        """Force off. A stopped domain stays as it is."""

    @abstractmethod
    def suspend(self, name: str) -> None:
        """Pause the guest's vCPUs."""

    @abstractmethod
    def resume(self, name: str) -> None:
        """Continue a paused guest."""

    @abstractmethod
    def reboot(self, name: str) -> None:
        """Restart the guest (reset when it does not answer ACPI)."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Force off and undefine the domain. Missing is fine. Volumes outlive it
        (``volume_delete``), except a pre-volume root disk named after the domain."""

    @abstractmethod
    def undefine_keep_volumes(self, name: str) -> None:
        """Undefine a stopped domain but keep its volumes (to redefine it resized)."""

    @abstractmethod
    def defined_size(self, name: str) -> tuple[int, int]:
        """(vCPUs, memory MiB) of the domain's definition. Raises DomainNotFound."""

    @abstractmethod
    def status(self, name: str) -> DomainStatus:
        """One domain's state. Raises DomainNotFound."""

    @abstractmethod
    def list_statuses(self) -> dict[str, DomainStatus]:
        """Every domain on the host, by name, from one bulk call."""

    def console_endpoint(self, name: str) -> tuple[str, int] | None:
        """``(host, port)`` of the running domain's VNC server, or None (default: none)."""
        return None

    def serial_log(self, name: str) -> str | None:
        """Path of the serial console log file, when the backend writes one."""
        return None

    def boot_mark(self, name: str) -> int | None:
        """Where the guest's next console output will start (the serial log's size now),
        taken before a start or reboot so that a readiness probe only counts what that
        boot prints. None when the backend keeps no log (default)."""
        return None

    def guest_ready(self, name: str, *, banner: str = "", since: int | None = None) -> Readiness:
        """Probe whether the guest of running domain ``name`` is up: a QEMU guest agent
        that answers a ping, else ``banner`` printed on the serial console after byte
        ``since`` of its log. Never blocks on the guest for more than a few seconds.
        Default: nothing to probe, so Ready follows Running (:data:`NO_PROBE`)."""
        return NO_PROBE

    def ready_unprobed(self, name: str) -> Readiness | None:
        """The guest's readiness when it is known without asking the guest (there is
        nothing inside to probe), so that it can be recorded with the Running phase;
        None when only :meth:`guest_ready` can tell. Default: :data:`NO_PROBE`, as
        :meth:`guest_ready` answers."""
        return NO_PROBE

    def domain_stats(self) -> dict[str, dict]:
        """Resource counters of every domain on the host, by name, from one bulk call.

        Each value may hold (absent when the hypervisor does not report it, e.g. on a
        stopped domain or libvirt's test driver, which reports only the state):
        ``state`` (as in :class:`DomainStatus`), ``cpu_time_ns`` (cumulative guest CPU
        time), ``memory_max_kib``, ``memory_used_kib`` (guest-reported used memory, or
        the process' resident size when the guest has no balloon driver),
        ``disk_read_bytes`` / ``disk_write_bytes`` and ``net_rx_bytes`` / ``net_tx_bytes``
        (cumulative, summed over all disks and interfaces). Counters only grow while the
        domain runs and restart from zero when it starts again.

        Optional (``capabilities["metrics"]``); the default reports nothing. Raises
        TransientBackendError when the host cannot be reached.
        """
        return {}

    # --- Volumes (optional: ``capabilities["volumes"]``) ------------------------------
    # Defaults refuse: the backend has no storage. All calls are idempotent.
    def storage_pool(self, path: str) -> PoolInfo:
        """Make sure the host's volume pool exists at ``path`` (a directory on the
        host) and is active; report its size. Raises BackendError when a pool of that
        name exists elsewhere."""
        raise BackendError(host_texts.BACKEND_NO_VOLUME_STORAGE)

    def volume_create(self, spec: VolumeSpec) -> VolumeInfo:
        """Create the volume (blank, or an overlay of ``spec.backing``); an existing
        volume of that name is returned as it is."""
        raise BackendError(host_texts.BACKEND_NO_VOLUME_STORAGE)

    def volume_clone(self, source: VolumeSpec, spec: VolumeSpec) -> VolumeInfo:
        """Create ``spec`` as a full, independent copy of ``source`` (same host), at
        least as large as ``spec.size_gib``. Blocks for the copy."""
        raise BackendError(host_texts.BACKEND_NO_VOLUME_CLONE)

    def volume_resize(self, pool: str, name: str, size_gib: int) -> VolumeInfo:
        """Grow a volume that no running domain uses (``disk_resize`` for those).
        A volume at least that large is left as it is; nothing ever shrinks."""
        raise BackendError(host_texts.BACKEND_NO_VOLUME_RESIZE)

    def volume_delete(self, pool: str, name: str) -> None:
        """Remove the volume and its data; a missing one is fine."""
        raise BackendError(host_texts.BACKEND_NO_VOLUME_STORAGE)

    def volume_info(self, pool: str, name: str) -> VolumeInfo:
        """The volume's path and sizes. Raises VolumeNotFound."""
        raise BackendError(host_texts.BACKEND_NO_VOLUME_STORAGE)

    def volume_export(self, pool: str, name: str, dest, on_progress) -> int:
        """Write the volume's file, byte for byte, to the local path ``dest`` (a new
        file; the caller removes it on failure), calling ``on_progress(done, total)``
        in bytes as it goes; return how many bytes were written. Raises
        VolumeNotFound. Blocks for the copy."""
        raise BackendError(host_texts.BACKEND_NO_VOLUME_EXPORT)

    def volume_import(self, spec: VolumeSpec, source, on_progress) -> VolumeInfo:
        """Create ``spec`` holding the bytes of the local file ``source`` (a standalone
        image of ``spec.format``); an existing volume of that name is replaced. Blocks
        for the copy."""
        raise BackendError(host_texts.BACKEND_NO_VOLUME_IMPORT)

    def disk_attach(self, name: str, disk: DiskSpec) -> bool:
        """Attach ``disk`` to domain ``name``: hot-plugged into the running guest and
        kept in its definition (a stopped domain gets it in its definition only).
        Returns False when that device already holds this volume (nothing done)."""
        raise BackendError(host_texts.BACKEND_NO_DISK_ATTACH)

    def disk_detach(self, name: str, device: str) -> bool:
        """Detach the disk at ``device`` from the guest and its definition. Returns
        False when no disk is there. Blocks until the guest let go (or raises)."""
        raise BackendError(host_texts.BACKEND_NO_DISK_DETACH)

    def disk_resize(self, name: str, device: str, size_gib: int) -> None:
        """Grow the disk at ``device`` of the running domain ``name`` online, so the
        guest sees the new size at once."""
        raise BackendError(host_texts.BACKEND_NO_ONLINE_DISK_RESIZE)

    def disks(self, name: str) -> list[DiskSpec]:
        """The volume disks in the domain's definition."""
        return []

    # --- Live snapshots -----------------------------------------------------------------
    def snapshot_live(
        self,
        name: str,
        copies: list[tuple[str, VolumeSpec, VolumeSpec]],
        memory: tuple[str, str] | None = None,
    ) -> LiveCopy:
        """Copy the disks of the running (or paused) domain ``name`` at one moment:
        ``copies`` are (device, its volume, the copy to make). The guest's filesystems
        are frozen first when its agent answers; no copy may exist yet (the caller drops
        what an earlier try left). With ``memory`` (pool, file) the guest
        is paused through the copies and its memory state is saved too
        (:meth:`memory_save`), so both agree; it then runs as before. The default
        pauses the guest while :meth:`volume_clone` copies each disk."""
        running = self.status(name).state == "running"
        quiesced = running and self.freeze(name)
        started = time.monotonic()
        try:
            if running:
                self.suspend(name)
            for _device, source, target in copies:
                self.volume_clone(source, target)
            if memory is not None:
                self.memory_save(name, *memory)
        finally:
            self._live_done(name, resume=running, thaw=quiesced)
        return LiveCopy(quiesced=quiesced, seconds=time.monotonic() - started)

    def _live_done(self, name: str, *, resume: bool, thaw: bool) -> None:
        """After a live copy, whatever happened: resume the guest it paused and thaw the
        filesystems it froze (the thaw even when the resume fails)."""
        try:
            if resume:
                self.resume(name)
        finally:
            if thaw:
                self.thaw(name)

    def freeze(self, name: str) -> bool:
        """Ask the guest agent to freeze the guest's filesystems; False (nothing done)
        when no agent answers. The default has no agent."""
        return False

    def thaw(self, name: str) -> None:
        """Undo :meth:`freeze` (no-op when nothing is frozen)."""
        return None

    def memory_save(self, name: str, pool: str, file: str) -> VolumeInfo:
        """Optional (``capabilities["memory_state"]``): write the paused domain's memory
        and device state to ``file`` in ``pool`` and start it again from that file at
        once, still paused. Raises BackendError when unsupported."""
        raise BackendError(host_texts.BACKEND_NO_MEMORY_STATE)

    def memory_resume(self, name: str, pool: str, file: str) -> None:
        """Start the stopped domain from the memory state in ``file`` (running), where
        :meth:`memory_save` left it. Raises VolumeNotFound when the file is gone."""
        raise BackendError(host_texts.BACKEND_NO_MEMORY_STATE)

    # --- Networks (optional: ``capabilities["networks"]``) ----------------------------
    def network_ensure(self, spec: NetworkSpec) -> None:
        """Make the network exist and run on this host (defined, started, autostarted),
        with exactly ``spec.hosts`` as DHCP host entries. Idempotent. Raises
        BackendError when the host refuses it (e.g. an overlapping network is active)."""
        raise BackendError(host_texts.BACKEND_NO_NETWORKS)

    def network_delete(self, name: str) -> bool:
        """Stop and undefine the network; False when it was not here."""
        raise BackendError(host_texts.BACKEND_NO_NETWORKS)

    def network_names(self) -> list[str]:
        """The networks defined on this host (default: none)."""
        return []

    def network_leases(self, name: str) -> dict[str, list[str]]:
        """The DHCP leases the network's dnsmasq on this host handed out
        (``address/prefix`` by MAC); none when it is not here or serves no DHCP."""
        return {}

    # --- Tunnels (optional: ``capabilities["tunnels"]``) ------------------------------
    def tunnel_ensure(self, spec: TunnelSpec) -> None:
        """Make the VXLAN device exist, up, in ``spec.bridge``, sending to exactly
        ``spec.peers``. Idempotent. Raises BackendError when the host's bridge cannot
        be reached from here (the tunnel is made by a worker on the host itself)."""
        raise BackendError(host_texts.BACKEND_NO_TUNNELS)

    def tunnel_delete(self, name: str) -> bool:
        """Remove the VXLAN device; False when it was not there."""
        return False

    def nic_attach(self, name: str, nic: NicSpec) -> bool:
        """Add ``nic`` to domain ``name``: hot-plugged into the running guest and kept
        in its definition (a stopped domain: its definition). False when an interface
        with that MAC is there already (nothing done)."""
        raise BackendError(host_texts.BACKEND_NO_INTERFACE_ATTACH)

    def nic_detach(self, name: str, mac: str) -> bool:
        """Remove the interface with ``mac`` from the guest and its definition. False
        when there is none."""
        raise BackendError(host_texts.BACKEND_NO_INTERFACE_DETACH)

    def interface_addresses(self, name: str) -> dict[str, list[str]]:
        """The running domain's addresses (``address/prefix``) by interface MAC, from
        the DHCP leases of its networks. Default: none known."""
        return {}

    # --- Packet filters (optional: ``capabilities["filters"]``) ----------------------
    def filter_define(self, spec: FilterSpec) -> None:
        """Define or redefine the filter; interfaces bound to it (directly or through a
        filter including it) get the new rules at once, in running guests too."""
        raise BackendError(host_texts.BACKEND_NO_PACKET_FILTERS)

    def filter_delete(self, name: str) -> bool:
        """Remove the filter; False when it was not here or is still in use."""
        return False

    def filter_names(self, prefix: str = "") -> list[str]:
        """The filters defined on this host whose name starts with ``prefix``."""
        return []

    # --- Live migration (optional: ``capabilities["live_migration"]``) ----------------
    def migrate(self, name: str, target: ComputeBackend, options: MigrationOptions) -> None:
        """Live-migrate the running domain to ``target``'s host; blocks until the guest
        runs there (defined persistently there, undefined here) or the job failed.

        Meant to run in its own thread while another polls :meth:`migration_progress`
        and may call :meth:`migration_abort`. Raises BackendError with the hypervisor's
        reason when the job fails or is aborted; the guest then still runs here.
        The default refuses: the backend has no live migration.
        """
        raise BackendError(host_texts.BACKEND_NO_LIVE_MIGRATION)

    def migration_is_live(self, name: str) -> bool:
        """Whether :meth:`migrate` keeps this domain running while its memory is copied
        (False: it is paused for the transfer, which is then its downtime)."""
        return True

    def migration_progress(self, name: str, *, completed: bool = False) -> MigrationProgress | None:
        """The running migration job's counters, or None when no job runs (default).
        With ``completed``: the last finished job's (e.g. its real downtime)."""
        return None

    def migration_abort(self, name: str) -> None:
        """Abort the domain's running migration job; no job is fine (default: nothing)."""
        return None

    def migration_postcopy(self, name: str) -> None:
        """Switch a running migration started with ``post_copy`` to post-copy."""
        raise BackendError(host_texts.BACKEND_NO_POST_COPY)


@dataclass(frozen=True)
class MigrationOptions:
    """How one live migration runs (from the migration policy)."""

    bandwidth_mib: int = 0
    """MiB/s; 0 = unlimited."""
    max_downtime_ms: int = 500
    auto_converge: bool = False
    post_copy: bool = False
    shared_storage_unsafe: bool = False
    """Allow disks whose cache mode is not safe for migration (shared pool path)."""
    copy_disks: tuple[str, ...] = ()
    """Devices whose volumes are local to the source: their data is copied to volumes
    of the same pool and name that the caller pre-created on the target."""


@dataclass(frozen=True)
class MigrationProgress:
    """One sample of a running migration job (bytes, bytes/s, ms)."""

    memory_processed: int = 0
    memory_remaining: int = 0
    memory_total: int = 0
    disk_processed: int = 0
    disk_remaining: int = 0
    disk_total: int = 0
    transfer_rate: int = 0
    dirty_rate: int = 0
    iteration: int = 0
    elapsed_ms: int = 0
    downtime_ms: int | None = None

    @property
    def remaining(self) -> int:
        return self.memory_remaining + self.disk_remaining

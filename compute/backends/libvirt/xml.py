"""Translation of a DomainSpec into libvirt domain and volume XML."""

from __future__ import annotations

import ipaddress
import uuid
import xml.etree.ElementTree as ET

from compute.backends.base import (
    DiskSpec,
    DomainSpec,
    FilterRule,
    FilterSpec,
    NetworkSpec,
    NicSpec,
    VolumeSpec,
)

ISOTOPE_NS = "https://isotope.dev/xmlns/vm/1"
ET.register_namespace("isotope", ISOTOPE_NS)
# Kernel arguments for directly booted guests under TCG, where the guest's timers are
# emulated by a QEMU process that a loaded host (or a migration) stalls at any moment:
# - no_timer_check: early in boot Linux checks that the PIT's timer interrupt arrives
#   within a few ticks measured on the TSC and panics ("IO-APIC + timer doesn't work!")
#   when it does not; the TSC follows the host's clock while the interrupt waits for
#   QEMU's main loop. Linux skips the check itself on KVM (kvmclock sets it).
# - tsc_early_khz=<host TSC kHz>: a TCG guest's TSC runs at the host's TSC rate, but
#   Linux calibrates it against the PIT and, when that disagrees with the HPET, believes
#   the PIT: on a loaded host guests here came up with 43-880 MHz instead of 2596 MHz,
#   their clock running 3-60x fast (soft lockups, timeouts, dead consoles).
TCG_KERNEL_ARGS = "no_timer_check"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs) -> ET.Element:
    element = ET.SubElement(parent, tag, {k.rstrip("_"): str(v) for k, v in attrs.items()})
    if text is not None:
        element.text = text
    return element


def domain_xml(
    spec: DomainSpec,
    *,
    domain_type: str,
    disk_path: str | None,
    disk_format: str = "qcow2",
    serial_log: str | None,
    vnc_port: int | None = None,
    tsc_khz: int | None = None,
) -> str:
    """The domain definition: direct kernel boot or a disk, virtio devices, VNC on
    127.0.0.1 (the console proxy is the only way in; on ``vnc_port`` when given, else
    wherever libvirt's autoport puts it), serial port to a log file. A TCG guest's
    kernel gets :data:`TCG_KERNEL_ARGS` and, with the host's ``tsc_khz``, its TSC
    frequency."""
    domain = ET.Element("domain", {"type": domain_type})
    _sub(domain, "name", spec.name)
    _sub(domain, "title", f"{spec.tenant}/{spec.vm_name}")
    metadata = _sub(domain, "metadata")
    info = ET.SubElement(metadata, f"{{{ISOTOPE_NS}}}vm")
    for key, value in (("tenant", spec.tenant), ("name", spec.vm_name), ("uid", spec.vm_uid)):
        ET.SubElement(info, f"{{{ISOTOPE_NS}}}{key}").text = value
    _sub(domain, "memory", str(spec.memory_mib), unit="MiB")
    _sub(domain, "vcpu", str(spec.vcpus))
    os_el = _sub(domain, "os")
    _sub(os_el, "type", "hvm", arch="x86_64")
    if spec.kernel:
        _sub(os_el, "kernel", spec.kernel)
        if spec.initrd:
            _sub(os_el, "initrd", spec.initrd)
        args = [*spec.cmdline.split(), f"isotope.hostname={spec.vm_name}"]
        if domain_type == "qemu":
            args += [a for a in TCG_KERNEL_ARGS.split() if a not in args]
            if tsc_khz and not any(a.startswith("tsc_early_khz=") for a in args):
                args.append(f"tsc_early_khz={tsc_khz}")
        _sub(os_el, "cmdline", " ".join(args))
    else:
        _sub(os_el, "boot", dev="hd")
    features = _sub(domain, "features")
    _sub(features, "acpi")
    _sub(domain, "on_poweroff", "destroy")
    _sub(domain, "on_reboot", "restart")
    _sub(domain, "on_crash", "destroy")
    devices = _sub(domain, "devices")
    if disk_path:
        disk = _sub(devices, "disk", type="file", device="disk")
        _sub(disk, "driver", name="qemu", type=disk_format)
        _sub(disk, "source", file=disk_path)
        _sub(disk, "target", dev="vda", bus="virtio")
    for volume_disk in spec.disks:
        devices.append(disk_element(volume_disk))
    for nic in spec.nics:
        devices.append(interface_element(nic))
    if not spec.nics:
        iface = _sub(devices, "interface", type="user")
        _sub(iface, "model", type="virtio")
    if serial_log:
        serial = _sub(devices, "serial", type="file")
        # append: the destination of a live migration must not truncate the log.
        _sub(serial, "source", path=serial_log, append="on")
        _sub(serial, "target", port="0")
    graphics = _sub(devices, "graphics", type="vnc", listen="127.0.0.1")
    _set_port(graphics, vnc_port)
    _sub(graphics, "listen", type="address", address="127.0.0.1")
    video = _sub(devices, "video")
    _sub(video, "model", type="vga")
    _sub(devices, "memballoon", model="virtio")
    return ET.tostring(domain, encoding="unicode")


def volume_xml(
    name: str, *, capacity_gib: int, backing: str | None = None, backing_format: str = "qcow2"
) -> str:
    """A qcow2 volume, optionally a copy-on-write overlay over ``backing``."""
    volume = ET.Element("volume")
    _sub(volume, "name", name)
    _sub(volume, "capacity", str(capacity_gib), unit="GiB")
    target = _sub(volume, "target")
    _sub(target, "format", type="qcow2")
    if backing:
        store = _sub(volume, "backingStore")
        _sub(store, "path", backing)
        _sub(store, "format", type=backing_format)
    return ET.tostring(volume, encoding="unicode")


def _set_port(graphics: ET.Element, port: int | None) -> None:
    graphics.set("port", str(port) if port else "-1")
    graphics.set("autoport", "no" if port else "yes")


def with_vnc_port(xml_text: str, port: int) -> str:
    """``xml_text`` (a domain definition) with its VNC server on ``port``."""
    root = ET.fromstring(xml_text)  # noqa: S314 - XML from our own libvirtd
    for graphics in root.iter("graphics"):
        if graphics.get("type") == "vnc":
            _set_port(graphics, port)
    return ET.tostring(root, encoding="unicode")


def vnc_port(live_xml: str) -> int | None:
    """The VNC port of a running domain, read from its live XML."""
    root = ET.fromstring(live_xml)  # noqa: S314 - XML from our own libvirtd
    for graphics in root.iter("graphics"):
        if graphics.get("type") == "vnc":
            port = int(graphics.get("port", "-1"))
            return port if port > 0 else None
    return None


def host_tsc_khz(capabilities_xml: str) -> int | None:
    """The host's TSC frequency in kHz, from libvirt's capabilities (when it says)."""
    root = ET.fromstring(capabilities_xml)  # noqa: S314 - XML from our own libvirtd
    for counter in root.iter("counter"):
        if counter.get("name") == "tsc" and counter.get("frequency", "").isdigit():
            return int(counter.get("frequency")) // 1000 or None
    return None


def domain_type(xml_text: str) -> str:
    """The domain's type (``kvm``, ``qemu`` for TCG, ``test``)."""
    return ET.fromstring(xml_text).get("type", "")  # noqa: S314 - XML from our own libvirtd


def owner_uid(xml_text: str) -> str | None:
    """The uid of the Isotope VM a domain belongs to (from its metadata), if any."""
    root = ET.fromstring(xml_text)  # noqa: S314 - XML from our own libvirtd
    uid = root.find(f"metadata/{{{ISOTOPE_NS}}}vm/{{{ISOTOPE_NS}}}uid")
    return uid.text if uid is not None and uid.text else None


def serial_path(xml_text: str) -> str | None:
    root = ET.fromstring(xml_text)  # noqa: S314 - XML from our own libvirtd
    for serial in root.iter("serial"):
        source = serial.find("source")
        if serial.get("type") == "file" and source is not None:
            return source.get("path")
    return None


def disk_paths(xml_text: str) -> list[str]:
    root = ET.fromstring(xml_text)  # noqa: S314 - XML from our own libvirtd
    paths = []
    for disk in root.iter("disk"):
        source = disk.find("source")
        if source is not None and source.get("file"):
            paths.append(source.get("file"))
    return paths


GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"


def has_guest_agent(xml_text: str) -> bool:
    """Whether the domain has a QEMU guest agent channel (virtio-serial)."""
    root = ET.fromstring(xml_text)  # noqa: S314 - XML from our own libvirtd
    return any(
        target.get("name") == GUEST_AGENT_CHANNEL
        for target in root.iterfind("./devices/channel/target")
    )


# --- Volumes and their disks -----------------------------------------------------------
def pool_xml(name: str, path: str) -> str:
    """A directory pool: each volume is a file in ``path`` on the host."""
    pool = ET.Element("pool", {"type": "dir"})
    _sub(pool, "name", name)
    target = _sub(pool, "target")
    _sub(target, "path", path)
    return ET.tostring(pool, encoding="unicode")


def pool_path(xml_text: str) -> str:
    root = ET.fromstring(xml_text)  # noqa: S314 - XML from our own libvirtd
    return root.findtext("target/path") or ""


def pool_volume_xml(spec: VolumeSpec) -> str:
    """A volume of ``spec.size_gib`` in ``spec.format``, optionally an overlay."""
    volume = ET.Element("volume")
    _sub(volume, "name", spec.name)
    _sub(volume, "capacity", str(spec.size_gib), unit="GiB")
    if spec.format == "raw":
        _sub(volume, "allocation", "0")  # sparse
    target = _sub(volume, "target")
    _sub(target, "format", type=spec.format)
    if spec.backing:
        store = _sub(volume, "backingStore")
        _sub(store, "path", spec.backing)
        _sub(store, "format", type=spec.backing_format)
    return ET.tostring(volume, encoding="unicode")


def disk_element(disk: DiskSpec) -> ET.Element:
    """A virtio disk backed by a pool volume (``type='volume'``: the host resolves the
    pool's path, so the same XML is right on the source and the target of a
    migration)."""
    element = ET.Element("disk", {"type": "volume", "device": "disk"})
    _sub(element, "driver", name="qemu", type=disk.format)
    _sub(element, "source", pool=disk.pool, volume=disk.volume)
    _sub(element, "target", dev=disk.device, bus="virtio")
    if disk.serial:
        _sub(element, "serial", disk.serial)
    return element


def disk_xml(disk: DiskSpec) -> str:
    return ET.tostring(disk_element(disk), encoding="unicode")


def volume_disks(xml_text: str) -> list[DiskSpec]:
    """The pool-volume disks of a domain definition."""
    root = ET.fromstring(xml_text)  # noqa: S314 - XML from our own libvirtd
    found = []
    for disk in root.iter("disk"):
        source, target = disk.find("source"), disk.find("target")
        if disk.get("type") != "volume" or source is None or target is None:
            continue
        driver = disk.find("driver")
        found.append(
            DiskSpec(
                device=target.get("dev", ""),
                pool=source.get("pool", ""),
                volume=source.get("volume", ""),
                format=driver.get("type", "raw") if driver is not None else "raw",
                serial=disk.findtext("serial") or "",
            )
        )
    return found


def hardware(xml_text: str) -> dict:
    """What a saved memory state must agree with to be loaded into a definition: the
    vCPUs, the memory, the disks (device, pool, volume) and the interfaces (MAC)."""
    root = ET.fromstring(xml_text)  # noqa: S314 - XML from our own libvirtd
    memory = root.find("memory")
    size = int(memory.text or 0) if memory is not None else 0
    if memory is not None:
        size *= {"b": 1, "bytes": 1, "kib": 1024, "k": 1024, "mib": 2**20, "m": 2**20}.get(
            (memory.get("unit") or "KiB").lower(), 2**30
        )
    return {
        "vcpus": int(root.findtext("vcpu") or 0),
        "memory": size,
        "disks": sorted((d.device, d.pool, d.volume) for d in volume_disks(xml_text)),
        "interfaces": sorted(n.mac for n in network_interfaces(xml_text)),
    }


def backup_xml(xml_text: str, targets: dict[str, tuple[str, str]]) -> str:
    """A push-mode backup of the domain (``xml_text``, its live definition): each disk
    whose target device is in ``targets`` is copied to ``(file, format)``, every other
    disk is left out."""
    root = ET.fromstring(xml_text)  # noqa: S314 - XML from our own libvirtd
    backup = ET.Element("domainbackup", {"mode": "push"})
    disks = _sub(backup, "disks")
    for disk in root.iterfind("./devices/disk"):
        target = disk.find("target")
        device = target.get("dev", "") if target is not None else ""
        if device not in targets:
            if device:
                _sub(disks, "disk", name=device, backup="no")
            continue
        file, fmt = targets[device]
        element = _sub(disks, "disk", name=device, backup="yes", type="file")
        _sub(element, "target", file=file)
        _sub(element, "driver", type=fmt)
    return ET.tostring(backup, encoding="unicode")


def disk_target_xml(xml_text: str, device: str) -> str | None:
    """The ``<disk>`` element at ``device`` as written in the definition (detaching
    needs the disk as libvirt knows it), or None."""
    root = ET.fromstring(xml_text)  # noqa: S314 - XML from our own libvirtd
    for disk in root.iter("disk"):
        target = disk.find("target")
        if target is not None and target.get("dev") == device:
            return ET.tostring(disk, encoding="unicode")
    return None


def volume_format(volume_xml_text: str) -> str:
    """The format of a pool volume (``qcow2``, ``raw``) from its XML."""
    root = ET.fromstring(volume_xml_text)  # noqa: S314 - XML from our own libvirtd
    element = root.find("target/format")
    return element.get("type", "") if element is not None else ""


def with_disk(xml_text: str, *, add: DiskSpec | None = None, remove: str = "") -> str:
    """A domain definition with the disk at ``remove`` taken out and ``add`` put in."""
    root = ET.fromstring(xml_text)  # noqa: S314 - XML from our own libvirtd
    devices = root.find("devices")
    for disk in list(devices.iter("disk")):
        target = disk.find("target")
        if remove and target is not None and target.get("dev") == remove:
            devices.remove(disk)
    if add is not None:
        devices.append(disk_element(add))
    return ET.tostring(root, encoding="unicode")


# --- Networks and interfaces -----------------------------------------------------------
def network_xml(spec: NetworkSpec) -> str:
    """A libvirt network: its own bridge, the gateway's address, dnsmasq DHCP over the
    range with ``spec.hosts`` as fixed entries; ``<forward mode='nat'/>`` for NAT, no
    forward element (isolated: members and the host only) otherwise. An extension
    (``spec.extension``) is the bridge alone: no address, so no route and no DHCP server
    of its own on the segment (its home host serves them through the tunnel)."""
    network = ET.Element("network")
    _sub(network, "name", spec.name)
    if spec.title:
        _sub(network, "title", spec.title)
    if spec.nat and not spec.extension:
        _sub(network, "forward", mode="nat")
    _sub(network, "bridge", name=spec.bridge, stp="on", delay="0")
    if spec.extension:
        return ET.tostring(network, encoding="unicode")
    ip = _sub(network, "ip", address=spec.gateway, prefix=spec.prefix)
    dhcp = _sub(ip, "dhcp")
    _sub(dhcp, "range", start=spec.dhcp_start, end=spec.dhcp_end)
    for mac, address in spec.hosts:
        _sub(dhcp, "host", mac=mac, ip=address)
    return ET.tostring(network, encoding="unicode")


def dhcp_host_xml(mac: str, address: str) -> str:
    return ET.tostring(ET.Element("host", {"mac": mac, "ip": address}), encoding="unicode")


def dhcp_hosts(network_xml_text: str) -> set[tuple[str, str]]:
    """The ``(mac, ip)`` DHCP host entries of a network definition."""
    root = ET.fromstring(network_xml_text)  # noqa: S314 - XML from our own libvirtd
    return {
        (host.get("mac", "").lower(), host.get("ip", ""))
        for host in root.iterfind("./ip/dhcp/host")
        if host.get("mac") and host.get("ip")
    }


def network_bridge(network_xml_text: str) -> str:
    root = ET.fromstring(network_xml_text)  # noqa: S314 - XML from our own libvirtd
    bridge = root.find("bridge")
    return bridge.get("name", "") if bridge is not None else ""


def interface_element(nic: NicSpec) -> ET.Element:
    """A virtio interface on a libvirt network, with Isotope's MAC address."""
    element = ET.Element("interface", {"type": "network"})
    _sub(element, "mac", address=nic.mac)
    _sub(element, "source", network=nic.network)
    _sub(element, "model", type="virtio")
    if nic.filter:
        _sub(element, "filterref", filter=nic.filter)
    return element


def interface_xml(nic: NicSpec) -> str:
    return ET.tostring(interface_element(nic), encoding="unicode")


def network_interfaces(xml_text: str) -> list[NicSpec]:
    """The network interfaces of a domain definition."""
    root = ET.fromstring(xml_text)  # noqa: S314 - XML from our own libvirtd
    found = []
    for iface in root.iterfind("./devices/interface"):
        mac, source = iface.find("mac"), iface.find("source")
        if iface.get("type") != "network" or mac is None or source is None:
            continue
        bound = iface.find("filterref")
        found.append(
            NicSpec(
                network=source.get("network", ""),
                mac=mac.get("address", "").lower(),
                filter=bound.get("filter", "") if bound is not None else "",
            )
        )
    return found


def interface_by_mac(xml_text: str, mac: str) -> str | None:
    """The ``<interface>`` element with ``mac`` as libvirt holds it, or None."""
    root = ET.fromstring(xml_text)  # noqa: S314 - XML from our own libvirtd
    for iface in root.iterfind("./devices/interface"):
        found = iface.find("mac")
        if found is not None and found.get("address", "").lower() == mac.lower():
            return ET.tostring(iface, encoding="unicode")
    return None


def with_interface(xml_text: str, *, add: NicSpec | None = None, remove: str = "") -> str:
    """A domain definition with the interface of MAC ``remove`` taken out and ``add``
    put in."""
    root = ET.fromstring(xml_text)  # noqa: S314 - XML from our own libvirtd
    devices = root.find("devices")
    for iface in list(devices.iterfind("interface")):
        mac = iface.find("mac")
        address = mac.get("address", "").lower() if mac is not None else ""
        if remove and address == remove.lower():
            devices.remove(iface)
    if add is not None:
        devices.append(interface_element(add))
    return ET.tostring(root, encoding="unicode")


# --- Packet filters (nwfilter) ---------------------------------------------------------
# Rules run in priority order (lower first); the first accept or drop decides. DHCP
# comes first, the filters' allow rules next, the final drop last.
_DHCP_PRIORITY = "100"
_RULE_PRIORITY = "500"
_DROP_PRIORITY = "1000"
FILTER_NAMESPACE = uuid.UUID("5b0b6a43-8d8f-4f0e-9c39-2f1e8e7b3c11")
_PROTOCOL_ELEMENT = {"tcp": "tcp", "udp": "udp", "icmp": "icmp", "any": "all"}


def _filter_rule(parent: ET.Element, rule: FilterRule) -> None:
    element = _sub(
        parent, "rule", action="accept", direction=rule.direction, priority=_RULE_PRIORITY
    )
    match = _sub(element, _PROTOCOL_ELEMENT[rule.protocol])
    side = "src" if rule.direction == "in" else "dst"
    if rule.remote_ip:
        network = ipaddress.IPv4Network(rule.remote_ip)
        match.set(f"{side}ipaddr", str(network.network_address))
        match.set(f"{side}ipmask", str(network.prefixlen))
    if rule.remote_mac:
        match.set("srcmacaddr", rule.remote_mac)
    if rule.port_min is not None:
        match.set("dstportstart", str(rule.port_min))
        match.set("dstportend", str(rule.port_max if rule.port_max is not None else rule.port_min))


def filter_xml(spec: FilterSpec) -> str:
    """An nwfilter in the ``root`` chain (iptables, stateful: replies pass). Its UUID
    follows from its name: libvirt redefines a filter only under the UUID it has, and
    two tasks may define the same filter at once. With ``drop_rest`` all IPv6 is dropped
    too (ip6tables): tenant networks are IPv4 and no rule allows IPv6, so a guest could
    otherwise reach any other on its segment over link-local addresses, whatever their
    groups say."""
    root = ET.Element("filter", {"name": spec.name, "chain": "root"})
    _sub(root, "uuid", str(uuid.uuid5(FILTER_NAMESPACE, spec.name)))
    if spec.drop_rest:
        dhcp_out = _sub(root, "rule", action="accept", direction="out", priority=_DHCP_PRIORITY)
        _sub(dhcp_out, "udp", dstportstart="67", dstportend="67")
        dhcp_in = _sub(root, "rule", action="accept", direction="in", priority=_DHCP_PRIORITY)
        _sub(dhcp_in, "udp", srcportstart="67", srcportend="67", dstportstart="68", dstportend="68")
    for rule in spec.rules:
        _filter_rule(root, rule)
    for name in spec.includes:
        _sub(root, "filterref", filter=name)
    if spec.drop_rest:
        drop = _sub(root, "rule", action="drop", direction="inout", priority=_DROP_PRIORITY)
        _sub(drop, "all")
        drop6 = _sub(root, "rule", action="drop", direction="inout", priority=_DROP_PRIORITY)
        _sub(drop6, "all-ipv6")
    return ET.tostring(root, encoding="unicode")

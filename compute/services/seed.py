"""Register what this machine provides (hosts, the tiny guest image, flavors, the
local Kubernetes cluster)."""

from __future__ import annotations

from pathlib import Path

from compute.choices import ImageKind, VirtType
from compute.models import Flavor, Host, Image
from compute.services.hosts import host_check

FLAVORS = [
    ("tiny", 1, 256, 0),
    ("small", 1, 512, 1),
    ("medium", 2, 1024, 10),
    ("large", 4, 4096, 20),
]


def seed_local_infrastructure() -> list[str]:
    """Hosts from ``tools.infra``'s state (node1/node2, else libvirt's test driver), the
    tiny guest images and default flavors. Idempotent; returns lines to print."""
    from tools.infra import read_state

    lines = []
    libvirt_state = read_state("libvirt")
    nodes = [n for n in libvirt_state.get("nodes", []) if n.get("reachable")]
    if libvirt_state.get("ok") and nodes:
        from tools.infra.libvirt import NODE_TUNNELS, NODE_VNC_PORTS

        for node in nodes:
            # Each node's console ports, apart from the other's on the shared loopback
            # (the state names them; an older state file does not, then tools.infra's).
            low, high = node.get("vnc_ports") or NODE_VNC_PORTS.get(node["name"], (0, 0))
            defaults = {"uri": node["uri"], "virt_type": VirtType.AUTO}
            if low and high:
                defaults.update(vnc_port_min=low, vnc_port_max=high)
            if node["name"] in NODE_TUNNELS:  # one L2 segment per network across nodes
                address, port = NODE_TUNNELS[node["name"]]
                defaults.update(tunnel_address=address, tunnel_port=port)
            host, _ = Host.objects.update_or_create(name=node["name"], defaults=defaults)
            host_check(host)
            lines.append(
                f"host {host.name}: {host.uri} ({'up' if host.reachable else 'down'}), "
                f"console ports {host.vnc_port_min}–{host.vnc_port_max}"
            )
    else:
        host, _ = Host.objects.update_or_create(
            name="test", defaults={"uri": "test:///default", "virt_type": VirtType.QEMU}
        )
        host_check(host)
        reason = libvirt_state.get("reason", "libvirt nodes are not running")
        lines.append(f"host test: libvirt's test driver ({reason})")
    image = read_state("image")
    if image.get("ok"):
        tiny, _ = Image.objects.update_or_create(
            name="tiny",
            tenant=None,
            defaults={
                "display_name": "Tiny guest (busybox)",
                "kind": ImageKind.KERNEL,
                # The compressed kernel: it sets up the VGA console, so the shell shows
                # in the browser console (the ELF vmlinux boots faster but stays blank).
                "kernel_path": image.get("kernel_bzimage") or image["kernel"],
                "initrd_path": image["initrd"],
                "cmdline": "console=ttyS0 console=tty0",
                "min_memory_mib": 128,
                "os_label": "Linux (busybox initramfs)",
                # /init prints it once the shell is up: the VM's Ready condition.
                "ready_banner": "ISOTOPE-GUEST-BOOTED",
                "public": True,
            },
        )
        lines.append(f"image tiny: {tiny.kernel_path}")
    for name, vcpus, memory, disk in FLAVORS:
        Flavor.objects.update_or_create(
            name=name, defaults={"vcpus": vcpus, "memory_mib": memory, "disk_gib": disk}
        )
    lines += seed_local_cluster()
    return lines


def seed_local_cluster() -> list[str]:
    """Register the local Kubernetes control plane (``tools.infra`` state ``k8s``) as the
    default cluster when it is up. Idempotent; returns lines to print."""
    from compute.services.clusters import cluster_check, cluster_register
    from tools.infra import read_state

    state = read_state("k8s")
    if not state.get("ok"):
        return [f"kubernetes: not registered ({state.get('reason', 'not running')})"]
    path = Path(state["kubeconfig"])
    cluster = cluster_register(
        actor=None, name="local", kubeconfig=path.read_text(), default=True, base=path.parent
    )
    cluster = cluster_check(cluster)
    capacity = cluster.capacity or {}
    return [
        f"cluster local: {cluster.server} ({'up' if cluster.reachable else 'down'}, "
        f"{capacity.get('nodes', 0)} nodes, {capacity.get('cpu', 0)} cores)"
    ]

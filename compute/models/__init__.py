"""Compute models: hosts, images, flavors, virtual machines."""

from compute.models.hosts import Host
from compute.models.images import Flavor, Image
from compute.models.vms import VirtualMachine

__all__ = ["Flavor", "Host", "Image", "VirtualMachine"]

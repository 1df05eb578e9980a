"""REST API for tenant networks and VM network interfaces.

``/api/v1/tenants/<t>/networks/`` lists and creates networks (``Idempotency-Key``),
``.../networks/<n>/`` reads and deletes one (``If-Match``; 409 while interfaces use it).
``/api/v1/tenants/<t>/virtualmachines/<vm>/nics/`` lists and adds a VM's interfaces
(hot-plugged when it runs), ``.../nics/<nic>/`` reads one, moves it to other security
groups (PATCH of ``spec.securityGroups``, applied to a running VM in place) and removes
it (both with ``If-Match``).
Errors are problem+json with the API's field paths.
"""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers

from compute import selectors
from compute.api import IDEMPOTENCY_KEY, IF_MATCH, PROBLEM_RESPONSE, TenantResourceView
from compute.choices import NetworkKind, NetworkPhase, NicPhase
from compute.models import Network, NetworkInterface
from compute.services import networks as network_services
from portal.api.errors import api_field_errors
from portal.api.resources import StrictSerializer, metadata
from portal.exceptions import ApplicationError
from tenants import selectors as tenant_selectors
from tenants.api import MetadataSerializer
from tenants.models import Tenant

NETWORK_FIELDS = {
    "name": "metadata.name",
    "cidr": "spec.cidr",
    "gateway": "spec.gateway",
    "dhcp_start": "spec.dhcpStart",
    "dhcp_end": "spec.dhcpEnd",
    "kind": "spec.kind",
    "phase": "status.phase",
}
NIC_FIELDS = {
    "name": "metadata.name",
    "network": "spec.network",
    "fixed_ip": "spec.fixedIP",
    "security_groups": "spec.securityGroups",
    "vm": "metadata.vm",
    "phase": "status.phase",
}


def interface_count(network: Network) -> int:
    """How many interfaces ``network`` has: as the list counted them
    (``selectors.network_list_rows``), else one count."""
    known = getattr(network, "interface_count", None)
    return network.nics.count() if known is None else known


def network_representation(network: Network, user) -> dict:
    role = tenant_selectors.role_of(user, network.tenant)
    data = {
        "metadata": metadata(network, name=network.name, tenant=network.tenant.slug),
        "spec": {
            "cidr": network.cidr,
            "gateway": network.gateway,
            "dhcpStart": network.dhcp_start,
            "dhcpEnd": network.dhcp_end,
            "kind": network.kind,
        },
        "status": {
            "phase": network.phase,
            "message": network.message,
            "default": network.is_default,
            "interfaces": interface_count(network),
            "actions": network_services.network_actions(network, role),
        },
    }
    if getattr(user, "is_staff", False):
        data["status"]["bridge"] = network.bridge
    return data


def nic_representation(nic: NetworkInterface, user) -> dict:
    role = tenant_selectors.role_of(user, nic.tenant)
    data = metadata(nic, name=nic.name, tenant=nic.tenant.slug)
    data["vm"] = nic.vm.name
    return {
        "metadata": data,
        "spec": {
            "network": nic.network.name,
            "mac": nic.mac,
            "fixedIP": nic.fixed_ip,
            "securityGroups": [g.name for g in nic.security_groups.all()],
        },
        "status": {
            "phase": nic.phase,
            "message": nic.message,
            "addresses": list(nic.addresses or []),
            "actions": network_services.nic_actions(nic, role),
        },
    }


# --- Serializers -----------------------------------------------------------------------
class NameIn(StrictSerializer):
    name = serializers.CharField(help_text="A DNS label.")


class NetworkSpecIn(StrictSerializer):
    cidr = serializers.CharField(help_text="IPv4 network, /16 to /29, e.g. 10.0.0.0/24.")
    gateway = serializers.CharField(
        required=False, help_text="The host's address on it (default: the first address)."
    )
    dhcpStart = serializers.CharField(required=False)  # noqa: N815
    dhcpEnd = serializers.CharField(required=False)  # noqa: N815
    kind = serializers.ChoiceField(choices=NetworkKind.choices, default=NetworkKind.ISOLATED)


class NetworkCreateSerializer(StrictSerializer):
    metadata = NameIn()
    spec = NetworkSpecIn()


class NetworkSerializer(serializers.Serializer):
    metadata = MetadataSerializer()
    spec = serializers.DictField()
    status = serializers.DictField()

    def to_representation(self, network: Network) -> dict:
        return network_representation(network, self.context["request"].user)


class NicMetadataIn(StrictSerializer):
    name = serializers.CharField(
        required=False, help_text="A DNS label unique among the VM's interfaces (default nicN)."
    )


class NicSpecIn(StrictSerializer):
    network = serializers.CharField(help_text="One of the tenant's networks.")
    fixedIP = serializers.CharField(  # noqa: N815
        required=False, help_text="Reserve this address (inside the network's DHCP range)."
    )
    securityGroups = serializers.ListField(  # noqa: N815
        child=serializers.CharField(),
        required=False,
        help_text="The tenant's security groups the interface is in (default: default).",
    )


class NicSpecPatchIn(StrictSerializer):
    securityGroups = serializers.ListField(  # noqa: N815
        child=serializers.CharField(),
        help_text="The tenant's security groups the interface is in from now on (at least "
        "one); a running VM's interface is filtered by them at once.",
    )


class NicPatchSerializer(StrictSerializer):
    spec = NicSpecPatchIn()


class NicCreateSerializer(StrictSerializer):
    metadata = NicMetadataIn(required=False)
    spec = NicSpecIn()


class NicSerializer(serializers.Serializer):
    metadata = serializers.DictField()
    spec = serializers.DictField()
    status = serializers.DictField()

    def to_representation(self, nic: NetworkInterface) -> dict:
        return nic_representation(nic, self.context["request"].user)


def _responses(serializer) -> dict:
    return {
        202: serializer,
        400: PROBLEM_RESPONSE,
        403: PROBLEM_RESPONSE,
        404: PROBLEM_RESPONSE,
        409: PROBLEM_RESPONSE,
        412: PROBLEM_RESPONSE,
    }


# --- Networks --------------------------------------------------------------------------
class NetworkView(TenantResourceView):
    serializer_class = NetworkSerializer
    view_action = "network.view"
    detail_url_name = "network-api-detail"
    collection = "networks"
    phases = tuple(NetworkPhase.values)

    def lookup(self, tenant: Tenant, name: str, *, lock: bool = False) -> Network:
        return selectors.network_get(self.request.user, tenant, name, lock=lock)

    def api_errors(self, error: ApplicationError) -> ApplicationError:
        return api_field_errors(error, fields=NETWORK_FIELDS, quota_fields={})


class NetworkListView(NetworkView):
    @extend_schema(
        operation_id="networks_list",
        summary="List the tenant's networks",
        responses=NetworkSerializer(many=True),
    )
    def get(self, request, tenant):
        obj = self.tenant("network.view")
        return self.phase_page(selectors.network_list_rows(request.user, obj))

    @extend_schema(
        operation_id="networks_create",
        summary="Create a network (made on a host when a VM on it is placed there)",
        request=NetworkCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses=_responses(NetworkSerializer),
    )
    def post(self, request, tenant):
        obj = self.allowed_tenant("network.create")
        serializer = NetworkCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data

        def make() -> Network:
            spec = data["spec"]
            try:
                return network_services.network_create(
                    actor=request.user,
                    tenant=obj,
                    name=data["metadata"]["name"],
                    cidr=spec["cidr"],
                    gateway=spec.get("gateway", ""),
                    dhcp_start=spec.get("dhcpStart", ""),
                    dhcp_end=spec.get("dhcpEnd", ""),
                    kind=spec["kind"],
                )
            except ApplicationError as error:
                raise self.api_errors(error) from None

        return self.create(obj, make)


class NetworkDetailView(NetworkView):
    @extend_schema(operation_id="networks_get", summary="One network")
    def get(self, request, tenant, name):
        obj = self.tenant("network.view")
        return self.respond(self.lookup(obj, name))

    @extend_schema(
        operation_id="networks_delete",
        summary="Delete a network without interfaces (accepted; Deleting until gone)",
        parameters=[IF_MATCH],
        responses=_responses(NetworkSerializer),
    )
    def delete(self, request, tenant, name):
        obj = self.allowed_tenant("network.delete")
        return self.change(
            obj, lambda n: network_services.network_delete(actor=request.user, network=n)
        )


# --- A VM's interfaces -----------------------------------------------------------------
class NicView(TenantResourceView):
    serializer_class = NicSerializer
    view_action = "vm.view"
    detail_url_name = "nic-api-detail"
    phases = tuple(NicPhase.values)

    @property
    def collection(self) -> str:
        return f"virtualmachines/{self.kwargs['name']}/nics"

    def vm(self, tenant: Tenant):
        return selectors.vm_get(self.request.user, tenant, self.kwargs["name"])

    def lookup(self, tenant: Tenant, name: str, *, lock: bool = False) -> NetworkInterface:
        return selectors.nic_get(self.request.user, self.vm(tenant), self.kwargs["nic"], lock=lock)

    def api_errors(self, error: ApplicationError) -> ApplicationError:
        return api_field_errors(error, fields=NIC_FIELDS, quota_fields={})

    def location(self, tenant: Tenant, name: str) -> str:
        url = reverse(
            self.detail_url_name,
            kwargs={"tenant": tenant.slug, "name": self.kwargs["name"], "nic": name},
        )
        return self.request.build_absolute_uri(url)


class NicListView(NicView):
    @extend_schema(
        operation_id="nics_list",
        summary="List a VM's network interfaces with their addresses",
        responses=NicSerializer(many=True),
    )
    def get(self, request, tenant, name):
        obj = self.tenant("vm.view")
        return self.phase_page(selectors.vm_nic_rows(request.user, self.vm(obj)))

    @extend_schema(
        operation_id="nics_create",
        summary="Add a network interface (hot-plugged when the VM runs)",
        request=NicCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses=_responses(NicSerializer),
    )
    def post(self, request, tenant, name):
        obj = self.allowed_tenant("nic.attach")
        vm = self.vm(obj)
        serializer = NicCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data

        def add() -> NetworkInterface:
            try:
                return network_services.nic_create(
                    actor=request.user,
                    vm=vm,
                    network=data["spec"]["network"],
                    name=(data.get("metadata") or {}).get("name", ""),
                    fixed_ip=data["spec"].get("fixedIP", ""),
                    security_groups=data["spec"].get("securityGroups") or [],
                )
            except ApplicationError as error:
                raise self.api_errors(error) from None

        return self.create(obj, add)


class NicDetailView(NicView):
    @extend_schema(operation_id="nics_get", summary="One network interface")
    def get(self, request, tenant, name, nic):
        obj = self.tenant("vm.view")
        return self.respond(self.lookup(obj, name))

    @extend_schema(
        operation_id="nics_update",
        summary="Move a network interface to other security groups (applied in place)",
        request=NicPatchSerializer,
        parameters=[IF_MATCH],
        responses=_responses(NicSerializer),
    )
    def patch(self, request, tenant, name, nic):
        obj = self.allowed_tenant("nic.attach")
        serializer = NicPatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        groups = serializer.validated_data["spec"]["securityGroups"]
        return self.change(
            obj,
            lambda n: network_services.nic_groups_set(actor=request.user, nic=n, groups=groups),
        )

    @extend_schema(
        operation_id="nics_delete",
        summary="Remove a network interface (accepted; Detaching until gone)",
        parameters=[IF_MATCH],
        responses=_responses(NicSerializer),
    )
    def delete(self, request, tenant, name, nic):
        obj = self.allowed_tenant("nic.detach")
        return self.change(obj, lambda n: network_services.nic_delete(actor=request.user, nic=n))

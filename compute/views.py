"""Pages for virtual machines and container workloads."""

from __future__ import annotations

from django.shortcuts import render

from portal.web import tenant_view


@tenant_view("vm.view")
def vm_list(request, tenant):
    return render(request, "compute/vm_list.html", {"tenant": tenant})


@tenant_view("workload.view")
def workload_list(request, tenant):
    return render(request, "compute/workload_list.html", {"tenant": tenant})

import pytest

from compute.services import dispatch
from compute.services import vms as vm_services


@pytest.fixture
def no_worker(monkeypatch):
    """No worker: the VMs stay Pending and nothing is sent to the broker."""
    monkeypatch.setattr(vm_services, "_enqueue", lambda *args, **kwargs: None)
    monkeypatch.setattr(dispatch, "provision_request", lambda *vm_ids: None)

"""Helpers of the tests against the local Kubernetes cluster (tools.infra.k8s)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager


def wait_for(what: str, check, timeout: float, interval: float = 0.5):
    """``check()``'s first truthy answer; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


@contextmanager
def scratch_namespace(core, test: str, delete_timeout: float = 60) -> Iterator[str]:
    """A new namespace labelled ``isotope.dev/test=<test>``, deleted (and waited for)
    afterwards. ``core`` is a ``kubernetes.client.CoreV1Api``."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    name = f"isotope-{test}-{uuid.uuid4().hex[:8]}"
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(name=name, labels={"isotope.dev/test": test})
        )
    )
    try:
        # The ServiceAccount admission plugin refuses pods until the controller-manager
        # has made the namespace's default ServiceAccount.
        wait_for(
            "the default ServiceAccount",
            lambda: any(
                sa.metadata.name == "default"
                for sa in core.list_namespaced_service_account(name).items
            ),
            30,
        )
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except ApiException as error:
            if error.status != 404:
                raise

        def gone() -> bool:
            try:
                core.read_namespace(name)
            except ApiException as error:
                return error.status == 404
            return False

        wait_for(f"namespace {name} to be deleted", gone, delete_timeout, interval=1.0)

"""Quantities and image references are parsed exactly, or refused with a reason."""

from __future__ import annotations

from decimal import Decimal

import pytest

from compute.quantities import check_image, format_cpu, format_memory, parse_cpu, parse_memory

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "text, millicores",
    [("500m", 500), ("0.5", 500), ("1", 1000), ("2.25", 2250), ("1m", 1), (".1", 100)],
)
def test_cpu_quantities_become_exact_millicores(text, millicores):
    assert parse_cpu(text) == millicores


@pytest.mark.parametrize("text", ["", "abc", "0.0005", "100u", "-1", "0", "1 core", "65", "5Mi"])
def test_bad_cpu_quantities_are_refused(text):
    with pytest.raises(ValueError):
        parse_cpu(text)


@pytest.mark.parametrize(
    "text, size",
    [
        ("256Mi", 256 * 2**20),
        ("1Gi", 2**30),
        ("1G", 10**9),
        ("500M", 500 * 10**6),
        ("134217728", 2**27),
        ("129e6", 129 * 10**6),
        ("1.5Gi", 3 * 2**29),
    ],
)
def test_memory_quantities_become_exact_bytes(text, size):
    assert parse_memory(text) == size


@pytest.mark.parametrize("text", ["", "12m", "1.3", "1Mi", "1Ti", "lots", "256MB", "-5Mi"])
def test_bad_memory_quantities_are_refused(text):
    with pytest.raises(ValueError):
        parse_memory(text)


def test_quantities_format_back_the_way_kubernetes_writes_them():
    assert [format_cpu(m) for m in (250, 1000, 1500)] == ["250m", "1", "1500m"]
    assert [format_memory(b) for b in (2**30, 256 * 2**20, 10**9)] == ["1Gi", "256Mi", "1000000000"]


@pytest.mark.parametrize(
    "reference",
    [
        "nginx",
        "nginx:1.27",
        "library/nginx:1.27-alpine",
        "ghcr.io/acme/api:v2",
        "registry.local:5000/team/app",
        "localhost/app:dev",
        "quay.io/org/img@sha256:" + "a" * 64,
        "repo/a__b.c-d:TAG_1.x",
    ],
)
def test_valid_image_references_are_accepted(reference):
    assert check_image(reference) == reference


@pytest.mark.parametrize(
    "reference",
    ["", "Nginx", "UPPER/app", "nginx:", "nginx::1", "a b", "-bad", "app@sha256:short", "x" * 256],
)
def test_bad_image_references_are_refused(reference):
    with pytest.raises(ValueError):
        check_image(reference)


@pytest.mark.parametrize(
    "text, cores",
    [
        ("2", 2),
        ("1500m", Decimal("1.5")),
        ("250000n", Decimal("0.00025")),
        ("12u", Decimal("0.000012")),
        ("1k", 1000),  # a node with a thousand cores, as the API server writes it
        ("1.5k", 1500),
        ("0", 0),
    ],
)
def test_cpu_the_api_server_reports_is_read_in_any_form_it_writes(text, cores):
    """Node capacity and pod usage come back in the server's own forms."""
    from compute.backends.kubernetes.backend import _cores

    assert _cores(text) == cores


@pytest.mark.parametrize(
    "text, size",
    [
        ("16Gi", 16 * 2**30),
        ("1Ti", 2**40),
        ("129e6", 129 * 10**6),
        ("500M", 500 * 10**6),
        ("1k", 1000),
        ("8000000Ki", 8_000_000 * 1024),
        ("1500m", 1),  # a millibyte quantity, rounded down to whole bytes
    ],
)
def test_memory_the_api_server_reports_is_read_in_any_form_it_writes(text, size):
    from compute.backends.kubernetes.backend import _bytes

    assert _bytes(text) == size

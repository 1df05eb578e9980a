"""The portal-wide API tests reuse the compute fixtures (a test-driver host, images)."""

from tests.compute.conftest import flavors, make_host, tiny_image  # noqa: F401

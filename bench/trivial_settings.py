"""Settings of the baseline server for accept-latency benchmarks: the portal's, with
``bench.trivial_urls`` as the URLconf (``DJANGO_SETTINGS_MODULE=bench.trivial_settings``)."""

from portal.settings import *  # noqa: F403 - the portal's settings, one URLconf changed

ROOT_URLCONF = "bench.trivial_urls"

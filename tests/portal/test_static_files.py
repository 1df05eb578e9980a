"""With DEBUG off (production, and `make run` with ISOTOPE_DEBUG=0), static files are
collected under content-hashed names, served with a year-long immutable cache and
gzip-compressed ahead of time, by WhiteNoise."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.unit

HASHED_CSS = re.compile(r'href="(/static/css/isotope\.[0-9a-f]{12}\.css)"')
ONE_YEAR = 365 * 24 * 3600


@pytest.fixture
def collected(settings, tmp_path):
    """The static files collected as `make run` (ISOTOPE_DEBUG=0) and deploy/ do it."""
    settings.DEBUG = False
    settings.STATIC_ROOT = tmp_path / "staticfiles"
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
    settings.WHITENOISE_USE_FINDERS = False
    settings.WHITENOISE_AUTOREFRESH = False
    call_command("collectstatic", interactive=False, verbosity=0)
    return settings.STATIC_ROOT


def max_age(response) -> int:
    return int(re.search(r"max-age=(\d+)", response["Cache-Control"]).group(1))


@pytest.mark.django_db
def test_pages_reference_hashed_names_served_for_a_year_and_compressed(collected):
    client = Client()  # a new client loads WhiteNoise over the collected files
    page = client.get("/login/").content.decode()
    url = HASHED_CSS.search(page).group(1)
    assert "/static/vendor/bootstrap/bootstrap.min." in page and "bootstrap.min.css" not in page

    gzipped = client.get(url, HTTP_ACCEPT_ENCODING="gzip, deflate")
    assert gzipped.status_code == 200
    assert gzipped["Content-Encoding"] == "gzip"
    assert max_age(gzipped) >= ONE_YEAR and "immutable" in gzipped["Cache-Control"]
    assert "Accept-Encoding" in gzipped["Vary"]

    plain = client.get(url)
    assert "Content-Encoding" not in plain
    body = b"".join(plain.streaming_content)
    assert int(gzipped["Content-Length"]) < len(body) / 2  # CSS compresses well

    # The plain name is cached briefly: a new release shows at once.
    unhashed = client.get("/static/css/isotope.css", HTTP_ACCEPT_ENCODING="gzip")
    assert unhashed.status_code == 200
    assert max_age(unhashed) < 3600 and "immutable" not in unhashed["Cache-Control"]

"""tests.flush: a transactional test's end leaves every table as Django's flush would,
deleting only what the test wrote, and falls back to the flush when the content types or
permissions were changed."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test import TransactionTestCase

from tenants.models import AuditLog, Tenant
from tests.conftest import make_demo

pytestmark = pytest.mark.unit


def end_of_test() -> None:
    """What pytest-django runs after a transactional test."""
    TransactionTestCase()._fixture_teardown()


def rows() -> dict[str, int]:
    tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
    with connection.cursor() as cursor:
        counts = {}
        for table in tables:
            cursor.execute(f"SELECT count(*) FROM {connection.ops.quote_name(table)}")
            counts[table] = cursor.fetchone()[0]
    return {table: n for table, n in counts.items() if n}


@pytest.mark.django_db(transaction=True)
def test_what_a_test_wrote_is_gone_and_the_content_types_stay_as_the_flush_wrote_them():
    end_of_test()  # the process's first may be Django's flush: it sets the reference
    after_flush = rows()
    assert set(after_flush) == {"django_content_type", "auth_permission"}
    content_types = list(ContentType.objects.order_by("id").values_list("id", "model"))

    make_demo()
    assert Tenant.objects.exists() and AuditLog.objects.exists()
    end_of_test()

    assert rows() == after_flush
    # Kept, not written again under new ids as the flush would.
    assert list(ContentType.objects.order_by("id").values_list("id", "model")) == content_types


@pytest.mark.django_db(transaction=True)
def test_a_changed_permission_table_ends_with_django_s_flush():
    end_of_test()
    content_types = set(ContentType.objects.values_list("id", flat=True))
    Permission.objects.create(
        codename="invented", name="Invented", content_type=ContentType.objects.first()
    )
    make_demo()
    end_of_test()

    assert not Permission.objects.filter(codename="invented").exists()
    assert not Tenant.objects.exists()
    # The flush emptied the content types and post_migrate wrote them anew.
    assert content_types.isdisjoint(ContentType.objects.values_list("id", flat=True))

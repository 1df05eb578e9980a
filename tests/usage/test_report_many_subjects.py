"""A usage report over more subjects than one PostgreSQL statement can name (65,535
values once they are sent apart from the SQL): a busy pool's VMs over a year."""

from __future__ import annotations

from datetime import date

import pytest

from tests.conftest import postgres_only
from usage import selectors
from usage.models import UsageDaily, UsageSubject

pytestmark = pytest.mark.unit

SUBJECTS = 66_000


def test_a_report_over_66000_subjects_names_every_one(demo):
    postgres_only()
    subjects = UsageSubject.objects.bulk_create(
        [
            UsageSubject(
                ref=f"vm:{i}",
                tenant=demo.acme,
                tenant_slug="acme",
                kind="vm",
                object_id=str(i),
                name=f"ci-{i}",
            )
            for i in range(SUBJECTS)
        ],
        batch_size=10_000,
    )
    hour = 3_600_000
    UsageDaily.objects.bulk_create(
        [
            UsageDaily(subject=subject, tenant=demo.acme, day=date(2026, 3, 2), vm_ms=hour)
            for subject in subjects
        ],
        batch_size=10_000,
    )

    report = selectors.usage_report(demo.acme, start=date(2026, 3, 2), end=date(2026, 3, 2))

    names = {line.label for line in report.by_subject}
    assert len(names) == SUBJECTS
    assert {"ci-0", f"ci-{SUBJECTS - 1}"} <= names

"""Shared model bases."""

from __future__ import annotations

import uuid

from django.db import models


class Resource(models.Model):
    """A user-visible resource: stable uid, timestamps and a resourceVersion.

    ``resource_version`` grows on every save; the API uses it for ``If-Match``.
    """

    uid = models.UUIDField(
        default=uuid.uuid4,
        editable=False,
        unique=True,
    )
    created = models.DateTimeField(
        auto_now_add=True,
    )
    updated = models.DateTimeField(
        auto_now=True,
    )
    resource_version = models.PositiveBigIntegerField(
        default=1,
        editable=False,
    )

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if self.pk is not None:
            self.resource_version = (self.resource_version or 0) + 1
            update_fields = kwargs.get("update_fields")
            if update_fields is not None:
                kwargs["update_fields"] = {*update_fields, "resource_version", "updated"}
        super().save(*args, **kwargs)

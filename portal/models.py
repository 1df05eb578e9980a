"""Shared model bases."""

from __future__ import annotations

import uuid

from django.db import models


class Resource(models.Model):
    """A user-visible resource: stable uid, timestamps and a resourceVersion.

    ``resource_version`` grows on every write and is the API's ``ETag``/``If-Match``.
    Writes increment it in the database (``F("resource_version") + 1``), never from the
    value a copy in memory holds, so two writers can never produce the same version.
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
        if self._state.adding:
            super().save(*args, **kwargs)
            return
        self.resource_version = models.F("resource_version") + 1
        update_fields = kwargs.get("update_fields")
        if update_fields is not None:
            kwargs["update_fields"] = {*update_fields, "resource_version", "updated"}
        super().save(*args, **kwargs)
        # The version this write produced (exact when the caller holds the row lock,
        # as every service that saves a resource does).
        self.resource_version = (
            type(self)._base_manager.filter(pk=self.pk).values_list("resource_version", flat=True)
        ).get()

"""Shared model bases."""

from __future__ import annotations

import logging
import uuid

from django.db import connection, models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

logger = logging.getLogger(__name__)


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
        verbose_name=_("UID"),
    )
    created = models.DateTimeField(
        auto_now_add=True,
        verbose_name=_("created"),
    )
    updated = models.DateTimeField(
        auto_now=True,
        verbose_name=_("updated"),
    )
    resource_version = models.PositiveBigIntegerField(
        default=1,
        editable=False,
        verbose_name=_("resource version"),
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

    @classmethod
    def locked(cls, pk: int, *related: str):
        """The row ``pk``, locked until the caller's transaction ends (None when gone),
        with the foreign keys named in ``related`` read in the same statement.

        Written out (``portal.sql``): every observation and action of every object
        starts here, and the ORM compiled this query (select_related, locking, the
        ordering ``first`` adds) for more CPU than the rest of a status write."""
        from portal import sql

        quote = connection.ops.quote_name
        key = f"{quote(cls._meta.db_table)}.{quote(cls._meta.pk.column)} = %s"
        return sql.first(cls, key, [pk], related=related, for_update=True)

    def write_locked(self, fields: dict, *, copies: tuple = ()) -> None:
        """With this row locked by the caller's transaction: write ``fields`` and
        increment ``resource_version`` in the database. This object and ``copies`` (an
        observer's copies of the row) receive the values written and the new version,
        which is exact because the row is locked."""
        fields = {**fields, "updated": timezone.now()}
        if any(hasattr(value, "resolve_expression") for value in fields.values()):
            type(self)._base_manager.filter(pk=self.pk).update(
                **fields, resource_version=models.F("resource_version") + 1
            )
        else:  # written out (portal.sql): the status writes of every object come here
            from portal import sql

            sql.update(type(self), self.pk, fields, increment=("resource_version",))
        fields["resource_version"] = self.resource_version + 1
        for obj in (self, *copies):
            for name, value in fields.items():
                setattr(obj, name, value)


def observation_current(row, copy, what: str) -> bool:
    """Whether an observer's ``copy`` was read at the ``generation`` (the user's intent)
    that the locked ``row`` has now. A superseded observation must not write the phase:
    the newer change's own work reports what comes of it."""
    if row.generation == copy.generation:
        return True
    logger.info(
        "%s: %s was observed against generation %s, superseded by %s",
        row,
        what,
        copy.generation,
        row.generation,
    )
    return False

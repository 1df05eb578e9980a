"""Tasks that import disk images (queue ``storage``): thin shells around
``compute.services.images``, which does the work and every write."""

from __future__ import annotations

import logging

from celery import shared_task

from compute.services import images as image_services

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def image_import(image_id: int) -> None:
    """Fetch or take the upload, verify, inspect and convert one image (idempotent).

    A second delivery while another worker holds the image's lock does nothing: that
    worker finishes the import, or its lock expires and the sweep starts it again."""
    try:
        with image_services.import_lock(image_id) as renew:
            image_services.image_import_run(image_id, renew)
    except image_services.ImportBusy:
        logger.info("image %s is being imported by another worker", image_id)


@shared_task
def images_sweep() -> dict:
    """Beat: restart imports whose worker died, expire idle uploads, remove orphans."""
    return image_services.images_sweep()

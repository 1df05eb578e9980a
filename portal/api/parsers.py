"""The API's one body parser: JSON, with a size limit and without crashing on depth.

DRF's parser reads the stream to its end (no ``DATA_UPLOAD_MAX_MEMORY_SIZE`` check on
that path) and lets ``RecursionError`` from a deeply nested document become a 500.
"""

from __future__ import annotations

import io

from django.conf import settings
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from rest_framework import parsers, status
from rest_framework.exceptions import APIException, ParseError


class BodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = _("The request body is larger than this API accepts.")
    default_code = "too_large"


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(body) > limit:
            raise BodyTooLarge(
                gettext("The request body is larger than %(limit)d bytes.") % {"limit": limit}
            )
        try:
            return super().parse(io.BytesIO(body), media_type, parser_context)
        except RecursionError:
            raise ParseError(gettext("JSON parse error - nested too deeply.")) from None

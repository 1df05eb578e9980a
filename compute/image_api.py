"""REST API for disk images (``/api/v1/tenants/<t>/images/...``).

- ``GET  .../images/`` the tenant's images and the public ones; ``POST`` accepts an
  import (202): ``spec.source.url`` downloads from an http(s) URL, ``spec.source.upload``
  (``sizeBytes``) opens an upload whose address is ``status.upload.url``.
- ``GET .../images/<name>/``; ``DELETE`` (tenant admins, ``If-Match``) removes it.
- ``.../images/<name>/upload/`` speaks tus 1.0.0 (core, termination, expiration): ``HEAD``
  says how many bytes arrived, ``PATCH`` appends a chunk at ``Upload-Offset``,
  ``DELETE`` gives the upload up. tus-js-client in the browser (and any tus client)
  resumes an interrupted upload from the offset ``HEAD`` reports.

Thin: the services validate and decide; errors are problem+json like everywhere.
"""

from __future__ import annotations

from django.db import transaction
from django.urls import reverse
from django.utils.http import http_date
from django.utils.translation import gettext
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from compute import selectors
from compute.api import (
    IDEMPOTENCY_KEY,
    IF_MATCH,
    PROBLEM_RESPONSE,
    StrictSerializer,
    TenantResourceView,
)
from compute.choices import ImagePhase, ImageSource
from compute.models import Image
from compute.services import idempotency
from compute.services import images as image_services
from portal.api.errors import PROBLEM, exception_handler
from portal.api.resources import check_if_match, metadata
from portal.exceptions import ApplicationError, QuotaExceeded, ValidationError
from tenants import selectors as tenant_selectors
from tenants.api import MetadataSerializer
from tenants.models import Tenant

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "termination,expiration"
OFFSET_TYPE = "application/offset+octet-stream"

API_FIELDS = {
    "name": "metadata.name",
    "display_name": "spec.displayName",
    "url": "spec.source.url",
    "size_bytes": "spec.sizeBytes",
    "sha256": "spec.sha256",
    "phase": "status.phase",
}


def _api_errors(error: ApplicationError) -> ApplicationError:
    if not isinstance(error, QuotaExceeded):
        error.errors = {API_FIELDS.get(k, k): v for k, v in error.errors.items()}
    return error


def image_representation(image: Image, user, request=None) -> dict:
    """An image as the API shows it (public platform images have no tenant). A tenant's
    image published by staff is shown to other tenants as a platform image: neither
    its owner nor where it came from (an import URL may carry a signed token)."""
    foreign = image.tenant_id is not None and tenant_selectors.role_of(user, image.tenant) is None
    if foreign:
        source = {"platform": True}
    elif image.source == ImageSource.URL:
        source = {"url": image.source_url}
    elif image.source == ImageSource.UPLOAD:
        source = {"upload": {"sizeBytes": image.declared_bytes}}
    else:
        source = {"platform": True}
    state = image_services.image_state(image)
    image_status = {
        "phase": image.phase,
        "message": image.message,
        "phaseChanged": image.phase_changed.isoformat().replace("+00:00", "Z"),
        "progress": state["progress"],
        "format": image.source_format or image.disk_format or "",
        "sizeBytes": image.size_bytes,
        "virtualSizeBytes": image.virtual_size_bytes,
        "sha256": image.sha256,
        "actions": [],
    }
    if image.tenant_id is not None and tenant_selectors.can(user, image.tenant, "image.delete"):
        image_status["actions"] = ["delete"]
    if image.phase == ImagePhase.UPLOADING and image.tenant_id is not None:
        url = reverse("image-api-upload", kwargs={"tenant": image.tenant.slug, "name": image.name})
        image_status["upload"] = {
            "url": request.build_absolute_uri(url) if request is not None else url,
            "offset": image.upload_offset,
            "length": image.declared_bytes,
            "expires": image_services.upload_expires(image).isoformat().replace("+00:00", "Z"),
            "chunkBytes": _chunk_bytes(),
        }
    return {
        "metadata": metadata(
            image,
            name=image.name,
            tenant=image.tenant.slug if image.tenant_id and not foreign else None,
        ),
        "spec": {
            "displayName": image.display_name,
            "kind": image.kind,
            "source": source,
            "sha256": image.expected_sha256,
            "public": image.public,
            "minMemoryMiB": image.min_memory_mib,
        },
        "status": image_status,
    }


def _chunk_bytes() -> int:
    from django.conf import settings

    return settings.ISOTOPE_IMAGE_UPLOAD_CHUNK_BYTES


# --- Serializers -----------------------------------------------------------------------
class ImageSerializer(serializers.Serializer):
    metadata = MetadataSerializer()
    spec = serializers.DictField()
    status = serializers.DictField()

    def to_representation(self, image: Image) -> dict:
        request = self.context["request"]
        return image_representation(image, request.user, request)


class UploadIn(StrictSerializer):
    sizeBytes = serializers.IntegerField(help_text="The file's exact size.")  # noqa: N815


class SourceIn(StrictSerializer):
    url = serializers.CharField(required=False, help_text="An http(s) URL of a qcow2 or raw file.")
    upload = UploadIn(required=False)

    def validate(self, attrs):
        if ("url" in attrs) == ("upload" in attrs):
            raise serializers.ValidationError({"url": [gettext("Give either url or upload.")]})
        return attrs


class ImageSpecIn(StrictSerializer):
    source = SourceIn()
    displayName = serializers.CharField(required=False, allow_blank=True)  # noqa: N815
    sha256 = serializers.CharField(
        required=False, allow_blank=True, help_text="Expected sha256 of the file (hex)."
    )
    sizeBytes = serializers.IntegerField(  # noqa: N815
        required=False, help_text="URL imports: the file's size; a larger download is refused."
    )


class ImageMetadataIn(StrictSerializer):
    name = serializers.CharField(help_text="A DNS label: lowercase letters, digits, hyphens.")


class ImageCreateSerializer(StrictSerializer):
    metadata = ImageMetadataIn()
    spec = ImageSpecIn()


# --- Views ---------------------------------------------------------------------------------
class ImageView(TenantResourceView):
    serializer_class = ImageSerializer
    view_action = "image.view"

    def lookup(self, tenant: Tenant, name: str, *, lock: bool = False) -> Image:
        return selectors.image_get(self.request.user, tenant, name, own=lock, lock=lock)

    def api_errors(self, error: ApplicationError) -> ApplicationError:
        return _api_errors(error)


class ImageListView(ImageView):
    @extend_schema(
        operation_id="images_list",
        summary="The tenant's images and the public ones",
        parameters=[
            OpenApiParameter(
                "phase", OpenApiTypes.STR, enum=ImagePhase.values, description="Filter."
            )
        ],
        responses=ImageSerializer(many=True),
    )
    def get(self, request, tenant):
        obj = self.tenant("image.view")
        queryset = selectors.images_visible(request.user, obj)
        phase = request.query_params.get("phase")
        if phase is not None:
            if phase not in ImagePhase.values:
                phases = ", ".join(ImagePhase.values)
                raise ValidationError(
                    gettext("Unknown phase."),
                    errors={"phase": [gettext("One of %(phases)s.") % {"phases": phases}]},
                )
            queryset = queryset.filter(phase=phase)
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        operation_id="images_create",
        summary="Import an image from a URL, or open an upload (accepted; 202)",
        request=ImageCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            202: ImageSerializer,
            400: PROBLEM_RESPONSE,
            403: PROBLEM_RESPONSE,
            422: PROBLEM_RESPONSE,
        },
    )
    def post(self, request, tenant):
        obj = self.allowed_tenant("image.create")
        serializer = ImageCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        key = request.headers.get("Idempotency-Key")
        if key is None:
            image = self._create(obj, data)
            return self._accepted(obj, 202, self.get_serializer(image).data)

        def execute() -> tuple[int, dict]:
            try:
                image = self._create(obj, data)
            except ValidationError:
                raise  # invalid input: nothing started, nothing to remember
            except ApplicationError as error:  # a refusal (quota) is the answer
                response = exception_handler(error, {"request": request, "view": self})
                return response.status_code, response.data
            return status.HTTP_202_ACCEPTED, self.get_serializer(image).data

        outcome = idempotency.idempotent_run(
            user=request.user,
            scope=f"{obj.slug}/images",
            key=key,
            fingerprint=idempotency.fingerprint(request.data),
            execute=execute,
        )
        response = self._accepted(obj, outcome.status_code, outcome.body)
        if outcome.replayed:
            response["Idempotent-Replayed"] = "true"
        return response

    def _accepted(self, tenant: Tenant, code: int, body: dict) -> Response:
        response = Response(body, status=code)
        if code >= 400:
            response.content_type = PROBLEM
            return response
        name = body["metadata"]["name"]
        response["ETag"] = f'"{body["metadata"]["resourceVersion"]}"'
        response["Location"] = self.request.build_absolute_uri(
            reverse("image-api-detail", kwargs={"tenant": tenant.slug, "name": name})
        )
        return response

    def _create(self, tenant: Tenant, data: dict) -> Image:
        spec, source = data["spec"], data["spec"]["source"]
        common = {
            "actor": self.request.user,
            "tenant": tenant,
            "name": data["metadata"]["name"],
            "sha256": spec.get("sha256", ""),
            "display_name": spec.get("displayName", ""),
        }
        try:
            if "url" in source:
                return image_services.image_import_url(
                    url=source["url"], size_bytes=spec.get("sizeBytes"), **common
                )
            return image_services.image_upload_begin(
                size_bytes=source["upload"]["sizeBytes"], **common
            )
        except ApplicationError as error:
            raise _api_errors(error) from None


class ImageDetailView(ImageView):
    @extend_schema(operation_id="images_get", summary="One image")
    def get(self, request, tenant, name):
        obj = self.tenant("image.view")
        return self.respond(selectors.image_get(request.user, obj, name))

    @extend_schema(
        operation_id="images_delete",
        summary="Delete one of the tenant's images (its file and storage charge go)",
        parameters=[IF_MATCH],
        responses={204: None, 403: PROBLEM_RESPONSE, 409: PROBLEM_RESPONSE, 412: PROBLEM_RESPONSE},
    )
    def delete(self, request, tenant, name):
        obj = self.allowed_tenant("image.delete")
        try:
            with transaction.atomic():
                image = self.lookup(obj, name, lock=True)
                check_if_match(request, image)
                image_services.image_delete(actor=request.user, image=image)
        except ApplicationError as error:
            raise _api_errors(error) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


TUS_RESUMABLE = OpenApiParameter(
    "Tus-Resumable",
    OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    required=True,
    enum=[TUS_VERSION],
    description="The tus protocol version; any other value is answered 412.",
)


class ImageUploadView(ImageView):
    """tus 1.0.0 for one image's upload (``Tus-Resumable: 1.0.0`` on every request but
    OPTIONS). Every answer carries ``Tus-Resumable``; errors are problem+json."""

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Tus-Resumable"] = TUS_VERSION
        response["Cache-Control"] = "no-store"
        return response

    def _check_version(self) -> None:
        if self.request.headers.get("Tus-Resumable") != TUS_VERSION:
            version = {"version": TUS_VERSION}
            error = ApplicationError(
                gettext("Send the header Tus-Resumable: %(version)s (the tus protocol version).")
                % version,
                errors={"Tus-Resumable": [gettext("Only %(version)s is supported.") % version]},
            )
            error.status, error.slug = 412, "tus-version"
            error.title = gettext("Precondition failed")
            raise error

    def _upload(self, tenant: Tenant, name: str) -> Image:
        return selectors.image_get(self.request.user, tenant, name, own=True)

    def _headers(self, image: Image) -> dict:
        headers = {
            "Upload-Offset": str(image.upload_offset),
            "Upload-Length": str(image.declared_bytes or 0),
        }
        if image.phase == ImagePhase.UPLOADING:
            expires = image_services.upload_expires(image)
            headers["Upload-Expires"] = http_date(expires.timestamp())
        return headers

    @extend_schema(exclude=True)
    def options(self, request, *args, **kwargs):
        from django.conf import settings

        return Response(
            status=status.HTTP_204_NO_CONTENT,
            headers={
                "Tus-Version": TUS_VERSION,
                "Tus-Extension": TUS_EXTENSIONS,
                "Tus-Max-Size": str(settings.ISOTOPE_IMAGE_MAX_BYTES),
            },
        )

    @extend_schema(
        operation_id="images_upload_offset",
        summary="tus HEAD: how many bytes of the upload arrived (Upload-Offset)",
        parameters=[TUS_RESUMABLE],
        responses={200: None, 404: PROBLEM_RESPONSE, 410: PROBLEM_RESPONSE, 412: PROBLEM_RESPONSE},
    )
    def head(self, request, tenant, name):
        obj = self.tenant("image.view")
        self._check_version()
        image = self._upload(obj, name)
        if image.phase == ImagePhase.FAILED:
            return Response(status=status.HTTP_410_GONE)
        return Response(status=status.HTTP_200_OK, headers=self._headers(image))

    @extend_schema(
        operation_id="images_upload_append",
        summary="tus PATCH: append a chunk at Upload-Offset "
        "(Content-Type: application/offset+octet-stream)",
        request={OFFSET_TYPE: OpenApiTypes.BINARY},
        parameters=[TUS_RESUMABLE],
        responses={
            204: None,
            400: PROBLEM_RESPONSE,
            409: PROBLEM_RESPONSE,
            412: PROBLEM_RESPONSE,
            415: PROBLEM_RESPONSE,
        },
    )
    def patch(self, request, tenant, name):
        obj = self.allowed_tenant("image.create")
        self._check_version()
        content_type = (request.content_type or "").split(";")[0].strip()
        if content_type != OFFSET_TYPE:
            media_type = {"type": OFFSET_TYPE}
            error = ApplicationError(
                gettext("Send the chunk as %(type)s.") % media_type,
                errors={"Content-Type": [gettext("Must be %(type)s.") % media_type]},
            )
            error.status, error.slug = 415, "media-type"
            error.title = gettext("Unsupported media type")
            raise error
        offset = _header_number(request, "Upload-Offset")
        length = _header_number(request, "Content-Length")
        image = self._upload(obj, name)
        try:
            image = image_services.image_upload_append(
                actor=request.user, image=image, offset=offset, stream=request.stream, length=length
            )
        except ApplicationError as error:
            raise _api_errors(error) from None
        return Response(status=status.HTTP_204_NO_CONTENT, headers=self._headers(image))

    @extend_schema(
        operation_id="images_upload_cancel",
        summary="tus DELETE: give the upload up (the image, its bytes and charge go)",
        parameters=[TUS_RESUMABLE],
        responses={204: None, 404: PROBLEM_RESPONSE, 409: PROBLEM_RESPONSE, 412: PROBLEM_RESPONSE},
    )
    def delete(self, request, tenant, name):
        obj = self.allowed_tenant("image.create")
        self._check_version()
        image = self._upload(obj, name)
        image_services.image_upload_cancel(actor=request.user, image=image)
        return Response(status=status.HTTP_204_NO_CONTENT)


def _header_number(request, header: str) -> int:
    raw = request.headers.get(header)
    if raw is None or not raw.strip().isdigit() or len(raw.strip()) > 19:
        raise ValidationError(
            gettext("The %(header)s header must be a whole number of bytes.") % {"header": header},
            errors={header: [gettext("A whole number of bytes is required.")]},
        )
    return int(raw.strip())

"""The Images page (``/t/<tenant>/images/``): the tenant's images and the public ones
with live phase and progress, an upload form (tus, in ``static/js/images.js``), an
import-from-URL form and delete for tenant admins. Thin: ``compute.services.images``
decides."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_http_methods

from compute import selectors
from compute.choices import ImagePhase
from compute.forms import ImageImportForm
from compute.models import Image
from compute.services import images as image_services
from monitoring import live
from portal.exceptions import ApplicationError, Conflict, NotFound
from portal.web import form_service_call, tenant_view
from tenants import selectors as tenant_selectors

TEMPLATE_NAME = "__name__"


def _page(request, tenant, form: ImageImportForm | None = None, status: int = 200):
    baseline = live.page_baseline(tenant)
    images = list(selectors.images_visible(request.user, tenant))
    for image in images:
        image.own = image.tenant_id == tenant.pk
        image.percent = image_services.progress_percent(image)
    usage = {u.resource: u for u in tenant_selectors.quota_usage(tenant)}
    # The row images.js clones for images that appear while the page is open.
    template_image = Image(
        name=TEMPLATE_NAME, tenant=tenant, phase=ImagePhase.PENDING, public=False, source="url"
    )
    template_image.own, template_image.percent = True, 0
    return render(
        request,
        "compute/image_list.html",
        {
            "tenant": tenant,
            "images": images,
            "template_image": template_image,
            "form": form or ImageImportForm(),
            "storage": usage["storage"],
            "can_create": tenant_selectors.can(request.user, tenant, "image.create"),
            "can_delete": tenant_selectors.can(request.user, tenant, "image.delete"),
            "can_create_vm": tenant_selectors.can(request.user, tenant, "vm.create"),
            "max_bytes": settings.ISOTOPE_IMAGE_MAX_BYTES,
            "chunk_bytes": settings.ISOTOPE_IMAGE_UPLOAD_CHUNK_BYTES,
            "live_baseline": baseline,
        },
        status=status,
    )


@tenant_view("image.view")
@require_GET
def image_list(request, tenant):
    return _page(request, tenant)


@tenant_view("image.create")
@require_http_methods(["POST"])
def image_import(request, tenant):
    """The import-from-URL form (works without JavaScript)."""
    form = ImageImportForm(request.POST)
    if form.is_valid():
        image = form_service_call(
            form,
            lambda: image_services.image_import_url(
                actor=request.user, tenant=tenant, **form.service_kwargs()
            ),
        )
        if image is not None:
            messages.success(
                request,
                gettext("%(name)s: import accepted; progress shows below.") % {"name": image.name},
            )
            return redirect("image-list", tenant=tenant.slug)
    return _page(request, tenant, form, status=400)


@tenant_view("image.delete")
@require_http_methods(["GET", "POST"])
def image_delete(request, tenant, name: str):
    """POST with ``confirm=yes`` deletes; GET shows the confirmation page."""
    try:
        image = selectors.image_get(request.user, tenant, name, own=True)
    except NotFound as error:
        raise Http404(error.message) from None
    if request.method == "GET" or request.POST.get("confirm") != "yes":
        return render(request, "compute/image_confirm.html", {"tenant": tenant, "image": image})
    try:
        image_services.image_delete(actor=request.user, image=image)
    except Conflict as error:
        messages.warning(request, error.message)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(
            request, gettext("%(name)s deleted; its storage was released.") % {"name": image.name}
        )
    return redirect("image-list", tenant=tenant.slug)

"""Helpers for server-rendered views: tenant resolution and error translation."""

from __future__ import annotations

import functools

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404

from portal.exceptions import (
    ApplicationError,
    Conflict,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
)
from tenants import selectors, services


def tenant_row_read(request, slug: str):
    """The Tenant row named ``slug`` that this request read already (the two-factor
    middleware reads it before the view), or None."""
    read = getattr(request, "isotope_tenant_row", None)
    return read[1] if read and read[0] == slug else None


def tenant_view(action: str):
    """Decorate a view taking ``tenant`` (slug): it receives the Tenant and the role.

    A tenant the user is not a member of is a 404; a role lacking ``action`` is a 403
    (and audited when the action is not a read).
    """

    def decorator(view):
        @login_required
        @functools.wraps(view)
        def wrapper(request, tenant: str, *args, **kwargs):
            try:
                obj = services.tenant_access(
                    user=request.user,
                    slug=tenant,
                    action=action,
                    target=request.path,
                    row=tenant_row_read(request, tenant),
                )
            except NotFound as error:
                raise Http404(error.message) from None
            except PermissionDenied as error:
                raise DjangoPermissionDenied(error.message) from None
            request.tenant = obj
            request.role = selectors.role_of(request.user, obj)
            if request.method in ("GET", "HEAD"):
                from monitoring import live

                # Before the view reads what the page shows: a state the page does not
                # show is then stored after its baseline, and live.js resyncs it.
                obj.isotope_live_baseline = live.page_baseline(obj)
            return view(request, obj, *args, **kwargs)

        return wrapper

    return decorator


def form_service_call(form, call):
    """Run ``call()`` (a service) for a valid form. Field errors of the service go back
    onto the form (``form.add_service_error``) and None is returned; a role refusal is a
    403; a quota refusal is a field error like any other."""
    try:
        return call()
    except QuotaExceeded as error:
        form.add_service_error(error)
    except PermissionDenied as error:
        raise DjangoPermissionDenied(error.message) from None
    except ApplicationError as error:
        form.add_service_error(error)
    return None


def flash_error(request, error: ApplicationError) -> None:
    messages.error(request, error.message)


def message_call(request, call, done: str) -> bool:
    """Run ``call()`` (a service) for a small form that answers with a redirect: success
    is the message ``done``, a conflict a warning, any other refusal an error naming its
    fields' reasons; a role refusal is a 403. Returns whether it succeeded."""
    try:
        call()
    except PermissionDenied as error:
        raise DjangoPermissionDenied(error.message) from None
    except Conflict as error:
        messages.warning(request, error.message)
    except ApplicationError as error:
        details = " ".join(m for ms in (error.errors or {}).values() for m in ms)
        messages.error(request, f"{error.message} {details}".strip())
    else:
        messages.success(request, done)
        return True
    return False

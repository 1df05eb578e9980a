"""Writes of platform staff's usage settings: price lists and auto-approval rules,
each audited (``price_list.save``/``.delete``, ``quota_auto_approval.save``/``.delete``)."""

from __future__ import annotations

from django.db import transaction

from tenants.services import audit_record
from usage.models import PriceList, QuotaAutoApproval


def _prices(price_list: PriceList) -> dict:
    return {
        "currency": price_list.currency,
        "effective_from": str(price_list.effective_from),
        "effective_to": str(price_list.effective_to) if price_list.effective_to else None,
        "applies_to_all": price_list.applies_to_all,
        **{
            name: str(getattr(price_list, name))
            for name in ("vcpu_hour", "memory_gib_hour", "storage_gib_hour", "vm_hour", "pod_hour")
        },
    }


@transaction.atomic
def price_list_save(*, actor, price_list: PriceList, created: bool) -> PriceList:
    """Validate and save a price list (its fields; tenants follow in
    :func:`price_list_tenants_changed`)."""
    price_list.full_clean(exclude=["tenants"])
    price_list.save()
    audit_record(
        actor=actor,
        action="price_list.save",
        target=f"price-list/{price_list.pk}",
        detail={"name": price_list.name, "created": created, **_prices(price_list)},
    )
    return price_list


def price_list_tenants_changed(*, actor, price_list: PriceList) -> None:
    """Record which tenants a price list applies to (after its tenants were saved)."""
    audit_record(
        actor=actor,
        action="price_list.tenants",
        target=f"price-list/{price_list.pk}",
        detail={"tenants": sorted(t.slug for t in price_list.tenants.all())},
    )


@transaction.atomic
def price_list_delete(*, actor, price_list: PriceList) -> None:
    """Delete a price list: the usage it priced shows without cost from now on."""
    detail = {"name": price_list.name, **_prices(price_list)}
    target = f"price-list/{price_list.pk}"
    price_list.delete()
    audit_record(actor=actor, action="price_list.delete", target=target, detail=detail)


@transaction.atomic
def auto_approval_save(*, actor, rule: QuotaAutoApproval) -> QuotaAutoApproval:
    """Save a tenant's auto-approval rule."""
    rule.full_clean()
    rule.save()
    audit_record(
        actor=actor,
        action="quota_auto_approval.save",
        tenant=rule.tenant,
        target=f"quota-auto-approval/{rule.tenant.slug}",
        detail={
            "enabled": rule.enabled,
            "max_percent": rule.max_percent,
            "period_days": rule.period_days,
        },
    )
    return rule


@transaction.atomic
def auto_approval_delete(*, actor, rule: QuotaAutoApproval) -> None:
    """Delete a tenant's auto-approval rule: its requests wait for staff again."""
    tenant = rule.tenant
    rule.delete()
    audit_record(
        actor=actor,
        action="quota_auto_approval.delete",
        tenant=tenant,
        target=f"quota-auto-approval/{tenant.slug}",
    )


def price_list_seed_demo() -> str:
    """A demo price list for every tenant (``seed_demo``), unless one exists: the usage
    page then shows cost out of the box."""
    from datetime import date

    from django.utils import timezone

    if PriceList.objects.exists():
        return "price lists: kept"
    today = timezone.now().date()
    PriceList.objects.create(
        name="Standard (demo)",
        currency="EUR",
        effective_from=date(today.year, 1, 1),
        applies_to_all=True,
        vcpu_hour="0.0300",
        memory_gib_hour="0.0040",
        storage_gib_hour="0.0001",
        vm_hour="0.0050",
        pod_hour="0.0020",
    )
    return "price list: Standard (demo), EUR, for every tenant"

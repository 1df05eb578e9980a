"""Usage accounting and showback, quota requests with approval.

Metering hangs off the one quota ledger (``tenants.services.quota_reserve`` /
``quota_release`` send ``portal.signals.ledger_changed`` inside their transaction):
every reservation's life becomes intervals in :class:`usage.models.UsageInterval`,
rolled up into hourly and daily rows by a beat task. See ``usage/README.md``.
"""

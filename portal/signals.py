"""Project-wide signals that let apps react to each other without imports both ways."""

from django.dispatch import Signal

# Sent (after commit) when a user's membership of a tenant changed or was removed.
membership_changed = Signal()  # kwargs: tenant, user
# Sent (after commit) when a tenant's quota limits changed.
quota_changed = Signal()  # kwargs: tenant
# Sent (after commit) when a user is deactivated or deleted, or staff set their password:
# close all their sockets, except those of ``keep_session_key`` when given (the session
# of staff who changed their own password, which stays signed in).
user_signed_out = Signal()  # kwargs: user_id, keep_session_key (optional)
# Sent INSIDE the quota ledger's transaction (not after commit) each time a reservation
# opens (``quota_reserve`` created it) or closes (``quota_release``): receivers write in
# that transaction, so their rows commit or roll back with the ledger change itself.
# ``charged`` False: the reservation is not in the quota's counters yet; a
# ``quota_charged`` follows in the same transaction (``tenants.services.QuotaCharge``).
ledger_changed = Signal()  # kwargs: reservation, opened (bool), quota, name, labels, charged
# Sent INSIDE the transaction when ``QuotaCharge.charge`` has added its reservations to
# the quota row's counters (the row locked, its counters current).
quota_charged = Signal()  # kwargs: tenant, quota, added (the amounts added)

"""Writes platform staff make to sign-in identities (django-allauth's rows): e-mail
addresses, single sign-on links and second factors. Each one is audited; none records
a secret (an authenticator's key, recovery codes, tokens)."""

from __future__ import annotations

from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.socialaccount.models import SocialAccount
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils.translation import gettext

from portal.exceptions import Conflict, NotFound
from tenants.services import audit_record

User = get_user_model()

#: What staff may change on an e-mail address (``primary`` follows the account's own
#: address; the user row has ``user_update``).
EMAIL_EDITABLE = ("email", "verified")


def _gone() -> NotFound:
    return NotFound(gettext("It was deleted meanwhile."))


@transaction.atomic
def email_address_update(*, actor, address: EmailAddress, changes: dict) -> EmailAddress:
    """Write ``changes`` (``EMAIL_EDITABLE``) to the address's row, locked, and nothing
    else. A changed primary address is also the account's (``User.email``, when it
    still held the old one): where sign-in mail and password resets go. Audited with the
    fields changed and the address it was (``email.update``); a no-op when unchanged."""
    unknown = set(changes) - set(EMAIL_EDITABLE)
    if unknown:
        raise ValueError(f"email_address_update cannot change {sorted(unknown)}")
    locked = EmailAddress.objects.select_for_update().select_related("user").filter(pk=address.pk)
    locked = locked.first()
    if locked is None:
        raise _gone()
    changed = {name: value for name, value in changes.items() if getattr(locked, name) != value}
    if "email" in changed:
        changed["email"] = changed["email"].lower()  # allauth keeps them lowercase
    if not changed:
        return locked
    taken = EmailAddress.objects.filter(user_id=locked.user_id, email__iexact=changed.get("email"))
    if "email" in changed and taken.exclude(pk=locked.pk).exists():
        raise Conflict(
            gettext("%(username)s has the address %(email)s already.")
            % {"username": locked.user.get_username(), "email": changed["email"]},
            errors={"email": [gettext("Taken.")]},
        )
    was = locked.email
    for name, value in changed.items():
        setattr(locked, name, value)
    locked.save(update_fields=sorted(changed))
    detail: dict = {"fields": sorted(changed)}
    if "email" in changed:
        detail["email_was"] = was
        if locked.primary:
            # Compare-and-set: an account address changed elsewhere since is kept.
            detail["account_email"] = bool(
                User.objects.filter(pk=locked.user_id, email__iexact=was).update(email=locked.email)
            )
    if "verified" in changed:
        detail["verified"] = locked.verified
    audit_record(
        actor=actor,
        action="email.update",
        target=f"user/{locked.user.get_username()}",
        detail=detail,
    )
    return locked


@transaction.atomic
def email_address_delete(*, actor, address: EmailAddress) -> None:
    """Delete a secondary e-mail address of an account. The primary one is refused
    (``Conflict``): it is the account's own address, changed on its page."""
    locked = EmailAddress.objects.select_for_update().select_related("user").filter(pk=address.pk)
    locked = locked.first()
    if locked is None:
        raise _gone()
    if locked.primary:
        raise Conflict(
            gettext(
                "%(email)s is the primary address of %(username)s: change it instead, or "
                "the account's e-mail on its page."
            )
            % {"email": locked.email, "username": locked.user.get_username()}
        )
    locked.delete()
    audit_record(
        actor=actor,
        action="email.delete",
        target=f"user/{locked.user.get_username()}",
        detail={"email": locked.email},
    )


@transaction.atomic
def social_account_unlink(*, actor, account: SocialAccount) -> None:
    """Unlink a single sign-on identity from its account: the provider's subject no
    longer signs in as this user (a next sign-on creates a new account). Memberships
    and the user's sessions stay; deactivate the account to sign them out. Audited
    with the provider and subject (``sso.account.unlink``)."""
    locked = SocialAccount.objects.select_for_update().select_related("user").filter(pk=account.pk)
    locked = locked.first()
    if locked is None:
        raise _gone()
    locked.delete()  # its stored tokens go with it (cascade)
    audit_record(
        actor=actor,
        action="sso.account.unlink",
        target=f"user/{locked.user.get_username()}",
        detail={"provider": locked.provider, "subject": locked.uid},
    )


@transaction.atomic
def mfa_remove(*, actor, user) -> list[str]:
    """Remove every second factor of ``user`` (authenticator app, security keys,
    recovery codes): they sign in with the password alone and must enrol again where
    two-factor authentication is required. The user row is locked, so two admins
    removing them at once audit it once. Returns the types removed (none: nothing was
    enrolled, nothing audited).

    Sessions are not ended: they proved the factor when they signed in, and a socket
    closed on them would reconnect with the same session. Deactivate the account, or
    set its password, to sign it out."""
    locked = User.objects.select_for_update().filter(pk=user.pk).first()
    if locked is None:
        raise _gone()
    rows = list(Authenticator.objects.filter(user=locked).values_list("pk", "type"))
    if not rows:
        return []
    Authenticator.objects.filter(pk__in=[pk for pk, _type in rows]).delete()
    types = sorted({kind for _pk, kind in rows})
    audit_record(
        actor=actor,
        action="auth.mfa.disable",
        target=f"user/{locked.get_username()}",
        detail={"types": types, "by": "admin"},
    )
    return types

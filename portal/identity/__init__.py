"""Sign-in: local passwords with an optional second factor, and single sign-on (OIDC).

django-allauth runs the flows; this package holds what is Isotope's: the login form's
field names and lockouts (``accounts``), the OpenID Connect provider's extra checks
(``oidc``), group → tenant role mapping and auditing at each sign-on (``sso``), the
2FA requirement for staff and tenants (``middleware``), and the pages (``views``).
"""

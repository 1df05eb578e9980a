"""allauth's OpenID Connect provider with the checks Isotope adds (see ``provider``)."""

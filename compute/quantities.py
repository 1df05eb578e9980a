"""Exact parsing of Kubernetes resource quantities and container image references.

``parse_cpu("500m") == 500`` (millicores), ``parse_memory("256Mi") == 268435456``
(bytes). Parsing uses ``Decimal`` so ``0.1`` is exactly 100m; anything finer than a
millicore or a byte is refused rather than rounded. Errors are ``ValueError`` with a
message fit for a form field.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_NUMBER = r"(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_QUANTITY = re.compile(_NUMBER + r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][-+]?[0-9]+)?")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"m": Decimal("0.001"), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_DECIMAL |= {"P": 10**15, "E": 10**18}


def _parse(text: str) -> Decimal:
    text = str(text or "").strip()
    match = _QUANTITY.fullmatch(text)
    if not text or match is None:
        raise ValueError(
            f"{text!r} is not a quantity: use a number with an optional suffix, "
            "e.g. 500m or 0.5 (CPU), 256Mi or 1Gi (memory)."
        )
    try:
        number = Decimal(match["number"])
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a number.") from None
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * Decimal(_DECIMAL[suffix])
    if suffix:
        return number.scaleb(int(suffix[1:]))
    return number


def parse_cpu(text: str, *, maximum_m: int = 64_000) -> int:
    """CPU as whole millicores: ``500m`` → 500, ``0.25`` → 250, ``2`` → 2000."""
    cores = _parse(text)
    millicores = cores * 1000
    if millicores != millicores.to_integral_value():
        raise ValueError(f"{text!r} is finer than a millicore; use e.g. 250m.")
    if millicores < 1:
        raise ValueError("CPU must be at least 1m.")
    if millicores > maximum_m:
        raise ValueError(f"At most {maximum_m // 1000} cores.")
    return int(millicores)


def parse_memory(text: str, *, minimum: int = 4 * 2**20, maximum: int = 512 * 2**30) -> int:
    """Memory as whole bytes: ``256Mi`` → 268435456, ``1G`` → 1000000000."""
    if str(text or "").strip().endswith("m"):
        raise ValueError("Memory in millibytes makes no sense; use Mi or Gi, e.g. 256Mi.")
    size = _parse(text)
    if size != size.to_integral_value():
        raise ValueError(f"{text!r} is not a whole number of bytes.")
    if size < minimum:
        raise ValueError(f"At least {minimum // 2**20}Mi.")
    if size > maximum:
        raise ValueError(f"At most {maximum // 2**30}Gi.")
    return int(size)


def format_cpu(millicores: int) -> str:
    return str(millicores // 1000) if millicores % 1000 == 0 else f"{millicores}m"


def format_memory(size: int) -> str:
    for suffix, factor in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if size and size % factor == 0:
            return f"{size // factor}{suffix}"
    return str(size)


# --- Image references (the distribution/reference grammar) -------------------------------
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_REFERENCE = re.compile(
    rf"(?P<name>(?:(?P<domain>{_DOMAIN})/)?{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?"
)


def check_image(reference: str) -> str:
    """The reference unchanged when valid (``nginx:1.27``, ``ghcr.io/acme/api@sha256:…``,
    ``registry.local:5000/team/app:v2``), else ``ValueError`` saying what is wrong."""
    reference = str(reference or "").strip()
    if not reference:
        raise ValueError("An image is required, e.g. nginx:1.27.")
    if len(reference) > 255:
        raise ValueError("At most 255 characters.")
    match = IMAGE_REFERENCE.fullmatch(reference)
    if match is None:
        if any(c.isupper() for c in reference.split("/")[-1].split(":")[0].split("@")[0]):
            raise ValueError("Repository names are lowercase (e.g. library/nginx).")
        raise ValueError(
            f"{reference!r} is not an image reference; expected [registry/]name[:tag][@digest], "
            "e.g. nginx:1.27 or ghcr.io/acme/api:v2."
        )
    domain = match["domain"]
    if domain and "." not in domain and ":" not in domain and domain != "localhost":
        # Without a dot, port or "localhost" the first part is a path, which the
        # grammar's lowercase rule then applies to.
        if domain != domain.lower():
            raise ValueError("Repository names are lowercase (e.g. library/nginx).")
    return reference

"""What a paged list shows: search, filters, sort and page size read from the URL query.

``list_query`` turns ``request.GET`` into a ``ListQuery`` (so the state of a list lives
in its URL and can be bookmarked or shared); a value it cannot use becomes an error
message for the page and that one filter is left out, never a 500. ``list_apply`` narrows
a queryset the selectors already restricted to what the user may see. The VM and workload
lists take all of it; the volume and backup lists only the name search and the page size
(``search_query``, ``search_apply``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.core.paginator import Paginator
from django.db.models import Count, QuerySet, Window
from django.utils.translation import gettext

from compute.labels import label_key_error

MAX_SEARCH = 200
# Rows per page a paged list offers (``per_page``); the first-named default keeps a page of
# a 10,000-VM tenant within the page-speed goal (bench/pages.py).
PER_PAGE = (25, 50, 100)
DEFAULT_PER_PAGE = 50
# Sort keys people click on, and the ORM ordering behind each (name breaks ties).
SORTS = {
    "name": ("name",),
    "phase": ("phase", "name"),
    "created": ("created", "name"),
    "host": ("host__name", "name"),
}


@dataclass
class ListQuery:
    """A list's search, filters and sort, as validated from the URL."""

    q: str = ""
    phase: str = ""
    host: str = ""
    label: str = ""
    sort: str = "name"
    per_page: int = DEFAULT_PER_PAGE
    errors: list[str] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return bool(self.q or self.phase or self.host or self.label)

    def params(self, **changes) -> str:
        """The URL query for this state with ``changes`` (empty values are left out)."""
        state = {"q": self.q, "phase": self.phase, "host": self.host, "label": self.label}
        state["sort"] = "" if self.sort == "name" else self.sort
        state["per_page"] = self.per_page_param
        state.update(changes)
        return urlencode({k: v for k, v in state.items() if v not in ("", None)})

    def sort_link(self, column: str) -> str:
        """Clicking a column sorts by it; clicking the sorted column reverses it."""
        return "?" + self.params(sort=f"-{column}" if self.sort == column else column, page="")

    @property
    def per_page_param(self) -> str:
        """``per_page`` as the URL carries it: "" for the default."""
        return "" if self.per_page == DEFAULT_PER_PAGE else str(self.per_page)

    def per_page_links(self) -> list[tuple[int, str, bool]]:
        """(rows, URL, chosen) for each rows-per-page choice; a choice starts at page 1."""
        return [
            (n, "?" + self.params(per_page="" if n == DEFAULT_PER_PAGE else n), n == self.per_page)
            for n in PER_PAGE
        ]

    def aria_sort(self, column: str) -> str:
        if self.sort == column:
            return "ascending"
        if self.sort == f"-{column}":
            return "descending"
        return "none"


def list_query(get, *, phases: list[str], hosts: list[str] | None) -> ListQuery:
    """Read ``q``, ``phase``, ``host`` (``hosts`` is None when the user may not filter by
    host), ``label`` (``key`` or ``key=value``), ``sort`` and ``per_page`` from ``get``."""
    query = ListQuery()
    _read_search(get, query)
    phase = get.get("phase", "")
    if phase and phase not in phases:
        query.errors.append(
            gettext("Unknown phase %(phase)s: choose one of %(phases)s.")
            % {"phase": repr(phase), "phases": ", ".join(phases)}
        )
    else:
        query.phase = phase
    host = get.get("host", "")
    if host and hosts is None:
        query.errors.append(gettext("Only platform staff can filter by host."))
    elif host and host not in hosts:
        query.errors.append(gettext("Unknown host %(host)s.") % {"host": repr(host)})
    else:
        query.host = host
    label = get.get("label", "").strip()
    if label:
        key = label.partition("=")[0].strip()
        problem = label_key_error(key) if key else gettext("A label filter is key or key=value.")
        if problem:
            query.errors.append(gettext("Label filter: %(problem)s") % {"problem": problem})
        else:
            query.label = label
    sort = get.get("sort", "") or "name"
    column = sort.removeprefix("-")
    if column not in SORTS or (column == "host" and hosts is None):
        names = [s for s in SORTS if hosts is not None or s != "host"]
        query.errors.append(
            gettext("Cannot sort by %(sort)s: choose one of %(columns)s.")
            % {"sort": repr(sort), "columns": ", ".join(names)}
        )
    else:
        query.sort = sort
    _read_per_page(get, query)
    return query


def search_query(get) -> ListQuery:
    """Only ``q`` and ``per_page`` from ``get``, read as ``list_query`` reads them: a
    paged list searched by name, without filters or sort headers (volumes, backups)."""
    query = ListQuery()
    _read_search(get, query)
    _read_per_page(get, query)
    return query


def _read_search(get, query: ListQuery) -> None:
    query.q = get.get("q", "").strip()
    if len(query.q) > MAX_SEARCH:
        query.errors.append(
            gettext("The search is at most %(max)s characters.") % {"max": MAX_SEARCH}
        )
        query.q = ""


def _read_per_page(get, query: ListQuery) -> None:
    per_page = get.get("per_page", "")
    if per_page:
        if per_page in {str(n) for n in PER_PAGE}:
            query.per_page = int(per_page)
        else:
            query.errors.append(
                gettext("Rows per page is one of %(choices)s.")
                % {"choices": ", ".join(str(n) for n in PER_PAGE)}
            )


def search_apply(queryset: QuerySet, query: ListQuery) -> QuerySet:
    """``queryset`` narrowed by ``query``'s name search; its order kept."""
    return queryset.filter(name__icontains=query.q) if query.q else queryset


def list_apply(queryset: QuerySet, query: ListQuery) -> QuerySet:
    """``queryset`` narrowed and ordered by ``query`` (already validated)."""
    queryset = search_apply(queryset, query)
    if query.phase:
        queryset = queryset.filter(phase=query.phase)
    if query.host:
        queryset = queryset.filter(host__name=query.host)
    if query.label:
        key, equals, value = query.label.partition("=")
        key = key.strip()
        queryset = (
            queryset.filter(labels__contains={key: value.strip()})
            if equals
            else queryset.filter(labels__has_key=key)
        )
    column = query.sort.removeprefix("-")
    ordering = SORTS[column]
    if query.sort.startswith("-"):
        ordering = (f"-{ordering[0]}", *ordering[1:])
    return queryset.order_by(*ordering)


def list_page(queryset: QuerySet, number, size: int, *, count: int | None = None):
    """One page of ``queryset`` (Django's ``Page``, so templates are unchanged), fetched
    in two steps: the page's primary keys first — the database walks the sort index
    without joining images and hosts into every skipped row — then those rows in full.
    Deep pages of a tenant with 10,000 VMs cost the page, not the offset (bench/pages.py).
    ``count``: how many rows ``queryset`` has, when the caller knows it already (saves a
    ``COUNT(*)`` over all of them). Without it (a search or a filter) the keys come with
    the count of every match (a window ``COUNT(*) OVER ()``): one pass over the matches
    instead of a count and then the keys; a page past the last asks for the count alone.
    """
    keys_query = queryset.values_list("pk", flat=True)
    paginator = Paginator(keys_query, size)
    keys = None
    wanted = _page_number(number)
    if count is None and wanted is not None:
        start = (wanted - 1) * size
        found = list(
            queryset.annotate(matches=Window(Count("pk"))).values_list("pk", "matches")[
                start : start + size
            ]
        )
        if found:
            count, keys, number = found[0][1], [pk for pk, _ in found], wanted
        elif wanted == 1:
            count, keys, number = 0, [], wanted
    if count is not None:
        paginator.count = count  # a cached property: not asked of the database then
    page = paginator.get_page(number)
    if keys is None or page.number != number:
        keys = list(page.object_list)
    rows = {row.pk: row for row in queryset.filter(pk__in=keys)}
    page.object_list = [rows[key] for key in keys if key in rows]
    return page


def _page_number(number) -> int | None:
    """``number`` as the page ``Paginator.get_page`` shows when it exists (a whole number
    from 1); None for anything else (page 1, or the last page below 1: its rules)."""
    try:
        wanted = int(number)
    except (TypeError, ValueError):
        return None
    return wanted if wanted >= 1 else None


def page_window(number: int, last: int) -> list[tuple[int, str]]:
    """The page links a pager shows around page ``number`` of ``last``: (page, kind),
    kind ``current``, ``link`` or ``gap`` (an ellipsis). The first and last pages and
    two either side of the current one are links; page 2 and the one before the last
    stand for the pages left out. Built from those few candidates, not by walking every
    page: a 10,000-VM tenant has 200 pages of 50 (bench/pages.py)."""
    candidates = {1, 2, last - 1, last, *range(number - 2, number + 3)}
    window = []
    for page in sorted(n for n in candidates if 1 <= n <= last):
        if page == number:
            window.append((page, "current"))
        elif page in (1, last) or number - 2 <= page <= number + 2:
            window.append((page, "link"))
        else:  # page 2 or the one before the last, outside the current page's reach
            window.append((page, "gap"))
    return window

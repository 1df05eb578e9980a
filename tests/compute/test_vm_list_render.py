"""How the VM list's pager and rows read, after their markup moved from template loops
into Python (bench/pages.py: the page must stay the same for its reader)."""

from __future__ import annotations

import pytest

from compute.listing import page_window

pytestmark = pytest.mark.unit


def pager(number: int, last: int) -> str:
    """The pager as a reader sees it: [current], links as numbers, gaps as …"""
    shown = {"current": "[{}]", "link": "{}", "gap": "…"}
    return " ".join(shown[kind].format(page) for page, kind in page_window(number, last))


@pytest.mark.parametrize(
    "number, last, seen",
    [
        (1, 1, "[1]"),
        (1, 2, "[1] 2"),
        (2, 3, "1 [2] 3"),
        (1, 200, "[1] 2 3 … 200"),
        (2, 200, "1 [2] 3 4 … 200"),
        (4, 200, "1 2 3 [4] 5 6 … 200"),
        (5, 200, "1 … 3 4 [5] 6 7 … 200"),
        (100, 200, "1 … 98 99 [100] 101 102 … 200"),
        (197, 200, "1 … 195 196 [197] 198 199 200"),
        (196, 200, "1 … 194 195 [196] 197 198 … 200"),
        (200, 200, "1 … 198 199 [200]"),
        (4, 7, "1 2 3 [4] 5 6 7"),
        (1, 5, "[1] 2 3 … 5"),
    ],
)
def test_the_pager_shows_the_ends_two_pages_either_side_and_gaps(number, last, seen):
    assert pager(number, last) == seen


def test_the_pager_is_the_same_whichever_way_it_is_built():
    """The rule the template applied to every page number, now only to the few that can
    be shown: the same links for every page of lists up to 40 pages long."""
    for last in range(1, 41):
        for number in range(1, last + 1):
            walked = []
            for page in range(1, last + 1):
                if page == number:
                    walked.append((page, "current"))
                elif page in (1, last) or (page - 2 <= number and page + 2 >= number):
                    walked.append((page, "link"))
                elif page in (2, last - 1):
                    walked.append((page, "gap"))
            assert page_window(number, last) == walked, (number, last)

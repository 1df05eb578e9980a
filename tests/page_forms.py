"""What a browser would send from a form of a rendered page, for Django test Client tests
of forms whose page carries more than the visible fields (hidden inputs)."""

from __future__ import annotations

from html.parser import HTMLParser


class _FormFields(HTMLParser):
    """The named inputs, selects and textareas of the form whose ``data-testid`` is
    ``testid``: the values a browser submits with no change made."""

    def __init__(self, testid: str):
        super().__init__(convert_charrefs=True)
        self.testid = testid
        self.inside = False
        self.fields: dict[str, str] = {}
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and a.get("data-testid") == self.testid:
            self.inside = True
        if not self.inside or "disabled" in a:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text")
            if kind in {"submit", "button", "reset", "file", "image"}:
                return
            if kind in {"checkbox", "radio"} and "checked" not in a:
                return
            self.fields[name] = a.get("value") or ""
        elif tag == "select" and name:
            self._select = name
        elif tag == "option" and self._select:
            if "selected" in a or self._select not in self.fields:
                self.fields[self._select] = a.get("value") or ""
        elif tag == "textarea" and name:
            self._textarea = name
            self.fields[name] = ""

    def handle_data(self, data):
        if self.inside and self._textarea:
            self.fields[self._textarea] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea" and self._textarea:
            # As browsers do, a newline right after <textarea> is not part of the value.
            self.fields[self._textarea] = self.fields[self._textarea].removeprefix("\n")
            self._textarea = None


def page_form_data(html: str, testid: str) -> dict[str, str]:
    """The fields the form ``testid`` of the page ``html`` sends as rendered."""
    parser = _FormFields(testid)
    parser.feed(html)
    if not parser.fields:
        raise AssertionError(f"no form {testid!r} with fields on the page")
    return parser.fields

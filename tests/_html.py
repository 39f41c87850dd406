"""Reading the HTML status page back in tests: text by element class, and all text."""

from __future__ import annotations

from html.parser import HTMLParser

_VOID = ("meta", "br", "link")


class PageText(HTMLParser):
    """Collects the text of elements by class (sid, compact, detailed, ...) and all text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.by_class: dict[str, list[str]] = {}
        self.text: list[str] = []
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            return
        cls = dict(attrs).get("class")
        self._open.append(cls)
        if cls:
            self.by_class.setdefault(cls, []).append("")

    def handle_endtag(self, tag: str) -> None:
        if tag not in _VOID and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        for cls in set(filter(None, self._open)):
            self.by_class[cls][-1] += data


def parse_page(page: str) -> PageText:
    """``page`` parsed: its ``by_class`` texts and its ``text``."""
    parser = PageText()
    parser.feed(page)
    parser.close()
    return parser

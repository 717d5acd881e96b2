"""Read HTML forms the way a browser submits them (for the pages behind emailed links)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

# What a browser sends with a form POST from one of our pages: fetch metadata saying it came
# from the same origin, and `Origin: null` because the page is under no-referrer.
BROWSER_FORM_HEADERS = {
    "content-type": "application/x-www-form-urlencoded",
    "origin": "null",
    "sec-fetch-site": "same-origin",
}


@dataclass
class HtmlForm:
    method: str
    action: str
    inputs: dict[str, str] = field(default_factory=dict)
    selects: dict[str, list[str]] = field(default_factory=dict)

    def submission(self, **values: str) -> dict[str, str]:
        """The fields a browser would send: the hidden and default values, then the user's."""
        unknown = set(values) - set(self.inputs) - set(self.selects)
        assert not unknown, f"the form has no fields {unknown}"
        selected = {name: options[0] for name, options in self.selects.items() if options}
        return {**self.inputs, **selected, **values}


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[HtmlForm] = []
        self.scripts = 0
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "script":
            self.scripts += 1
        elif tag == "form":
            self.forms.append(
                HtmlForm(method=attributes.get("method", "get"), action=attributes["action"])
            )
        elif tag == "input" and self.forms and "name" in attributes:
            self.forms[-1].inputs[attributes["name"]] = attributes.get("value", "")
        elif tag == "select" and self.forms:
            self._select = attributes["name"]
            self.forms[-1].selects[self._select] = []
        elif tag == "option" and self.forms and self._select is not None:
            self.forms[-1].selects[self._select].append(attributes.get("value", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


def parse_page(text: str) -> tuple[list[HtmlForm], int]:
    """The page's forms and how many script elements it has."""
    parser = _FormParser()
    parser.feed(text)
    parser.close()
    return parser.forms, parser.scripts


def only_form(text: str) -> HtmlForm:
    forms, scripts = parse_page(text)
    assert scripts == 0, "the page must work without script"
    assert len(forms) == 1, text
    return forms[0]

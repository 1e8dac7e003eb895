"""Wiki markup as Confluence Cloud's editor reads it: the Cloud dialect of the paste files.

Cloud's editor converts pasted wiki markup (Insert → Markup) with Atlassian's JavaScript
transformer (``reference/confluence.md`` §7), which reads a table differently from the server
renderer Data Center uses (:func:`reports.wiki_escape` writes for that one):

- it does not decode character references (``&#58;`` shows as typed), so text is written as
  it is wherever Cloud would not format it, with a backslash before ``- # * _ + ? ^ ~ ( )``;
- its table splitter ends a cell at every ``|`` (a backslash does not protect it) and jumps
  over ``[...]``, ``{macro}...{macro}`` and ``!...!`` spans, so no cell can hold ``| [ ] { } !``
  (or a backslash, an emoticon, a URL, a heading) as plain text;
- it knows no ``{status}`` macro.

What it does know is Atlassian's ``{adf}`` macro, which holds one node of the editor's own
document format as JSON: a cell that plain text cannot say is written as an ``{adf}``
paragraph (its exact text and line breaks), and the Status as an ``{adf}`` status lozenge.
The tests read every output through the transformer itself (``tests/cloud_wiki.py``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache

from sre_maturity.render import reports

# Characters that start formatting or an emoticon in Cloud and that a backslash makes literal.
_BACKSLASHED = re.compile(r"[-#*_+?^~()]")
# What plain text cannot say in a Cloud table cell: the splitter's own characters, a backslash
# (line breaks and escapes), the emoticons a backslash cannot break (":D", ";P": their letter
# cannot be escaped), a URL or mail link, a heading or quote at the start of a line.
_NOT_PLAIN = re.compile(r"[|\[\]{}!\\]|[:;]-?[PpD](?![A-Za-z0-9])|://|mailto:"
                        r"|(?m:^\s*(?:h[1-6]|bq)\.)", re.IGNORECASE)
# Cloud's line break rule (the server's ForceNewLine pattern): "\\" breaks only when no
# backslash follows in the same run of non-space characters. A plain cell has no other "\\"
# (an escape is a backslash and one character of _BACKSLASHED), so every break is one of these.
_BREAK = re.compile(r"(?<!\\)\\{2}(?!\S*\\)")
# The Status lozenge's colours in the editor's document format.
_STATUS_COLOURS = {"Grey": "neutral", "Red": "red", "Yellow": "yellow", "Green": "green",
                   "Blue": "blue"}
_LINK_ALIAS = re.compile(r"[A-Za-z0-9]+")  # a Rally FormattedID (US123) as link text


def _json_text(text: str) -> str:
    # "{" as \u007b: the macro ends at the first "{adf}", which a value must not spell.
    return json.dumps(text, ensure_ascii=False).replace("{", "\\u007b")


def _adf(node_json: str) -> str:
    return "{adf}" + node_json + "{adf}"


def _text_node(text: str, href: str | None = None) -> str:
    marks = (',"marks":[{"type":"link","attrs":{"href":' + _json_text(href) + '}}]'
             if href else "")
    return '{"type":"text","text":' + _json_text(text) + marks + "}"


def _paragraph(text: str, href: str | None = None) -> str:
    """An ``{adf}`` paragraph showing ``text`` exactly, each ``\\n`` a line break."""
    content: list[str] = []
    for n, line in enumerate(text.split("\n")):
        if n:
            content.append('{"type":"hardBreak"}')
        if line:
            content.append(_text_node(line, href))
    return _adf('{"type":"paragraph","content":[' + ",".join(content) + "]}")


def _plain(text: str) -> str | None:
    """``text`` as plain Cloud markup, or None when plain markup cannot say it."""
    if _NOT_PLAIN.search(text):
        return None
    lines = [_BACKSLASHED.sub(lambda m: "\\" + m.group(), line) for line in text.split("\n")]
    markup = "\\\\".join(lines)
    # A break followed by a blank line, an escape, or a word that runs into the next break
    # shows as backslashes (and Cloud would show a space written after a break).
    if len(_BREAK.findall(markup)) != len(lines) - 1:
        return None
    return markup


@lru_cache(maxsize=65536)  # the same owners, flows, criteria and categories recur on every row
def cell(value: object) -> str:
    """One cell of a Cloud wiki table that the editor shows as exactly the text of ``value``
    (line breaks kept) with no formatting; never empty."""
    text = reports.clean_text(value)
    if not text:
        return " "
    plain = _plain(text)
    return plain if plain is not None else _paragraph(text)


@lru_cache(maxsize=1024)
def card_cell(card: object, link: object) -> str:
    """The Rally Card: the story id as a link to the story (a safe http(s) URL), else text."""
    value = reports.clean_text(card)
    url = reports.safe_url(str(link or "")) if value else None
    if url is None:
        return cell(value)
    if _LINK_ALIAS.fullmatch(value):
        return f"[{value}|{url}]"
    return _paragraph(value, url)


@lru_cache(maxsize=1024)
def status_cell(status: object, colour: object) -> str:
    """The Status as a lozenge in the status colour (one line, as on the page)."""
    value = " ".join(reports.clean_text(status).split("\n"))
    if not value:
        return " "
    colour = _STATUS_COLOURS[reports.lozenge_colour(colour)]
    return _adf('{"type":"status","attrs":{"text":' + _json_text(value)
                + ',"color":"' + colour + '"}}')


def inline(value: object) -> str:
    """Text for a heading or a note line: plain where it can be, else an ``{adf}`` text node
    (one line: a heading holds no line break)."""
    text = " ".join(reports.clean_text(value).split())
    plain = _plain(text)
    return plain if plain is not None else _adf(_text_node(text))


ROWS = reports.TodoRowFormat(cell, card_cell, status_cell, sep="|", start="|", end="|")


def todo_row(it: Mapping) -> str:
    """An item's to-do row in the Cloud dialect (as :func:`reports.wiki_todo_row`)."""
    return ROWS.row(it)


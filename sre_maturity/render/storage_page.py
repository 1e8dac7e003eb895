"""A Confluence page body in storage format: parse it safely, find the section under a heading
and the tool's table in it, and splice a new table in without touching any other byte.

A page body is a storage *fragment*: no root element, no namespace declarations, and possibly
HTML named entities (``&nbsp;``). Every HTML parser route damages such pages (CDATA, attribute
order, self-closing macros; ``reference/confluence.md`` §5), so the body is never re-serialised:

1. parse it with ``lxml.etree`` inside a wrapper root that binds ``ac``/``ri``/``at`` and an
   internal DTD declaring the HTML entities (strict: no recovery, no entity expansion), only to
   *locate* the heading and the table;
2. find the same elements' character spans in the original string with a small scanner that
   skips comments, CDATA and processing instructions, cross-checked element by element against
   the lxml parse;
3. splice the new table into the original text, then re-parse the result and check that the
   page outside the table is canonically (C14N) equal to the original before it is returned.

Which table is ours (SPEC §11): in the section that starts at the heading (up to the next
heading of the same or a higher level), the first table not nested in another table whose
header row satisfies the caller's ``is_ours`` test. Any other table is left alone whatever its
shape. With no such table the new one goes right after the heading; with no heading, an
``<h2>`` and the table go at the end of the page (inside the last layout cell when the page is
one ``ac:layout``).

Usage for another table (e.g. the rulebook page), with the 409 and no-op rules of
``confluence.update_page``::

    edit = storage_page.table_edit("SRE Maturity Model",
                                   storage_page.has_columns("Capability", "Level"),
                                   new_table_markup, "rulebook updated")
    confluence.update_page(client, page_id, edit)

(``replace_table`` is the same as a pure function; ``splice_table`` takes a ``render``
callback that sees the old table, and a ``same`` test for "unchanged".)

All functions here are pure (no HTTP).
"""

from __future__ import annotations

import html.entities
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from lxml import etree

from sre_maturity.support.errors import ConfluenceError, PageNeedsFix

NAMESPACES = {
    "ac": "http://www.atlassian.com/schema/confluence/4/ac/",
    "ri": "http://www.atlassian.com/schema/confluence/4/ri/",
    "at": "http://www.atlassian.com/schema/confluence/4/at/",
}
AC = "{" + NAMESPACES["ac"] + "}"
_XHTML = "http://www.w3.org/1999/xhtml"
_XHTML_NS = "{" + _XHTML + "}"
_ROOT = "sre-tracker-root"
_MARK = "sre-tracker-splice"
_CELL = "sre-tracker-cell"

_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
# Elements whose start begins a new line of text in a cell (a cell may hold several <p>).
_BLOCKS = _HEADINGS | {"p", "div", "li", "ul", "ol", "pre", "blockquote", "table", "tr"}
# Macro internals that are not visible text (a status macro's title is read on purpose).
_HIDDEN = {AC + "parameter", AC + "task-id", AC + "task-uuid", AC + "task-status"}
_HIDDEN_NAMES = ("ac:parameter", "ac:task-id", "ac:task-uuid", "ac:task-status")

# XML 1.0 ``Char``: everything else (most C0 controls, lone surrogates, U+FFFE/U+FFFF) is
# dropped from text before it is written.
_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_NEWLINES = re.compile("\r\n?|\n")


# ---------------------------------------------------------------------------- escaping
def xml_clean(value: object) -> str:
    """Text with XML-illegal characters dropped and line ends (CRLF, CR) turned into ``\\n``."""
    text = "" if value is None else str(value)
    return _NEWLINES.sub("\n", _ILLEGAL.sub("", text))


def xml_text(value: object) -> str:
    """Escape text for XML element content: ``& < >`` (so ``]]>`` is safe), illegal chars
    dropped, CR kept as ``&#13;``. Only the XML-predefined entities are emitted."""
    text = _ILLEGAL.sub("", "" if value is None else str(value))
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("\r", "&#13;"))


def xml_attr(value: object) -> str:
    """Escape text for a double-quoted XML attribute value (tabs and line ends survive too)."""
    return (xml_text(value).replace('"', "&quot;").replace("\t", "&#9;")
            .replace("\n", "&#10;"))


def collapse(text: str) -> str:
    """Whitespace runs (U+00A0 included) to one space, trimmed."""
    return " ".join(text.split())


def fold(text: str) -> str:
    """The form headings and column names are compared in: collapsed and case-folded."""
    return collapse(xml_clean(text)).casefold()


def norm(text: str) -> str:
    """Cell text for the "did the data change" comparison: spaces collapsed within each line,
    line breaks kept, blank ends trimmed (Confluence re-normalises markup whitespace)."""
    lines = [" ".join(line.split()) for line in text.split("\n")]
    return "\n".join(lines).strip("\n")


# ---------------------------------------------------------------------------- parsing
def _entity_decl(name: str) -> str:
    value = html.entities.html5[name + ";"]
    # ``&#38;#60;`` keeps a ``<`` or ``&`` replacement text from being read as markup.
    ref = "".join(f"&#38;#{ord(c)};" if c in "<&" else f"&#{ord(c)};" for c in value)
    return f'<!ENTITY {name} "{ref}">'


_DECLS = {name[:-1]: _entity_decl(name[:-1]) for name in html.entities.html5
          if name.endswith(";") and name[:-1] not in ("amp", "lt", "gt", "quot", "apos")}
_REFERENCE = re.compile(r"&([A-Za-z][A-Za-z0-9]*);")
_OPEN_ROOT = f"<{_ROOT} " + " ".join(f'xmlns:{p}="{u}"' for p, u in NAMESPACES.items()) + ">"
_CLOSE_ROOT = f"</{_ROOT}>"


def xml_parse(body: str, *, resolve: bool) -> etree._Element:
    """Parse a storage fragment inside the wrapper; ``resolve`` expands entity references.

    The wrapper's internal DTD declares the HTML named entities the body uses (only those: a
    full HTML5 list would make every parse slow); an unknown name stays an error."""
    parser = etree.XMLParser(strip_cdata=False, resolve_entities=resolve, recover=False,
                             no_network=True, huge_tree=False, load_dtd=False)
    used = sorted({m for m in _REFERENCE.findall(body) if m in _DECLS})
    dtd = f"<!DOCTYPE {_ROOT} [\n" + "\n".join(_DECLS[n] for n in used) + "\n]>\n"
    data = (dtd + _OPEN_ROOT + body + _CLOSE_ROOT).encode("utf-8")
    return etree.fromstring(data, parser)


def unsafe(reason: str) -> ConfluenceError:
    return ConfluenceError(f"the page body could not be parsed safely ({reason}); nothing was "
                           "written — fix the page in the Confluence editor or report this page")


@dataclass(slots=True)
class Span:
    name: str
    start: int
    end: int  # one past the end of the element (its end tag, or the self-closing start tag)
    open_end: int  # one past the end of its start tag


# One token at a ``<``: a comment, CDATA section or processing instruction (skipped), or a
# start or end tag (groups: "/" of an end tag, the name, the attributes, "/" of an empty one).
_TOKEN = re.compile(
    r"""<(?:!--.*?-->|!\[CDATA\[.*?\]\]>|\?.*?\?>|"""
    r"""(/?)([^\s/>!?"'=<]+)((?:\s+[^\s=/>"'<]+\s*=\s*(?:"[^"<]*"|'[^'<]*'))*)\s*(/?)>)""",
    re.DOTALL)
_SKIPPED = ("<!--", "<![CDATA[", "<?")


def scan(body: str) -> list[Span]:
    """Character spans of all elements of a well-formed fragment, in document order."""
    spans: list[Span] = []
    stack: list[Span] = []
    pos = 0
    find = body.find
    for m in _TOKEN.finditer(body):
        lt = m.start()
        if lt != pos and find("<", pos, lt) >= 0:  # a "<" no token starts at
            raise _unscannable(body, find("<", pos, lt))
        pos = m.end()
        closing, name, attrs, self_closing = m.groups()
        if name is None:
            continue  # comment, CDATA, processing instruction
        if closing:
            if attrs or self_closing or not stack or stack[-1].name != name:
                raise unsafe(f"unbalanced </{name}> at character {lt}")
            stack.pop().end = pos
        else:
            span = Span(name, lt, pos, pos)
            spans.append(span)
            if not self_closing:
                stack.append(span)
    if find("<", pos) >= 0:
        raise _unscannable(body, find("<", pos))
    if stack:
        raise unsafe(f"<{stack[-1].name}> is never closed")
    return spans


def _unscannable(body: str, lt: int) -> ConfluenceError:
    for opener in _SKIPPED:
        if body.startswith(opener, lt):
            return unsafe(f"unterminated {opener} at character {lt}")
    return unsafe(f"unexpected markup at character {lt}")


def local(el: etree._Element) -> str | None:
    """Local name of an HTML element (no namespace, or XHTML); None for macros and the like."""
    tag = el.tag
    if not isinstance(tag, str):
        return None
    if tag[0] != "{":
        return tag
    return tag[len(_XHTML_NS):] if tag.startswith(_XHTML_NS) else None


def qualified(el: etree._Element) -> str:
    qname = etree.QName(el)
    return f"{el.prefix}:{qname.localname}" if el.prefix else qname.localname


@dataclass
class Page:
    """A parsed body: the lxml tree and every element's character span in ``body``."""

    body: str
    root: etree._Element
    elements: list[etree._Element]
    spans: list[Span]
    index: dict[etree._Element, int] = field(default_factory=dict)

    def span(self, el: etree._Element) -> Span:
        return self.spans[self.index[el]]

    def markup(self, el: etree._Element) -> str:
        span = self.span(el)
        return self.body[span.start:span.end]

    def open_tag(self, el: etree._Element) -> str:
        span = self.span(el)
        return self.body[span.start:span.open_end]


def load(body: str) -> Page:
    """Parse (strict, entities kept as references) and map every element to its span."""
    if not isinstance(body, str):
        raise unsafe("the body is not text")
    try:
        root = xml_parse(body, resolve=False)
    except etree.XMLSyntaxError as exc:
        raise unsafe(parse_message(exc)) from exc
    except (UnicodeError, ValueError) as exc:
        raise unsafe(type(exc).__name__) from exc
    elements = [el for el in root.iter() if isinstance(el.tag, str) and el is not root]
    spans = scan(body)
    names = [qualified(el) for el in elements]
    if names != [s.name for s in spans]:
        raise unsafe("the element scan disagrees with the XML parser")
    page = Page(body, root, elements, spans)
    page.index = {el: i for i, el in enumerate(elements)}
    return page


def parse_message(exc: etree.XMLSyntaxError) -> str:
    # Line numbers count the DTD and wrapper lines; report only the parser's sentence.
    return re.sub(r",? line \d+, column \d+.*$", "", str(exc.msg or exc)).strip() or "bad XML"


def _entity_char(name: str) -> str:
    return html.entities.html5.get(name + ";", "")


def text(el: etree._Element) -> str:
    """Visible text of an element: entities resolved, ``<br>`` and block starts as newlines,
    macro parameters left out."""
    out: list[str] = []

    def add(piece: str | None) -> None:
        if piece:
            out.append(piece)

    def walk(node: etree._Element, top: bool) -> None:
        tag = node.tag
        if tag is etree.Entity:
            add(_entity_char(node.name))
            return
        if not isinstance(tag, str) or tag in _HIDDEN:
            return
        name = local(node)
        if not top and name in _BLOCKS and out and not out[-1].endswith("\n"):
            out.append("\n")
        if name == "br":
            out.append("\n")
        add(node.text)
        for child in node:
            walk(child, False)
            add(child.tail)

    walk(el, True)
    return "".join(out)


def text_all(el: etree._Element) -> str:
    """All character data inside an element (a macro parameter), entities resolved."""
    out = [el.text or ""]
    for child in el:
        if child.tag is etree.Entity:
            out.append(_entity_char(child.name))
        elif isinstance(child.tag, str):
            out.append(text_all(child))
        out.append(child.tail or "")
    return "".join(out)


def cell_text(markup: str) -> str:
    """The words a reader sees in a cell someone may have edited by hand (see
    :func:`cell_texts`)."""
    return cell_texts([markup])[0]


def cell_texts(markups: Sequence[str]) -> list[str]:
    """The visible text of each cell's markup, for matching rows and reading headers.

    BeautifulSoup's tolerance is what is wanted here (stray markup a person pasted, odd
    entities); macro parameters and task ids are not part of the visible text. One parse for
    all the cells (each wrapped in its own element). Only for reading: the splice itself never
    goes through an HTML parser."""
    texts: list[str | None] = [None] * len(markups)
    parse: list[int] = []
    for i, markup in enumerate(markups):
        # The cells the tool writes, ``<td><p>plain text</p></td>``, read as the parser would.
        plain = _PLAIN_CELL.fullmatch(markup)
        if plain:
            text = plain.group(1) or ""
            if text and not text.strip(_ASCII_SPACES):  # as BeautifulSoup keeps blank text
                text = "\n" if "\n" in text else " "
            texts[i] = text
        else:
            parse.append(i)
    if parse:
        wrapped = "".join(f"<{_CELL}>{markups[i]}</{_CELL}>" for i in parse)
        from bs4 import BeautifulSoup  # only where a page is read: report needs none

        soup = BeautifulSoup(wrapped, "html.parser")
        for hidden in soup.find_all(_HIDDEN_NAMES):
            hidden.decompose()
        for br in soup.find_all("br"):
            br.replace_with("\n")
        for i, cell in zip(parse, soup.find_all(_CELL), strict=True):
            texts[i] = cell.get_text(" ")
    return [t or "" for t in texts]


_PLAIN_CELL = re.compile(r"<t[dh]>(?:<p>([^<&]*)</p>|<p ?/>)</t[dh]>")
_ASCII_SPACES = " \n\t\x0c\r"


# ---------------------------------------------------------------------------- locating
IsOurs = Callable[[Sequence[str]], bool]
"""Given a table's header texts (collapsed whitespace), whether the table is the caller's."""


def has_columns(*names: str) -> IsOurs:
    """An :data:`IsOurs` test: the header row holds every one of ``names`` (case folded)."""
    wanted = {fold(n) for n in names}

    def is_ours(header: Sequence[str]) -> bool:
        return wanted <= {fold(h) for h in header}

    return is_ours


def level(el: etree._Element) -> int:
    name = local(el)
    return int(name[1]) if name in _HEADINGS else 0


def header_row(table: etree._Element) -> etree._Element | None:
    """The table's first row when all its cells are ``<th>`` (in ``thead`` or ``tbody``)."""
    for child in table:
        name = local(child)
        if name in ("thead", "tbody", "tfoot"):
            rows = [tr for tr in child if local(tr) == "tr"]
            if rows:
                return rows[0] if _all_th(rows[0]) else None
        elif name == "tr":
            return child if _all_th(child) else None
    return None


def _all_th(tr: etree._Element) -> bool:
    cells = [local(c) for c in tr if local(c) in ("td", "th")]
    return bool(cells) and all(c == "th" for c in cells)


def header_texts(page: Page, table: etree._Element) -> list[str] | None:
    """The header row's cell texts (collapsed), or None when the table has no header row."""
    tr = header_row(table)
    if tr is None:
        return None
    return [collapse(t) for t in cell_texts(
        [page.markup(c) for c in tr if local(c) in ("td", "th")])]


def _shadowed(el: etree._Element) -> bool:
    """Inside an ``ac:adf-fallback`` whose extension also stores the content itself: Cloud
    keeps the same heading (and table) twice there for one reader."""
    for anc in el.iterancestors():
        if anc.tag == AC + "adf-fallback":
            parent = anc.getparent()
            if parent is not None and next(parent.iter(AC + "adf-content"), None) is not None:
                return True
    return False


def _in_table(el: etree._Element) -> bool:
    return any(local(anc) == "table" for anc in el.iterancestors())


@dataclass
class Found:
    """Where a table goes: the heading, our table (None: insert), and the character span of
    the body that the new table replaces (empty for an insert), with ``prefix`` (a new
    heading) written before it."""

    page: Page
    title: str
    heading: etree._Element | None
    table: etree._Element | None
    start: int
    end: int
    prefix: str = ""


def locate(page: Page, title: str, is_ours: IsOurs) -> Found:
    """Find the heading titled ``title`` (whitespace and case folded), its section and the
    table in it that ``is_ours`` accepts.

    :raises ConfluenceError: empty title; PageNeedsFix: the heading appears more than once,
        or inside a table
    """
    wanted = fold(title)
    if not wanted:
        raise ConfluenceError("the table title is empty; set CONFLUENCE_TABLE_TITLE")
    all_headings = [el for el in page.elements if level(el) and not _shadowed(el)]
    headings = [el for el in all_headings if fold(text(el)) == wanted]
    if len(headings) > 1:
        where = _and([f"no. {all_headings.index(h) + 1} (h{level(h)}"
                      + (" inside a table" if _in_table(h) else "") + ")" for h in headings])
        raise PageNeedsFix(
            f"the page has {len(headings)} headings '{title}': {where}, counting the page's "
            "headings from the top; it is not clear where the table goes: in the Confluence "
            "editor rename or delete all but one, then run the command again")
    if headings and _in_table(headings[0]):
        place = _table_place(page, headings[0])
        raise PageNeedsFix(
            f"the heading '{title}' is inside a table on the page ({place}), and the tool's "
            "table cannot go inside another table: in the Confluence editor move the heading "
            "out of that table (or delete it), then run the command again")
    if not headings:
        start = _append_point(page)
        return Found(page, title, None, None, start, start, f"<h2>{xml_text(title)}</h2>")
    heading = headings[0]
    rank = level(heading)
    after = page.span(heading).end
    for i in range(page.index[heading] + 1, len(page.elements)):
        el = page.elements[i]
        if page.spans[i].start < after or _shadowed(el):
            continue  # inside the heading itself, or the fallback copy of what we read
        if 0 < level(el) <= rank and not _in_table(el):
            break
        if local(el) == "table" and not _in_table(el):
            header = header_texts(page, el)
            if header is not None and is_ours(header):
                span = page.span(el)
                return Found(page, title, heading, el, span.start, span.end)
    at = _insert_point(page, heading)
    return Found(page, title, heading, None, at, at)


def _and(parts: Sequence[str]) -> str:
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]


def _table_place(page: Page, el: etree._Element) -> str:
    """Where ``el`` sits for a person in the editor: which table of the page, which row."""
    tables = [t for t in page.elements if local(t) == "table" and not _in_table(t)
              and not _shadowed(t)]
    outer = [anc for anc in el.iterancestors() if local(anc) == "table"][-1]
    rows = [tr for tr in outer.iter() if local(tr) == "tr"]
    tr = next(anc for anc in el.iterancestors() if local(anc) == "tr")
    n = tables.index(outer) + 1 if outer in tables else 0
    which = f"table no. {n} of the page" if n else "a table"
    return f"{which}, row {rows.index(tr) + 1}" if tr in rows else which


def _insert_point(page: Page, heading: etree._Element) -> int:
    """Right after the heading; after the whole ADF extension when the heading is inside one
    (its content and fallback must stay a pair)."""
    outer = heading
    for anc in heading.iterancestors():
        if anc.tag == AC + "adf-extension":
            outer = anc
    return page.span(outer).end


def _append_point(page: Page) -> int:
    """The end of the page, or of its last layout cell when the page is one ``ac:layout``
    (content after the layout would sit outside every column)."""
    top = [el for el in page.root if isinstance(el.tag, str)]
    loose = (page.root.text or "").strip() or any((el.tail or "").strip() for el in page.root)
    if len(top) == 1 and top[0].tag == AC + "layout" and not loose:
        cells = list(top[0].iter(AC + "layout-cell"))
        if cells:
            span = page.span(cells[-1])
            if span.open_end < span.end:  # not self-closing: before its end tag
                return page.body.rfind("</", span.start, span.end)
    return len(page.body)


# ---------------------------------------------------------------------------- comparing
def table_data(page: Page, table: etree._Element) -> tuple:
    """What a reader sees in a table, for "did it change": each row's cells as (text, links,
    status lozenges, highlight colour). Lexical differences (Confluence's re-normalising on
    save, ``<p>`` around text, attribute order) do not count."""
    rows = []
    for tr in table.iter("tr", "{" + _XHTML + "}tr"):
        cells = [c for c in tr if local(c) in ("td", "th")]
        rows.append(tuple(cell_data(c) for c in cells))
    return tuple(rows)


def cell_data(cell: etree._Element) -> tuple:
    links = tuple(a.get("href") or "" for a in cell.iter("a", "{" + _XHTML + "}a"))
    statuses = tuple(
        (norm(param(m, "title") or ""), (param(m, "colour") or "").casefold())
        for m in cell.iter(AC + "structured-macro") if m.get(AC + "name") == "status")
    colour = (cell.get("data-highlight-colour") or "").casefold()
    return (norm(text(cell)), links, statuses, colour)


def param(macro: etree._Element, name: str) -> str | None:
    """A macro's ``ac:parameter`` value (entities resolved), or None."""
    for child in macro:
        if child.tag == AC + "parameter" and child.get(AC + "name") == name:
            return text_all(child)
    return None


# ---------------------------------------------------------------------------- splicing
@dataclass
class Splice:
    """The outcome of :func:`splice_table`."""

    body: str  # the new body, or the original object itself when nothing changed
    changed: bool
    before: Found  # where the table was / goes in the original body
    after: Found  # the same in the new body (the new table is ``after.table``)


Render = Callable[[Found], str]
Same = Callable[[Found, Found], bool]


def _same_data(before: Found, after: Found) -> bool:
    return table_data(before.page, before.table) == table_data(after.page, after.table)


def splice_table(body: str, title: str, is_ours: IsOurs, render: Render,
                 same: Same = _same_data) -> Splice:
    """Put the table ``render(found)`` returns in place of ours under heading ``title``.

    Only the table's characters differ between ``body`` and the result (or, with no table,
    the new table follows the heading; with no heading, an ``<h2>`` and the table are added at
    the end of the page). When ``same(before, after)`` says the table data did not change, the
    original body is returned with ``changed`` False.

    :raises ConfluenceError: the body cannot be parsed safely, the heading appears more than
        once, ``render`` refuses, or the result fails the verification
    """
    before = locate(load(body), title, is_ours)
    markup = render(before)
    start, end = before.start, before.end
    new_body = body[:start] + before.prefix + markup + body[end:]
    after = locate(load(new_body), title, is_ours)
    where = start + len(before.prefix)
    if after.table is None or (after.start, after.end) != (where, where + len(markup)):
        raise ConfluenceError(f"the updated page would not show the table under heading "
                              f"'{title}' where expected; nothing was written")
    if before.table is not None and same(before, after):
        return Splice(body, False, before, before)
    verify(body[:start] + before.prefix, body[end:], new_body, where, where + len(markup),
           after.page.spans)
    return Splice(new_body, True, before, after)


def replace_table(body: str, title: str, is_ours: IsOurs, markup: str) -> Splice:
    """:func:`splice_table` with a ready-made table (no-op when its data is already there)."""
    return splice_table(body, title, is_ours, lambda _found: markup)


def table_edit(title: str, is_ours: IsOurs, markup: str,
               summary: str = "table updated") -> Callable[[str], tuple[str, bool, str]]:
    """A page edit for ``confluence.update_page``: put ``markup`` as our table under
    ``title`` -> ``(body, changed, summary)`` (``"no changes"`` when the data is there)."""

    def apply(body: str) -> tuple[str, bool, str]:
        result = replace_table(body, title, is_ours, markup)
        return result.body, result.changed, summary if result.changed else "no changes"

    return apply


def verify(before: str, after: str, new_body: str, start: int, end: int,
           spans: list[Span] | None = None) -> None:
    """Check that ``new_body`` equals ``before + after`` outside the table at ``start:end``
    (C14N, entities resolved); ``spans``: :func:`scan` of ``new_body`` when already made."""
    marker = f"<{_MARK}/>"
    try:
        expected = xml_parse(before + marker + after, resolve=True)
        result = xml_parse(new_body, resolve=True)
    except etree.XMLSyntaxError as exc:
        raise ConfluenceError("the updated page would not be well-formed "
                              f"({parse_message(exc)}); nothing was written") from exc
    if spans is None:
        spans = scan(new_body)
    elements = [el for el in result.iter() if isinstance(el.tag, str) and el is not result]
    hits = [el for el, s in zip(elements, spans, strict=True)
            if (s.name, s.start, s.end) == ("table", start, end)]
    if len(hits) != 1:
        raise ConfluenceError("the updated page failed the safety check (table not found "
                              "after splicing); nothing was written")
    table = hits[0]
    mark = etree.Element(_MARK)
    mark.tail = table.tail
    table.getparent().replace(table, mark)
    if etree.tostring(expected, method="c14n2") != etree.tostring(result, method="c14n2"):
        raise ConfluenceError("the updated page failed the safety check (content outside the "
                              "table would change); nothing was written")

"""The Confluence to-do table in storage format (XHTML with ``ac:``/``ri:`` macros): render it,
find it on a page, and replace it without touching any other byte of the page.

A page body is a storage *fragment*: no root element, no namespace declarations, and possibly
HTML named entities (``&nbsp;``). Every HTML parser route damages such pages (CDATA, attribute
order, self-closing macros; ``reference/confluence.md`` §5), so the body is never re-serialised:

1. parse it with ``lxml.etree`` inside a wrapper root that binds ``ac``/``ri``/``at`` and an
   internal DTD declaring the HTML entities (strict: no recovery, no entity expansion), only to
   *locate* the heading and the table and to read the cells;
2. find the same elements' character spans in the original string with a small scanner that
   skips comments, CDATA and processing instructions, cross-checked element by element against
   the lxml parse;
3. splice the new table into the original text, then re-parse the result and check that the
   page outside the table is canonically (C14N) equal to the original before it is returned.

All functions here are pure (no HTTP); ``confluence.py`` drives them.
"""

from __future__ import annotations

import html.entities
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from lxml import etree

from errors import ConfluenceError
from reports import PAGE_COLUMNS

COLUMNS = PAGE_COLUMNS  # the tool's own columns; any other column on the page is a human's
STATUS_COLOURS = ("Grey", "Red", "Yellow", "Green", "Blue")
DEFAULT_COLOUR = "Grey"

NAMESPACES = {
    "ac": "http://www.atlassian.com/schema/confluence/4/ac/",
    "ri": "http://www.atlassian.com/schema/confluence/4/ri/",
    "at": "http://www.atlassian.com/schema/confluence/4/at/",
}
_AC = "{" + NAMESPACES["ac"] + "}"
_XHTML = "http://www.w3.org/1999/xhtml"
_ROOT = "sre-tracker-root"
_MARK = "sre-tracker-splice"

_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
# Elements whose start begins a new line of text in a cell (a cell may hold several <p>).
_BLOCKS = _HEADINGS | {"p", "div", "li", "ul", "ol", "pre", "blockquote", "table", "tr"}
# Macro internals that are not visible text (a status macro's title is read on purpose).
_HIDDEN = {_AC + "parameter", _AC + "task-id", _AC + "task-uuid", _AC + "task-status"}
# Elements that carry no content of their own: a cell holding only these (and whitespace) is
# empty, as in the blank rows Confluence puts into a newly inserted table.
_PLAIN = {"p", "br", "span", "strong", "em", "b", "i", "u", "s", "sub", "sup", "div", "td",
          "th"}

# XML 1.0 ``Char``: everything else (most C0 controls, lone surrogates, U+FFFE/U+FFFF) is
# dropped from text before it is written.
_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_NEWLINES = re.compile("\r\n?|\n")
_TASK_OF_TOOL = re.compile(r"→\s*L\d")


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


def _collapse(text: str) -> str:
    """Whitespace runs (U+00A0 included) to one space, trimmed."""
    return " ".join(text.split())


def _fold(text: str) -> str:
    """The form headings and column names are compared in: collapsed and case-folded."""
    return _collapse(xml_clean(text)).casefold()


def _norm(text: str) -> str:
    """Cell text for the "did the data change" comparison: spaces collapsed within each line,
    line breaks kept, blank ends trimmed (Confluence re-normalises markup whitespace)."""
    lines = [" ".join(line.split()) for line in text.split("\n")]
    return "\n".join(lines).strip("\n")


def _safe_href(url: object) -> str | None:
    url = xml_clean(url).strip()
    if re.fullmatch(r"https?://[^\s<>\"]+", url, flags=re.IGNORECASE):
        return url
    return None


def _colour(value: object) -> str:
    wanted = xml_clean(value).strip().casefold()
    for colour in STATUS_COLOURS:
        if colour.casefold() == wanted:
            return colour
    return DEFAULT_COLOUR


# ---------------------------------------------------------------------------- rendering
def _paragraph(inner: str) -> str:
    return f"<p>{inner}</p>" if inner else "<p />"


def _lines(text: str) -> str:
    return "<br />".join(xml_text(line) for line in xml_clean(text).split("\n"))


def _status_macro(title: str, colour: str) -> str:
    return ('<ac:structured-macro ac:name="status">'
            f'<ac:parameter ac:name="colour">{xml_text(colour)}</ac:parameter>'
            f'<ac:parameter ac:name="title">{xml_text(title)}</ac:parameter>'
            "</ac:structured-macro>")


def _tool_cell(column: str, row: Mapping[str, object]) -> str:
    raw = row.get(column, "") or ""
    if column not in ("Rally Card", "Status") or not raw:
        return _text_cell(str(raw))
    value = xml_clean(raw)
    if column == "Rally Card" and value:
        href = _safe_href(row.get("_link", ""))
        if href:
            return f'<td><p><a href="{xml_attr(href)}">{_lines(value)}</a></p></td>'
    if column == "Status" and value:
        title = value.replace("\n", " ")  # a macro parameter holds no line break
        return f"<td><p>{_status_macro(title, _colour(row.get('_colour')))}</p></td>"
    return f"<td>{_paragraph(_lines(value))}</td>"


@lru_cache(maxsize=16384)  # criteria, owners, flows and categories recur on every row
def _text_cell(value: str) -> str:
    return f"<td>{_paragraph(_lines(value))}</td>"


def _header_cell(name: str) -> str:
    return f"<th><p>{xml_text(name)}</p></th>"


_EMPTY_CELL = "<td><p /></td>"


def render_table(rows: Iterable[Mapping[str, object]]) -> str:
    """The to-do table as a storage-format fragment (Cloud and Data Center).

    ``rows`` hold the :data:`COLUMNS` as plain text, plus optional ``_link`` (the Rally Card
    URL; only http/https become a link) and ``_colour`` (status lozenge colour, default Grey).
    Newlines become ``<br />``; all text is escaped. The result is well-formed XML once the
    ``ac`` prefix is bound, as Confluence does for page bodies.
    """
    header = "<tr>" + "".join(_header_cell(c) for c in COLUMNS) + "</tr>"
    body = "".join("<tr>" + "".join(_tool_cell(c, row) for c in COLUMNS) + "</tr>"
                   for row in rows)
    return f"<table><tbody>{header}{body}</tbody></table>"


# ---------------------------------------------------------------------------- parsing
def _entity_dtd() -> str:
    decls = []
    for name, value in html.entities.html5.items():
        if not name.endswith(";") or name[:-1] in ("amp", "lt", "gt", "quot", "apos"):
            continue
        # ``&#38;#60;`` keeps a ``<`` or ``&`` replacement text from being read as markup.
        ref = "".join(f"&#38;#{ord(c)};" if c in "<&" else f"&#{ord(c)};" for c in value)
        decls.append(f'<!ENTITY {name[:-1]} "{ref}">')
    return f"<!DOCTYPE {_ROOT} [\n" + "\n".join(decls) + "\n]>\n"


_DTD = _entity_dtd()
_OPEN_ROOT = f"<{_ROOT} " + " ".join(f'xmlns:{p}="{u}"' for p, u in NAMESPACES.items()) + ">"
_CLOSE_ROOT = f"</{_ROOT}>"


def _xml_parse(body: str, *, resolve: bool) -> etree._Element:
    """Parse a storage fragment inside the wrapper; ``resolve`` expands entity references."""
    parser = etree.XMLParser(strip_cdata=False, resolve_entities=resolve, recover=False,
                             no_network=True, huge_tree=False, load_dtd=False)
    data = (_DTD + _OPEN_ROOT + body + _CLOSE_ROOT).encode("utf-8")
    return etree.fromstring(data, parser)


def _unsafe(reason: str) -> ConfluenceError:
    return ConfluenceError(f"the page body could not be parsed safely ({reason}); nothing was "
                           "written — fix the page in the Confluence editor or report this page")


@dataclass
class _Span:
    name: str
    start: int
    end: int  # one past the end of the element (its end tag, or the self-closing start tag)
    open_end: int  # one past the end of its start tag


_TAG = re.compile(
    r"""<(/?)([^\s/>!?"'=<]+)((?:\s+[^\s=/>"'<]+\s*=\s*(?:"[^"<]*"|'[^'<]*'))*)\s*(/?)>""")


def _scan(body: str) -> list[_Span]:
    """Character spans of all elements of a well-formed fragment, in document order."""
    spans: list[_Span] = []
    stack: list[int] = []
    pos = 0
    while True:
        lt = body.find("<", pos)
        if lt < 0:
            break
        for opener, closer in (("<!--", "-->"), ("<![CDATA[", "]]>"), ("<?", "?>")):
            if body.startswith(opener, lt):
                stop = body.find(closer, lt + len(opener))
                if stop < 0:
                    raise _unsafe(f"unterminated {opener} at character {lt}")
                pos = stop + len(closer)
                break
        else:
            m = _TAG.match(body, lt)
            if not m:
                raise _unsafe(f"unexpected markup at character {lt}")
            closing, name, attrs, self_closing = m.groups()
            if closing:
                if attrs or self_closing or not stack or spans[stack[-1]].name != name:
                    raise _unsafe(f"unbalanced </{name}> at character {lt}")
                spans[stack.pop()].end = m.end()
            else:
                spans.append(_Span(name, lt, m.end(), m.end()))
                if not self_closing:
                    stack.append(len(spans) - 1)
            pos = m.end()
    if stack:
        raise _unsafe(f"<{spans[stack[-1]].name}> is never closed")
    return spans


def _local(el: etree._Element) -> str | None:
    """Local name of an HTML element (no namespace, or XHTML); None for macros and the like."""
    if not isinstance(el.tag, str):
        return None
    qname = etree.QName(el)
    return qname.localname if qname.namespace in (None, _XHTML) else None


def _qualified(el: etree._Element) -> str:
    qname = etree.QName(el)
    return f"{el.prefix}:{qname.localname}" if el.prefix else qname.localname


@dataclass
class _Doc:
    body: str
    root: etree._Element
    elements: list[etree._Element]
    spans: list[_Span]
    index: dict[etree._Element, int] = field(default_factory=dict)

    def span(self, el: etree._Element) -> _Span:
        return self.spans[self.index[el]]

    def markup(self, el: etree._Element) -> str:
        span = self.span(el)
        return self.body[span.start:span.end]


def _load(body: str) -> _Doc:
    """Parse (strict, entities kept as references) and map every element to its span."""
    if not isinstance(body, str):
        raise _unsafe("the body is not text")
    try:
        root = _xml_parse(body, resolve=False)
    except etree.XMLSyntaxError as exc:
        raise _unsafe(_parse_message(exc)) from exc
    except (UnicodeError, ValueError) as exc:
        raise _unsafe(type(exc).__name__) from exc
    elements = [el for el in root.iter() if isinstance(el.tag, str) and el is not root]
    spans = _scan(body)
    names = [_qualified(el) for el in elements]
    if names != [s.name for s in spans]:
        raise _unsafe("the element scan disagrees with the XML parser")
    doc = _Doc(body, root, elements, spans)
    doc.index = {el: i for i, el in enumerate(elements)}
    return doc


def _parse_message(exc: etree.XMLSyntaxError) -> str:
    # Line numbers count the DTD and wrapper lines; report only the parser's sentence.
    return re.sub(r",? line \d+, column \d+.*$", "", str(exc.msg or exc)).strip() or "bad XML"


def _entity_char(name: str) -> str:
    return html.entities.html5.get(name + ";", "")


def _text(el: etree._Element) -> str:
    """Visible text of an element: entities resolved, ``<br>`` and block starts as newlines,
    macro parameters left out."""
    out: list[str] = []

    def add(piece: str | None) -> None:
        if piece:
            out.append(piece)

    def ends_line() -> bool:
        return not out or out[-1].endswith("\n")

    def walk(node: etree._Element, top: bool) -> None:
        tag = node.tag
        if tag is etree.Entity:
            add(_entity_char(node.name))
            return
        if not isinstance(tag, str) or tag in _HIDDEN:
            return
        name = _local(node)
        if not top and name in _BLOCKS and not ends_line():
            out.append("\n")
        if name == "br":
            out.append("\n")
        add(node.text)
        for child in node:
            walk(child, False)
            add(child.tail)

    walk(el, True)
    return "".join(out)


def _param(macro: etree._Element, name: str) -> str | None:
    for child in macro:
        if child.tag == _AC + "parameter" and child.get(_AC + "name") == name:
            return _text_all(child)
    return None


def _text_all(el: etree._Element) -> str:
    """All character data inside an element (a macro parameter), entities resolved."""
    out = [el.text or ""]
    for child in el:
        if child.tag is etree.Entity:
            out.append(_entity_char(child.name))
        elif isinstance(child.tag, str):
            out.append(_text_all(child))
        out.append(child.tail or "")
    return "".join(out)


# ---------------------------------------------------------------------------- the table
@dataclass
class _Cell:
    el: etree._Element
    markup: str
    text: str  # exact visible text
    links: tuple[str, ...]
    statuses: tuple[tuple[str, str], ...]  # (title, colour)
    empty: bool

    @property
    def data(self) -> tuple:
        return (_norm(self.text), self.links,
                tuple((_norm(t), c.casefold()) for t, c in self.statuses))

    def value(self, column: str) -> str:
        if column == "Status" and self.statuses:
            return self.statuses[0][0]
        return self.text


@dataclass
class _Row:
    markup: str
    open_tag: str
    cells: list[_Cell]
    key: tuple[str, str] | None = None
    tool: bool = False


@dataclass
class _Table:
    el: etree._Element
    span: _Span
    open_tag: str
    captions: list[str]
    cols: list[str]  # <colgroup>/<col> markup, kept when the column count stays
    header: _Row
    header_in_thead: bool
    names: list[str]  # header texts, collapsed
    tool_index: dict[str, int]  # tool column -> its index in this table
    rows: list[_Row]

    @property
    def data(self) -> tuple:
        return (tuple(c.data for c in self.header.cells),
                tuple(tuple(c.data for c in r.cells) for r in self.rows))


def _read_cell(doc: _Doc, el: etree._Element) -> _Cell:
    links = tuple(a.get("href") or "" for a in el.iter("a", "{" + _XHTML + "}a"))
    statuses = tuple(
        (_param(m, "title") or "", _param(m, "colour") or "")
        for m in el.iter(_AC + "structured-macro") if m.get(_AC + "name") == "status")
    text = _text(el)
    empty = not text.strip() and all(
        not isinstance(d.tag, str) or _local(d) in _PLAIN for d in el.iter())
    return _Cell(el, doc.markup(el), text, links, statuses, empty)


def _read_row(doc: _Doc, tr: etree._Element, what: str) -> _Row:
    cells = []
    for child in tr:
        if _local(child) in ("td", "th"):
            for attr in ("colspan", "rowspan"):
                if (child.get(attr) or "1").strip() not in ("", "1"):
                    raise ConfluenceError(f"the table under {what} has merged cells; split them "
                                          "in the Confluence editor so rows can be matched")
            cells.append(_read_cell(doc, child))
    span = doc.span(tr)
    return _Row(doc.markup(tr), doc.body[span.start:span.open_end], cells)


def _read_table(doc: _Doc, table: etree._Element, title: str) -> _Table:
    what = f"heading '{title}'"
    span = doc.span(table)
    open_tag = doc.body[span.start:span.open_end]
    if open_tag.endswith("/>"):
        open_tag = open_tag[:-2].rstrip() + ">"
    captions: list[str] = []
    cols: list[str] = []
    rows: list[tuple[etree._Element, str | None]] = []
    for child in table:
        name = _local(child)
        if not isinstance(child.tag, str):
            continue
        if name in ("thead", "tbody", "tfoot"):
            for tr in child:
                if _local(tr) == "tr":
                    rows.append((tr, name))
                elif isinstance(tr.tag, str):
                    raise ConfluenceError(f"the table under {what} holds an unexpected "
                                          f"<{_qualified(tr)}>; remove it from the table")
        elif name == "tr":
            rows.append((child, None))
        elif name in ("colgroup", "col"):
            cols.append(doc.markup(child))
        elif name == "caption":
            captions.append(doc.markup(child))
        else:
            raise ConfluenceError(f"the table under {what} holds an unexpected "
                                  f"<{_qualified(child)}>; remove it from the table")
    if not rows or not _is_header(rows[0][0]):
        raise ConfluenceError(f"the table under {what} has no header row; make its first row "
                              "a header row, or delete the table and let sre-tracker add one")
    header = _read_row(doc, rows[0][0], what)
    names = [_collapse(c.text) for c in header.cells]
    tool_index: dict[str, int] = {}
    folded = {c.casefold(): c for c in COLUMNS}
    for i, name in enumerate(names):
        column = folded.get(name.casefold())
        if column and column not in tool_index:
            tool_index[column] = i
    data_rows = [_read_row(doc, tr, what) for tr, _section in rows[1:]]
    for row in data_rows:
        if "Task" in tool_index and "Asset Name" in tool_index:
            task = _cell_text(row, tool_index["Task"])
            asset = _cell_text(row, tool_index["Asset Name"])
            if task is not None and asset is not None:
                row.key = (task, asset)
                row.tool = bool(_TASK_OF_TOOL.search(task))
    return _Table(table, span, open_tag, captions, cols, header, rows[0][1] == "thead", names,
                  tool_index, data_rows)


def _is_header(tr: etree._Element) -> bool:
    cells = [_local(c) for c in tr if _local(c) in ("td", "th")]
    return bool(cells) and all(c == "th" for c in cells)


def _cell_text(row: _Row, index: int) -> str | None:
    return _collapse(row.cells[index].text) if index < len(row.cells) else None


def _row_key(row: Mapping[str, object]) -> tuple[str, str]:
    return (_collapse(xml_clean(row.get("Task", ""))),
            _collapse(xml_clean(row.get("Asset Name", ""))))


# ---------------------------------------------------------------------------- locating
def _level(el: etree._Element) -> int:
    name = _local(el)
    return int(name[1]) if name in _HEADINGS else 0


def _locate(doc: _Doc, title: str) -> tuple[etree._Element | None, etree._Element | None]:
    """The heading titled ``title`` and the table under it (either may be None).

    The table is the first ``<table>`` after the heading in document order, within the
    heading's section: a heading of the same or a higher rank in between ends the search, so
    the next section's table is never taken for ours.
    """
    wanted = _fold(title)
    if not wanted:
        raise ConfluenceError("the table title is empty; set CONFLUENCE_TABLE_TITLE")
    headings = [el for el in doc.elements if _level(el) and _fold(_text(el)) == wanted]
    if len(headings) > 1:
        raise ConfluenceError(f"found {len(headings)} headings '{title}' on the page; keep one")
    if not headings:
        return None, None
    heading = headings[0]
    level = _level(heading)
    after = doc.span(heading).end
    for i in range(doc.index[heading] + 1, len(doc.elements)):
        el = doc.elements[i]
        if doc.spans[i].start < after:
            continue  # inside the heading itself
        if 0 < _level(el) <= level:
            break
        if _local(el) == "table":
            return heading, el
    return heading, None


# ---------------------------------------------------------------------------- updating
def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclass
class _Plan:
    markup: str
    matched: list[_Row | None]  # per given row: the old row it replaces (None: added)
    removed: int


def _build(old: _Table | None, rows: Sequence[Mapping[str, object]]) -> _Plan:
    """The new table markup, and which old rows the given rows replace."""
    if old is None:
        return _Plan(render_table(rows), [None] * len(rows), 0)

    # Column layout: the tool's columns in order, human columns re-inserted at their index.
    # Each entry: (tool column or None for a human one, its index in the old table or None).
    layout: list[tuple[str | None, int | None]] = [(c, old.tool_index.get(c)) for c in COLUMNS]
    tool_at = set(old.tool_index.values())
    for i in range(len(old.names)):
        if i not in tool_at:
            layout.insert(min(i, len(layout)), (None, i))
    old_index = [index for _column, index in layout]
    same_layout = old_index == list(range(len(old.names)))

    def old_cell(row: _Row, index: int | None) -> _Cell | None:
        return row.cells[index] if index is not None and index < len(row.cells) else None

    wanted_keys = {_row_key(r) for r in rows}
    matches: dict[tuple[str, str], list[_Row]] = {}
    for row in old.rows:
        if row.key is not None and row.key in wanted_keys:
            matches.setdefault(row.key, []).append(row)

    body: list[str] = []
    matched: list[_Row | None] = []
    for row in rows:
        found = matches.get(_row_key(row), [])
        matched.append(found[0] if found else None)
        cells = []
        for column, index in layout:
            if column is not None:
                cells.append(_tool_cell(column, row))
                continue
            # A human cell follows its row; of duplicate old rows the first non-empty wins.
            candidates = [c for c in (old_cell(r, index) for r in found) if c is not None]
            chosen = next((c for c in candidates if not c.empty), None) or (
                candidates[0] if candidates else None)
            cells.append(chosen.markup if chosen else _EMPTY_CELL)
        body.append("<tr>" + "".join(cells) + "</tr>")

    # Rows humans added stay, after the tool's rows; tool rows no longer given (closed items)
    # and blank rows leave the table.
    kept = 0
    for row in old.rows:
        if row.key in matches or row.tool or all(c.empty for c in row.cells):
            continue
        kept += 1
        if same_layout:
            body.append(row.markup)
        else:
            cells = [(c.markup if (c := old_cell(row, index)) else _EMPTY_CELL)
                     for index in old_index]
            body.append(row.open_tag + "".join(cells) + "</tr>")

    if same_layout:
        header = old.header.markup
    else:
        header = "<tr>" + "".join(
            old.header.cells[index].markup if index is not None else _header_cell(str(column))
            for column, index in layout) + "</tr>"
    # A <colgroup> sized for another column count would misdraw the table: drop it then.
    head = "".join(old.captions) + ("".join(old.cols) if len(layout) == len(old.names) else "")
    if old.header_in_thead:
        inner = f"{head}<thead>{header}</thead><tbody>{''.join(body)}</tbody>"
    else:
        inner = f"{head}<tbody>{header}{''.join(body)}</tbody>"
    return _Plan(old.open_tag + inner + "</table>", matched,
                 len(old.rows) - kept - len(matches))


def _summary(plan: _Plan, old: _Table | None, fresh: _Table) -> str:
    if old is None:
        return f"table added with {_plural(len(plan.matched), 'row')}"
    added = sum(1 for m in plan.matched if m is None)
    updated = 0
    for i, was in enumerate(plan.matched):
        if was is None:
            continue
        now = fresh.rows[i]
        for column in COLUMNS:
            before = old.tool_index.get(column)
            have = (was.cells[before].data if before is not None and before < len(was.cells)
                    else ("", (), ()))
            if have != now.cells[fresh.tool_index[column]].data:
                updated += 1
                break
    parts: list[str] = []
    for count, verb in ((added, "added"), (updated, "updated"), (plan.removed, "removed")):
        if count:
            parts.append(f"{_plural(count, 'row')} {verb}" if not parts else f"{count} {verb}")
    return ", ".join(parts) or "table layout updated"


def update_table(body: str, title: str,
                 rows: Sequence[Mapping[str, object]]) -> tuple[str, bool, str]:
    """Replace the to-do table under the heading ``title`` in a page body.

    :param body: the page's storage-format body as the API returned it
    :param title: the heading text (CONFLUENCE_TABLE_TITLE); whitespace and case are folded
    :param rows: the table rows, sorted, each with the :data:`COLUMNS` (+ ``_link``,
        ``_colour``)
    :returns: ``(new_body, changed, summary)``; when the table data is unchanged the body is
        returned as it came and ``changed`` is False. Only the table's characters differ
        between ``body`` and ``new_body`` (or, without the heading, an ``<h2>`` and the table
        are appended; with the heading but no table, the table follows the heading).
    :raises ConfluenceError: the body cannot be parsed safely, the heading appears more than
        once, the old table cannot be read, or the result fails the verification.
    """
    rows = list(rows)
    doc = _load(body)
    heading, table = _locate(doc, title)
    old = _read_table(doc, table, title) if table is not None else None
    plan = _build(old, rows)
    markup = plan.markup
    prefix = ""
    if table is not None:
        start, end = doc.span(table).start, doc.span(table).end
    elif heading is not None:
        start = end = doc.span(heading).end
    else:
        start = end = len(body)
        prefix = f"<h2>{xml_text(title)}</h2>"
    new_body = body[:start] + prefix + markup + body[end:]

    new_doc = _load(new_body)
    _heading, new_table = _locate(new_doc, title)
    where = start + len(prefix)
    if new_table is None or (new_doc.span(new_table).start, new_doc.span(new_table).end) != (
            where, where + len(markup)):
        raise ConfluenceError(f"the updated page would not show the table under heading "
                              f"'{title}' where expected; nothing was written")
    fresh = _read_table(new_doc, new_table, title)
    if old is not None and fresh.data == old.data:
        return body, False, "no changes"
    _verify(body[:start] + prefix, body[end:], new_body, where, where + len(markup))
    return new_body, True, _summary(plan, old, fresh)


def _verify(before: str, after: str, new_body: str, start: int, end: int) -> None:
    """Check that ``new_body`` equals the original page outside the spliced table (C14N)."""
    marker = f"<{_MARK}/>"
    try:
        expected = _xml_parse(before + marker + after, resolve=True)
        result = _xml_parse(new_body, resolve=True)
    except etree.XMLSyntaxError as exc:
        raise ConfluenceError("the updated page would not be well-formed "
                              f"({_parse_message(exc)}); nothing was written") from exc
    spans = _scan(new_body)
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


def _rows_as_dicts(table: _Table) -> list[dict[str, str]]:
    out = []
    for row in table.rows:
        item: dict[str, str] = {}
        for i, name in enumerate(table.names):
            column = next((c for c, j in table.tool_index.items() if j == i), name)
            item[column] = row.cells[i].value(column) if i < len(row.cells) else ""
        for column in COLUMNS:
            item.setdefault(column, "")
        card = table.tool_index.get("Rally Card")
        status = table.tool_index.get("Status")
        links = row.cells[card].links if card is not None and card < len(row.cells) else ()
        macros = (row.cells[status].statuses
                  if status is not None and status < len(row.cells) else ())
        item["_link"] = links[0] if links else ""
        item["_colour"] = macros[0][1] if macros else ""
        out.append(item)
    return out


def table_rows(body: str, title: str) -> list[dict[str, str]] | None:
    """Read the to-do table back: one dict per data row, None when heading or table is missing.

    Keys: the :data:`COLUMNS` (``""`` when the table lacks one), any human column by its header
    text, ``_link`` (Rally Card href) and ``_colour`` (status colour). Values are the cells'
    visible text (``<br />`` as ``\\n``; Status is the lozenge title).
    """
    doc = _load(body)
    _heading, table = _locate(doc, title)
    if table is None:
        return None
    return _rows_as_dicts(_read_table(doc, table, title))


@dataclass(frozen=True)
class PageTable:
    """What an update would find on a page (see :func:`inspect_page`)."""

    heading: bool
    table: bool
    rows: int


def inspect_page(body: str, title: str) -> PageTable:
    """Whether the heading and its table are there, and how many data rows the table has.

    :raises ConfluenceError: as :func:`update_table` would, before any write.
    """
    doc = _load(body)
    heading, table = _locate(doc, title)
    rows = len(_read_table(doc, table, title).rows) if table is not None else 0
    return PageTable(heading is not None, table is not None, rows)

"""The Confluence to-do table in storage format (XHTML with ``ac:``/``ri:`` macros): render it,
read it back from a page, and work out the new table from the old one and the items.

Finding the table on a page and splicing it in byte-exactly is ``storage_page``'s job; this
module knows what the to-do table holds: the tool's :data:`COLUMNS`, rows keyed by
(Task, Asset Name), and what people add to it (columns, rows, cell highlights, inline
comments), which it keeps. All functions here are pure (no HTTP); ``confluence.py`` drives them.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Collection, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from lxml import etree

from sre_maturity.render import storage_page as sp
from sre_maturity.render.reports import PAGE_COLUMNS, STATUS_COLOURS, TodoRowFormat, clean_text
from sre_maturity.render.storage_page import NAMESPACES, xml_attr, xml_clean, xml_text
from sre_maturity.support.errors import ConfluenceError

__all__ = ["COLUMNS", "NAMESPACES", "KnownKeys", "PageTable", "inspect_page", "known_key",
           "render_table", "table_rows", "update_table", "xml_attr", "xml_clean", "xml_text"]

COLUMNS = PAGE_COLUMNS  # the tool's own columns; any other column on the page is a human's
DEFAULT_COLOUR = "Grey"
IS_OURS = sp.has_columns("Asset Name", "Task")  # SPEC §11: the header holds both

_AC = sp.AC
# Elements that carry no content of their own: a cell holding only these (and whitespace) is
# empty, as in the blank rows Confluence puts into a newly inserted table.
_PLAIN = {"p", "br", "span", "strong", "em", "b", "i", "u", "s", "sub", "sup", "div", "td",
          "th"}
# What a person puts on a cell the tool owns and the tool keeps when it rewrites the cell.
_MARKER = re.compile(r"<ac:inline-comment-marker\b[^>]*>")


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
    # The same text as the wiki table (reports.clean_text), so paste and page agree.
    if column == "Rally Card":
        return _card_cell(row.get(column, ""), row.get("_link", ""))
    if column == "Status":
        return _status_cell(row.get(column, ""), row.get("_colour"))
    return _plain_cell(row.get(column, ""))


@lru_cache(maxsize=1024)  # most rows of a report have no story yet: one empty card
def _card_cell(card: object, link: object) -> str:
    value = clean_text(card)
    href = _safe_href(link) if value else None
    if href:
        return f'<td><p><a href="{xml_attr(href)}">{_lines(value)}</a></p></td>'
    return _text_cell(value)


@lru_cache(maxsize=1024)  # a handful of statuses and colours
def _status_cell(status: object, colour: object) -> str:
    value = clean_text(status)
    if not value:
        return _text_cell(value)
    title = value.replace("\n", " ")  # a macro parameter holds no line break
    return f"<td><p>{_status_macro(title, _colour(colour))}</p></td>"


@lru_cache(maxsize=65536)  # criteria, owners, flows and categories recur on every row
def _plain_cell(value: object) -> str:
    return _text_cell(clean_text(value))


@lru_cache(maxsize=16384)
def _text_cell(value: str) -> str:
    return f"<td>{_paragraph(_lines(value))}</td>"


def _header_cell(name: str) -> str:
    return f"<th><p>{xml_text(name)}</p></th>"


_EMPTY_CELL = "<td><p /></td>"
_NO_DATA = ("", (), ())  # the data of a cell that shows nothing


def render_table(rows: Iterable[Mapping[str, object]]) -> str:
    """The to-do table as a storage-format fragment (Cloud and Data Center).

    ``rows`` hold the :data:`COLUMNS` as plain text, plus optional ``_link`` (the Rally Card
    URL; only http/https become a link) and ``_colour`` (status lozenge colour, default Grey).
    Newlines become ``<br />``; all text is escaped. The result is well-formed XML once the
    ``ac`` prefix is bound, as Confluence does for page bodies.
    """
    return "".join(render_parts(rows))


def render_parts(rows: Iterable[Mapping[str, object]]) -> Iterator[str]:
    """:func:`render_table` in pieces: the table's opening with the header row, one piece per
    row, then the closing (for writing the table to a file row by row)."""
    yield table_start()
    for row in rows:
        yield render_row(row)
    yield TABLE_END


def table_start() -> str:
    """The to-do table's opening, with its header row."""
    return "<table><tbody><tr>" + "".join(_header_cell(c) for c in COLUMNS) + "</tr>"


TABLE_END = "</tbody></table>"


def render_row(row: Mapping[str, object]) -> str:
    """One to-do row as a storage-format ``<tr>``."""
    cell = _plain_cell
    get = row.get
    # COLUMNS in order, spelled out: this runs once per row of a report.
    return "".join((
        "<tr>", cell(get("Priority", "")), cell(get("Required for Go Live", "")),
        cell(get("Target Milestone", "")), cell(get("Owner", "")), cell(get("Flow", "")),
        cell(get("Asset Name", "")), cell(get("Task", "")), cell(get("Description", "")),
        _card_cell(get("Rally Card", ""), get("_link", "")),
        _status_cell(get("Status", ""), get("_colour")), cell(get("Category", "")), "</tr>"))


STORAGE_ROWS = TodoRowFormat(_plain_cell, _card_cell, _status_cell, sep="", start="<tr>",
                             end="</tr>")


def rows_fingerprint(title: str, rendered: Iterable[str]) -> str:
    """A short hash of a table under ``title`` from its rows as :func:`render_row` renders
    them (every column, link and colour): equal fingerprints, equal tables."""
    import hashlib
    digest = hashlib.sha256(title.encode() + b"\x1d")
    for row in rendered:
        digest.update(row.encode())
    return "sre-rows:" + digest.hexdigest()[:16]


def new_page_body(title: str, rendered: Iterable[str]) -> str:
    """The body of a page the tool creates for a part of the list from its rendered rows:
    the heading it looks for, then the table (what :func:`update_table` makes of an empty
    page)."""
    return f"<h2>{xml_text(title)}</h2>" + table_start() + "".join(rendered) + TABLE_END


def render_todo_row(it: Mapping) -> str:
    """``render_row(reports.todo_row(it))``, from the parts :class:`reports.TodoRowFormat`
    makes once."""
    return STORAGE_ROWS.row(it)


# ---------------------------------------------------------------------------- the table
@dataclass
class _Cell:
    el: etree._Element
    markup: str
    open_tag: str  # the <td ...> start tag (a person's highlight colour lives here)
    text: str  # exact visible text
    links: tuple[str, ...]
    statuses: tuple[tuple[str, str], ...]  # (title, colour)
    empty: bool

    @property
    def data(self) -> tuple:
        return (sp.norm(self.text), self.links,
                tuple((sp.norm(t), c.casefold()) for t, c in self.statuses))

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


@dataclass
class _Table:
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


def _read_cell(page: sp.Page, el: etree._Element) -> _Cell:
    links = tuple(a.get("href") or "" for a in el.iter("a", "{http://www.w3.org/1999/xhtml}a"))
    statuses = tuple(
        (sp.param(m, "title") or "", sp.param(m, "colour") or "")
        for m in el.iter(_AC + "structured-macro") if m.get(_AC + "name") == "status")
    text = sp.text(el)
    empty = not text.strip() and all(
        not isinstance(d.tag, str) or sp.local(d) in _PLAIN for d in el.iter())
    open_tag = page.open_tag(el)
    if open_tag.endswith("/>"):
        open_tag = open_tag[:-2].rstrip() + ">"
    return _Cell(el, page.markup(el), open_tag, text, links, statuses, empty)


def _read_row(page: sp.Page, tr: etree._Element, what: str) -> _Row:
    cells = []
    for child in tr:
        if sp.local(child) in ("td", "th"):
            for attr in ("colspan", "rowspan"):
                if (child.get(attr) or "1").strip() not in ("", "1"):
                    raise ConfluenceError(f"the table under {what} has merged cells; split them "
                                          "in the Confluence editor so rows can be matched")
            cells.append(_read_cell(page, child))
    return _Row(page.markup(tr), page.open_tag(tr), cells)


def _read_table(page: sp.Page, table: etree._Element, title: str, *,
                keyed: bool = True) -> _Table:
    what = f"heading '{title}'"
    open_tag = page.open_tag(table)
    if open_tag.endswith("/>"):
        open_tag = open_tag[:-2].rstrip() + ">"
    captions: list[str] = []
    cols: list[str] = []
    rows: list[tuple[etree._Element, str | None]] = []
    for child in table:
        name = sp.local(child)
        if not isinstance(child.tag, str):
            continue
        if name in ("thead", "tbody", "tfoot"):
            for tr in child:
                if sp.local(tr) == "tr":
                    rows.append((tr, name))
                elif isinstance(tr.tag, str):
                    raise ConfluenceError(f"the table under {what} holds an unexpected "
                                          f"<{sp.qualified(tr)}>; remove it from the table")
        elif name == "tr":
            rows.append((child, None))
        elif name in ("colgroup", "col"):
            cols.append(page.markup(child))
        elif name == "caption":
            captions.append(page.markup(child))
        else:
            raise ConfluenceError(f"the table under {what} holds an unexpected "
                                  f"<{sp.qualified(child)}>; remove it from the table")
    # locate() only returns a table whose first row is a header row holding our columns.
    header = _read_row(page, rows[0][0], what)
    names = [sp.collapse(t) for t in sp.cell_texts([c.markup for c in header.cells])]
    tool_index: dict[str, int] = {}
    folded = {c.casefold(): c for c in COLUMNS}
    for i, name in enumerate(names):
        column = folded.get(name.casefold())
        if column and column not in tool_index:
            tool_index[column] = i
    data_rows = [_read_row(page, tr, what) for tr, _section in rows[1:]]
    task_at, asset_at = tool_index["Task"], tool_index["Asset Name"]
    # Rows are matched by the cells' text as a reader sees it (keyed=False: not needed).
    rows_with_key = [r for r in data_rows if keyed and task_at < len(r.cells)
                     and asset_at < len(r.cells)]
    texts = iter(sp.cell_texts([m for r in rows_with_key for m in (r.cells[task_at].markup,
                                                                   r.cells[asset_at].markup)]))
    for row in rows_with_key:
        row.key = (sp.collapse(next(texts)), sp.collapse(next(texts)))
    return _Table(open_tag, captions, cols, header, rows[0][1] == "thead", names, tool_index,
                  data_rows)


def known_key(task: object, asset: object) -> tuple[str, str]:
    """The (Task, Asset Name) pair a page row is matched by, as :func:`update_table` compares
    it (whitespace collapsed)."""
    return (sp.collapse(xml_clean(clean_text(task))), sp.collapse(xml_clean(clean_text(asset))))


def _row_key(row: Mapping[str, object]) -> tuple[str, str]:
    return known_key(row.get("Task", ""), row.get("Asset Name", ""))


class KnownKeys(ABC):
    """The (Task, Asset Name) keys, in :func:`known_key` form, of the items the tool knows,
    asked one page row at a time: for a source that looks the keys up (an organisation has
    10^5 items, a page a few thousand rows) instead of handing :func:`update_table` all of
    them."""

    @abstractmethod
    def __contains__(self, key: object) -> bool:
        """Whether ``key`` (as :func:`known_key` makes it) names an item the tool knows."""


class _Either(Container):
    """Membership in either of two containers."""

    def __init__(self, first: Container, second: Container) -> None:
        self._first, self._second = first, second

    def __contains__(self, key: object) -> bool:
        return key in self._first or key in self._second


# ---------------------------------------------------------------------------- updating
def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclass
class _Plan:
    markup: str
    matched: list[_Row | None]  # per given row: the old row it replaces (None: added)
    removed: int
    updated: int = 0  # rows of ``matched`` whose tool cells show other data now
    rows: int = 0  # data rows of the new table (the given ones and the people's kept)

    @property
    def added(self) -> int:
        return sum(1 for m in self.matched if m is None)


def _expected(column: str, row: Mapping[str, object]) -> tuple:
    """The :attr:`_Cell.data` of the cell :func:`_tool_cell` renders (without parsing it)."""
    value = xml_clean(clean_text(row.get(column, "")))
    if column == "Rally Card" and value and _safe_href(row.get("_link", "")):
        return (sp.norm(value), (_safe_href(row.get("_link", "")),), ())
    if column == "Status" and value:
        return ("", (), ((sp.norm(value.replace("\n", " ")),
                          _colour(row.get("_colour")).casefold()),))
    return (sp.norm(value), (), ())


def _keep_human_marks(new: str, old: _Cell) -> str:
    """A rewritten tool cell keeps what a person put on it: the cell's own attributes (the
    highlight colour) and inline-comment markers, re-anchored on the new text."""
    inner = new[len("<td>"):-len("</td>")]
    markers = _MARKER.findall(old.markup)
    if markers:
        body = inner[3:-4] if inner.startswith("<p>") else ""
        wrapped = "".join(markers) + body + "</ac:inline-comment-marker>" * len(markers)
        inner = f"<p>{wrapped}</p>"
    return old.open_tag + inner + "</td>"


def _layout(old: _Table) -> list[tuple[str | None, int | None]]:
    """The column layout of the new table: the old table's columns in the order people left
    them (our columns by name, theirs by index), and a missing tool column after the tool
    column it follows in :data:`COLUMNS`. Entries: (tool column or None, old index or None)."""
    by_index = {i: c for c, i in old.tool_index.items()}
    layout: list[tuple[str | None, int | None]] = [
        (by_index.get(i), i) for i in range(len(old.names))]
    for n, column in enumerate(COLUMNS):
        if column in old.tool_index:
            continue
        at = 0
        for prev in reversed(COLUMNS[:n]):
            spot = next((k for k, (c, _i) in enumerate(layout) if c == prev), None)
            if spot is not None:
                at = spot + 1
                break
        layout.insert(at, (column, None))
    return layout


def _build(old: _Table | None, rows: Sequence[Mapping[str, object]],
           known: Container[tuple[str, str]]) -> _Plan:
    """The new table markup, and which old rows the given rows replace."""
    if old is None:
        return _Plan(render_table(rows), [None] * len(rows), 0, rows=len(rows))

    layout = _layout(old)
    old_index = [index for _column, index in layout]
    same_layout = old_index == list(range(len(old.names)))

    def old_cell(row: _Row, index: int | None) -> _Cell | None:
        return row.cells[index] if index is not None and index < len(row.cells) else None

    wanted_keys = {_row_key(r) for r in rows}
    matches: dict[tuple[str, str], list[_Row]] = {}
    for old_row in old.rows:
        if old_row.key is not None and old_row.key in wanted_keys:
            matches.setdefault(old_row.key, []).append(old_row)

    body: list[str] = []
    matched: list[_Row | None] = []
    updated = 0
    for row in rows:
        found = matches.get(_row_key(row), [])
        matched.append(found[0] if found else None)
        cells = []
        differs = False
        for column, index in layout:
            if column is not None:
                was = old_cell(found[0], index) if found else None
                expected = _expected(column, row)
                if was is not None and was.data == expected:
                    cells.append(was.markup)  # unchanged: byte for byte, marks and all
                    continue
                differs = differs or was is not None or expected != _NO_DATA
                if was is not None:
                    cells.append(_keep_human_marks(_tool_cell(column, row), was))
                else:
                    cells.append(_tool_cell(column, row))
                continue
            # A human cell follows its row; of duplicate old rows the first non-empty wins.
            candidates = [c for c in (old_cell(r, index) for r in found) if c is not None]
            chosen = next((c for c in candidates if not c.empty), None) or (
                candidates[0] if candidates else None)
            cells.append(chosen.markup if chosen else _EMPTY_CELL)
        body.append((found[0].open_tag if found else "<tr>") + "".join(cells) + "</tr>")
        updated += bool(found) and differs

    # Rows people added stay, after the tool's rows; rows of items the tool knows but no longer
    # lists (closed items) and blank rows leave the table.
    kept = 0
    for old_row in old.rows:
        if old_row.key in matches or old_row.key in known or all(
                c.empty for c in old_row.cells):
            continue
        kept += 1
        if same_layout:
            body.append(old_row.markup)
        else:
            cells = [(c.markup if (c := old_cell(old_row, index)) else _EMPTY_CELL)
                     for index in old_index]
            body.append(old_row.open_tag + "".join(cells) + "</tr>")

    if same_layout:
        header = old.header.markup
    else:
        header = old.header.open_tag + "".join(
            old.header.cells[index].markup if index is not None else _header_cell(str(column))
            for column, index in layout) + "</tr>"
    # A <colgroup> sized for another column count would misdraw the table: drop it then.
    head = "".join(old.captions) + ("".join(old.cols) if len(layout) == len(old.names) else "")
    if old.header_in_thead:
        inner = f"{head}<thead>{header}</thead><tbody>{''.join(body)}</tbody>"
    else:
        inner = f"{head}<tbody>{header}{''.join(body)}</tbody>"
    return _Plan(old.open_tag + inner + "</table>", matched,
                 len(old.rows) - kept - len(matches), updated, len(rows) + kept)


def _summary(plan: _Plan, old: _Table | None) -> str:
    if old is None:
        return f"table added with {_plural(len(plan.matched), 'row')}"
    parts: list[str] = []
    for count, verb in ((plan.added, "added"), (plan.updated, "updated"),
                        (plan.removed, "removed")):
        if count:
            parts.append(f"{_plural(count, 'row')} {verb}" if not parts else f"{count} {verb}")
    return ", ".join(parts) or "table layout updated"


def update_table(body: str, title: str, rows: Sequence[Mapping[str, object]],
                 known: Collection[tuple[str, str]] | KnownKeys | None = None
                 ) -> tuple[str, bool, str]:
    """Replace the to-do table under the heading ``title`` in a page body.

    :param body: the page's storage-format body as the API returned it
    :param title: the heading text (CONFLUENCE_TABLE_TITLE); whitespace and case are folded
    :param rows: the table rows, sorted, each with the :data:`COLUMNS` (+ ``_link``,
        ``_colour``)
    :param known: (Task, Asset Name) of every item the tool knows (:func:`known_key`), open or
        closed: a page row is the tool's only when it names one of them (or one of ``rows``);
        every other row is a person's and is kept. A :class:`KnownKeys` is asked about the
        page's rows one at a time; any other collection is read whole.
    :returns: ``(new_body, changed, summary)``; when the table data is unchanged the body is
        returned as it came and ``changed`` is False. Only the table's characters differ
        between ``body`` and ``new_body`` (see :func:`storage_page.splice_table` for where a
        new table goes).
    :raises ConfluenceError: the body cannot be parsed safely, the heading appears more than
        once, our table cannot be read, or the result fails the verification.
    """
    rows = list(rows)
    listed = {_row_key(r) for r in rows}
    known_keys: Container[tuple[str, str]] = (
        _Either(listed, known) if isinstance(known, KnownKeys)
        else {known_key(t, a) for t, a in known or ()} | listed)
    state: dict[str, Any] = {}  # what render() and same() saw, for the summary

    def render(found: sp.Found) -> str:
        old = _read_table(found.page, found.table, title) if found.table is not None else None
        plan = _build(old, rows, known_keys)
        state.update(old=old, plan=plan)
        return plan.markup

    def same(before: sp.Found, after: sp.Found) -> bool:
        old, plan = state["old"], state["plan"]
        if old is None or plan.added or plan.updated or plan.removed or \
                plan.rows != len(old.rows):
            return False  # the rows say so: the new table need not be read back
        return _read_table(after.page, after.table, title, keyed=False).data == old.data

    result = sp.splice_table(body, title, IS_OURS, render, same)
    if not result.changed:
        return body, False, "no changes"
    return result.body, True, _summary(state["plan"], state["old"])


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
    found = sp.locate(sp.load(body), title, IS_OURS)
    if found.table is None:
        return None
    return _rows_as_dicts(_read_table(found.page, found.table, title))


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
    found = sp.locate(sp.load(body), title, IS_OURS)
    rows = len(_read_table(found.page, found.table, title).rows) if found.table is not None else 0
    return PageTable(found.heading is not None, found.table is not None, rows)

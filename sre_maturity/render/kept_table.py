"""A table the tool keeps on a page (the Rulebook, the matrix), rewritten with what people
added to it kept — the to-do table's rules (SPEC §6), for any table with key columns:

- the tool's columns are the ones its fresh table has (matched by header text, case and
  spaces folded); every other column is a person's and keeps its cells and its place;
- rows are matched by the key columns' text (the Rulebook: Capability and Level; the matrix:
  Flow and Asset Name); a row whose key names nothing the tool knows is a person's and stays,
  after the tool's rows;
- a tool cell whose text is unchanged stays byte for byte (a person's highlight colour and
  inline comments with it); a changed cell keeps the person's colour unless the tool colours
  the cell itself (the matrix's RAG cells);

so that, with no change in the data, the table on the page reads the same and no new version
is written (``storage_page.splice_table``'s no-op rule). The to-do table has its own, richer
version of this in :mod:`storage_format` (status lozenges, links, human marks re-anchored).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from lxml import etree

from sre_maturity.render import storage_page as sp
from sre_maturity.support.errors import ConfluenceError

_EMPTY_CELL = "<td><p /></td>"
_HIGHLIGHT = "data-highlight-colour"


@dataclass
class _Cell:
    markup: str
    open_tag: str  # "<td ...>", never self-closing
    inner: str  # what is between the cell's tags
    data: tuple  # sp.cell_data: text, links, statuses, highlight colour
    coloured: bool  # the cell has a highlight colour


@dataclass
class _Row:
    open_tag: str
    cells: list[_Cell]
    key: tuple[str, ...] | None


@dataclass
class _Table:
    open_tag: str
    extras: list[str]  # <caption>, <colgroup>/<col> markup, in order
    header: _Row
    header_in_thead: bool
    names: list[str]  # header texts, case and spaces folded
    rows: list[_Row]


def _cell(page: sp.Page, el: etree._Element) -> _Cell:
    for attr in ("colspan", "rowspan"):
        if (el.get(attr) or "1").strip() not in ("", "1"):
            raise ConfluenceError("a table the tool keeps has merged cells; split them in the "
                                  "Confluence editor so its rows can be matched")
    markup = page.markup(el)
    open_tag = page.open_tag(el)
    if open_tag.endswith("/>"):
        open_tag, inner = open_tag[:-2].rstrip() + ">", ""
    else:
        inner = markup[len(open_tag):markup.rindex("</")]
    return _Cell(markup, open_tag, inner, sp.cell_data(el), el.get(_HIGHLIGHT) is not None)


def _read(page: sp.Page, table: etree._Element, keys: Sequence[str]) -> _Table:
    open_tag = page.open_tag(table)
    extras: list[str] = []
    rows: list[tuple[etree._Element, str | None]] = []
    for child in table:
        if not isinstance(child.tag, str):
            continue
        name = sp.local(child)
        if name in ("thead", "tbody", "tfoot"):
            rows += [(tr, name) for tr in child if sp.local(tr) == "tr"]
        elif name == "tr":
            rows.append((child, None))
        else:  # caption, colgroup, col
            extras.append(page.markup(child))

    def row(tr: etree._Element) -> _Row:
        return _Row(page.open_tag(tr), [_cell(page, c) for c in tr
                                        if sp.local(c) in ("td", "th")], None)

    header = row(rows[0][0])
    names = [sp.fold(c.data[0]) for c in header.cells]
    at = [names.index(sp.fold(k)) for k in keys]
    body = [row(tr) for tr, _section in rows[1:]]
    for r in body:
        if all(i < len(r.cells) for i in at):
            r.key = tuple(sp.fold(r.cells[i].data[0]) for i in at)
    return _Table(open_tag, extras, header, rows[0][1] == "thead", names, body)


def _layout(old: _Table, new: _Table, retired: Collection[str]
            ) -> list[tuple[int | None, int | None]]:
    """The new table's columns as (index in the tool's table or None for a person's column,
    index in the old table or None): the old order without the tool's ``retired`` columns,
    the tool's new columns after the tool column they follow in the tool's table."""
    tool = {name: i for i, name in enumerate(new.names)}
    layout: list[tuple[int | None, int | None]] = [
        (tool.get(name), i) for i, name in enumerate(old.names)
        if name in tool or name not in retired]
    placed = {t for t, _o in layout if t is not None}
    for t in range(len(new.names)):
        if t in placed:
            continue
        spot = next((k + 1 for k, (c, _o) in enumerate(layout) if c == t - 1), 0) if t else 0
        layout.insert(spot, (t, None))
        placed.add(t)
    return layout


def _tool_cell(new: _Cell, was: _Cell | None) -> str:
    if was is None:
        return new.markup
    if was.data[:3] == new.data[:3] and (not new.coloured or was.data[3] == new.data[3]):
        return was.markup  # unchanged: byte for byte, a person's colour and comments too
    # Changed text: the person's colour stays where the tool has no colour of its own.
    return (new.markup if new.coloured else was.open_tag + new.inner
            + was.markup[was.markup.rindex("</"):])


def merge(found: sp.Found, markup: str, keys: Sequence[str],
          known: Collection[tuple[str, ...]] = (), known_columns: Collection[str] = ()) -> str:
    """The tool's fresh table ``markup`` with what people added to the old table under
    ``found`` kept (the module's rules). ``known``: keys (folded) of rows the tool once wrote
    that may leave the table (a retired asset); rows of neither ``markup`` nor ``known`` are a
    person's. ``known_columns`` likewise for columns (folded header texts: a category the
    model no longer has)."""
    if found.table is None:
        return markup
    page = sp.load(markup)
    fresh = _read(page, next(el for el in page.elements if sp.local(el) == "table"), keys)
    old = _read(found.page, found.table, keys)
    layout = _layout(old, fresh, known_columns)
    same_layout = [o for _t, o in layout] == list(range(len(old.names)))
    wanted = {r.key for r in fresh.rows}
    matches: dict[tuple[str, ...], _Row] = {}
    for r in old.rows:
        if r.key in wanted and r.key is not None:
            matches.setdefault(r.key, r)

    def old_cell(row: _Row | None, index: int | None) -> _Cell | None:
        return (row.cells[index] if row is not None and index is not None
                and index < len(row.cells) else None)

    body = []
    for r in fresh.rows:
        was = matches.get(r.key) if r.key is not None else None
        cells = [_tool_cell(r.cells[t], old_cell(was, o)) if t is not None and t < len(r.cells)
                 else (c.markup if (c := old_cell(was, o)) else _EMPTY_CELL)
                 for t, o in layout]
        body.append((was.open_tag if was else r.open_tag) + "".join(cells) + "</tr>")
    gone = wanted | set(known)
    for r in old.rows:
        if r.key in gone or all(not c.data[0].strip() and not c.data[1] and not c.data[2]
                                for c in r.cells):
            continue  # the tool's row (written above, or retired), or a blank row
        body.append(r.open_tag + "".join(c.markup if (c := old_cell(r, o)) else _EMPTY_CELL
                                         for _t, o in layout) + "</tr>")
    header = old.header.open_tag + "".join(
        old.header.cells[o].markup if o is not None else fresh.header.cells[t or 0].markup
        for t, o in layout) + "</tr>"
    # A <colgroup> sized for another column count would misdraw the table: drop it then.
    extras = "".join(e for e in old.extras if same_layout or "col" not in e[:10])
    rows = (f"<thead>{header}</thead><tbody>{''.join(body)}</tbody>" if old.header_in_thead
            else f"<tbody>{header}{''.join(body)}</tbody>")
    return old.open_tag + extras + rows + "</table>"


def table_edit(title: str, is_ours: sp.IsOurs, markup: str, keys: Sequence[str],
               known: Collection[tuple[str, ...]] = (), known_columns: Collection[str] = (),
               summary: str = "table updated") -> Callable[[str], tuple[str, bool, str]]:
    """A page edit for ``confluence.update_page`` (as ``storage_page.table_edit``) that keeps
    what people added to the table (:func:`merge`)."""

    def apply(body: str) -> tuple[str, bool, str]:
        result = sp.splice_table(body, title, is_ours,
                                 lambda found: merge(found, markup, keys, known,
                                                     known_columns))
        return result.body, result.changed, summary if result.changed else "no changes"

    return apply

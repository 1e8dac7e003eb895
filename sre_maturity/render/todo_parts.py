"""A to-do list larger than a page (SPEC §11): when one part, when several, and what each
part and the index hold.

The list stays one page while its storage-format table is under :data:`PAGE_BYTES` and
:data:`PAGE_ROWS`. Beyond either, it is split **per flow**: one part per flow (an asset in
several flows sits in the part of the first of them, by name), and a flow too large for one
page is cut into ``"<flow> (part 2)"`` and so on, between assets (by name): an asset's rows
stay on one page, so an assessment changes one page. Per flow, not per team, because every asset
has a flow (Team is optional in flows.csv and often blank), because the go-live gate and the
people who push a flow to go-live look at one flow, and because the table is already sorted
by flow after priority.

A part's page is the child page titled :func:`child_title` under ``CONFLUENCE_PAGE_ID``; the
main page then holds the index (:data:`INDEX_COLUMNS`: part, open, Red, Amber, and a link
to the part's page by its title). Offline, a part is the pair of files :func:`file_stem`
``.txt``/``.html`` whose names start with the part's number and flow.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sre_maturity.render import storage_page as sp
from sre_maturity.render.reports import sort_key, wiki_escape
from sre_maturity.render.storage_page import xml_attr, xml_text
from sre_maturity.rules import maturity as mt

# reference/confluence.md §8: Data Center refuses to edit a page whose editing snapshot is over
# 16 MiB and Cloud answers 500 to very large bodies; SPEC §11 caps a page at 5 MiB. One part's
# table stays under 4 MiB, leaving 1 MiB for what Confluence adds on save (macro and table
# ids, some 70 bytes a row) and what people add to the page (columns, comments, text).
PAGE_BYTES = 4 * 1024 * 1024
# Far below the byte bound for short texts: a table of more rows does not read as a list, and
# the update of a changed page (read, parsed, compared cell by cell, spliced and verified)
# grows with its rows: some 2 s for 2,000 rows of 60-character criteria.
PAGE_ROWS = 2000

INDEX_COLUMNS = ("Part", "Open", "Red", "Amber", "Page")
INDEX_IS_OURS = sp.has_columns("Part", "Open", "Red", "Amber")
FILE_PREFIX = "confluence_page."
_PART_FILE = re.compile(r"^confluence_page\.\d{2,}-.*\.(txt|html)$")

E = TypeVar("E")


def either_is_ours(header: Sequence[str]) -> bool:
    """The main page's table under the heading is ours whether it is the index or the to-do
    table (the list moves between one page and several)."""
    from sre_maturity.render import storage_format

    return INDEX_IS_OURS(header) or storage_format.IS_OURS(header)


def needs_split(rows: int, storage_bytes: Callable[[], int]) -> bool:
    """Whether a to-do list of ``rows`` rows is split; ``storage_bytes`` (asked only when the
    row count alone does not decide) is the size of its storage-format table."""
    return rows > PAGE_ROWS or storage_bytes() > PAGE_BYTES


def part_flow(flows: Iterable[str]) -> str:
    """The flow whose part holds an asset's items: the first of its flows by name."""
    return min(flows, default="")


@dataclass
class Part(Generic[E]):
    """One part of a split to-do list: its flow, its number within the flow (0: the flow is
    one part), what the caller made of each row, and the counts the index shows."""

    flow: str
    number: int = 0
    entries: list[E] = field(default_factory=list)
    open: int = 0
    red: int = 0
    amber: int = 0
    size: int = 0
    _keys: list[Any] = field(default_factory=list, init=False, repr=False)  # entries' order

    @property
    def name(self) -> str:
        return self.flow if not self.number else f"{self.flow} (part {self.number})"

    def overflows(self, rows: int, size: int) -> bool:
        """Whether ``rows`` more rows of ``size`` bytes would pass a bound (never for an empty
        part: a row too large for a page alone still gets one)."""
        return bool(self.entries) and (len(self.entries) + rows > PAGE_ROWS
                                       or self.size + size > PAGE_BYTES)

    def next(self) -> Part[E]:
        """The flow's next part: this one is full (and numbered from now on)."""
        self.number = self.number or 1
        return Part(self.flow, self.number + 1)

    def close(self) -> Part[E]:
        """This part with its entries in table order (they were added asset by asset)."""
        ranked = sorted(range(len(self.entries)), key=self._keys.__getitem__)
        self.entries = [self.entries[i] for i in ranked]
        self._keys = []
        return self

    def add_rows(self, rows: Iterable[tuple[Mapping[str, Any], E, int]],
                 order: Callable[[Mapping[str, Any]], Any]) -> None:
        """:meth:`add` for each ``(item, entry, size)`` of ``rows``, the key ``order(item)``."""
        entries, keys, size = self.entries, self._keys, 0
        for it, entry, row_size in rows:
            entries.append(entry)
            keys.append(order(it))
            size += row_size
            if it["state"] == mt.OPEN:
                self.open += 1
                if it["go_live"]:
                    self.red += 1
                else:
                    self.amber += 1
        self.size += size

    def add(self, it: Mapping[str, Any], entry: E, size: int, key: Any = None) -> None:
        self.add_rows(((it, entry, size),), lambda _it: key)


def split(items: Iterable[Mapping[str, Any]], flow_of: Mapping[str, str],
          make: Callable[[Mapping[str, Any]], tuple[E, int]],
          order: Callable[[Mapping[str, Any]], Any] = sort_key) -> Iterator[Part[E]]:
    """The parts of a to-do list, one at a time (only one part's rows are held).

    ``items``: item dicts sorted by their part's flow (``flow_of[asset]``) and asset, then in
    table order; ``make(item) -> (entry, storage bytes)`` is what a part keeps of a row;
    ``order(item)``: the table's sort key, the order of the rows within a part. A flow
    becomes several parts where its rows pass :data:`PAGE_ROWS` or :data:`PAGE_BYTES`. A
    part holds whole assets, the flow's assets by name (only an asset too large for a page
    alone is cut): a person finds an asset's rows on one page, and an assessment, which
    changes one asset's rows, changes one part (unless the asset no longer fits it).
    """
    part: Part[E] | None = None
    for flow, rows in _by_asset(items, flow_of, make):
        if part is not None and part.flow != flow:
            yield part.close()
            part = None
        if part is None:
            part = Part(flow)
        size = sum(size for _it, _entry, size in rows)
        if part.overflows(len(rows), size):
            part, full = part.next(), part
            yield full.close()
        if len(part.entries) + len(rows) <= PAGE_ROWS and part.size + size <= PAGE_BYTES:
            part.add_rows(rows, order)  # the asset fits: no row of it passes a bound
            continue
        for it, entry, size in rows:
            if part.overflows(1, size):  # an asset too large for a page alone
                part, full = part.next(), part
                yield full.close()
            part.add(it, entry, size, order(it))
    if part is not None:
        yield part.close()


def _by_asset(items: Iterable[Mapping[str, Any]], flow_of: Mapping[str, str],
              make: Callable[[Mapping[str, Any]], tuple[E, int]]
              ) -> Iterator[tuple[str, list[tuple[Mapping[str, Any], E, int]]]]:
    """``(part flow, [(item, entry, size), ...])`` for each asset's run of ``items``."""
    key: tuple[str, str] | None = None
    rows: list[tuple[Mapping[str, Any], E, int]] = []
    for it in items:
        here = (flow_of.get(it["asset"], ""), it["asset"])
        if here != key:
            if key is not None:
                yield key[0], rows
            key, rows = here, []
        entry, size = make(it)
        rows.append((it, entry, size))
    if key is not None:
        yield key[0], rows


def child_title(table_title: str, part: str) -> str:
    """The title of a part's child page. Titles are unique in a whole space
    (confluence-create.md §4), so the part's name alone would collide with other pages."""
    return f"{table_title} – {part}"


def slug(text: str) -> str:
    """A file-name-safe form of a part's name (letters, digits, ``-``; lower case)."""
    return re.sub(r"[^a-z0-9]+", "-", text.casefold()).strip("-")[:60] or "part"


def file_stem(number: int, part: str) -> str:
    """``confluence_page.03-checkout-part-2``: the part files' name without ``.txt``/``.html``,
    numbered in the index's order."""
    return f"{FILE_PREFIX}{number:02d}-{slug(part)}"


def is_part_file(name: str) -> bool:
    """Whether ``name`` is a part file ``report`` writes (and may remove when stale)."""
    return bool(_PART_FILE.match(name))


@dataclass(frozen=True)
class IndexRow:
    """One row of the index on the main page."""

    part: str
    open: int
    red: int
    amber: int
    title: str  # the child page's title
    file: str = ""  # offline: the file stem holding the part


def index_row(part: Part, table_title: str, stem: str = "") -> IndexRow:
    return IndexRow(part.name, part.open, part.red, part.amber,
                    child_title(table_title, part.name), stem)


def index_storage(rows: Sequence[IndexRow]) -> str:
    """The index as a storage-format table; the Page cell links the child page by title."""
    head = "".join(f"<th><p>{xml_text(c)}</p></th>" for c in INDEX_COLUMNS)
    body = "".join(
        f"<tr><td><p>{xml_text(r.part)}</p></td><td><p>{r.open}</p></td>"
        f"<td><p>{r.red}</p></td><td><p>{r.amber}</p></td>"
        f'<td><p><ac:link><ri:page ri:content-title="{xml_attr(r.title)}" />'
        f"</ac:link></p></td></tr>"
        for r in rows)
    return f"<table><tbody><tr>{head}</tr>{body}</tbody></table>"


def _wiki_link(title: str, escape: Callable[[object], str]) -> str:
    # [Title] links a page of the same space by title; a title with the link syntax's own
    # characters cannot be written as a link, so it is shown as text.
    if re.search(r"[\[\]|{}\n\r]", title):
        return escape(title)
    return f"[{title}]"


def index_wiki(rows: Sequence[IndexRow], escape: Callable[[object], str] = wiki_escape) -> str:
    """The index as a wiki-markup table (text written by ``escape``, the paste dialect's cell
    escaping); the Page cell links the child page by title and, offline, names the file to
    paste into it."""
    lines = ["||" + "||".join(INDEX_COLUMNS) + "||"]
    for r in rows:
        page = _wiki_link(r.title, escape)
        if r.file:
            page += " " + escape(f"(paste {r.file}.txt)")
        lines.append(f"|{escape(r.part)}|{r.open}|{r.red}|{r.amber}|{page}|")
    return "\n".join(lines) + "\n"


def index_wiki_page(rows: Sequence[IndexRow], title: str, generated: str, count: int,
                    escape: Callable[[object], str] = wiki_escape) -> str:
    """confluence_page.txt of a split list: heading, how to use it, the index."""
    return (f"h2. {escape(title)}\n\n"
            f"_Generated by sre-tracker on {escape(generated)}: {count} items, more "
            f"than one page holds, in {len(rows)} parts._ _Paste this index into the to-do "
            f"page; under it, create one child page per part with the title shown and paste "
            f"the part's file there._\n\n"
            + index_wiki(rows, escape))


def part_wiki_head(table_title: str, part: Part, generated: str,
                   escape: Callable[[object], str] = wiki_escape) -> str:
    """A part file up to the table: the heading the tool looks for on the child page, and
    which part it is."""
    count = len(part.entries)
    return (f"h2. {escape(table_title)}\n\n"
            f"_Generated by sre-tracker on {escape(generated)}: part "
            f"{escape(part.name)}, {count} items ({part.red} Red, {part.amber} Amber "
            f"open). Paste into the page "
            f"{escape(repr(child_title(table_title, part.name)))}._\n\n")


@dataclass
class Layout:
    """The to-do list as :func:`layout` read it: split or not, its row count, its item dicts
    (one pass; in table order, or when split by part flow and asset, then table order) and
    each asset's part flow."""

    split: bool
    count: int
    items: Iterator[dict]
    flow_of: dict[str, str]


def layout(db, levels: Iterable[tuple[str, str, str, str | None]] | None = None) -> Layout:
    """Read the to-do list (open items and those awaiting re-assessment, with the stored
    fields ``report`` uses) and decide whether it is split. The items are made one at a time
    while the caller iterates, so ``db`` stays open until then. Only a list short enough to
    be measured (:data:`PAGE_ROWS`) is held whole; a longer one is counted first (from
    ``levels``, :func:`views.open_levels`, read here when not given), then read one flow at
    a time."""
    from sre_maturity.render import reports, storage_format
    from sre_maturity.rules import views

    fields = views.REPORT_ITEM_FIELDS
    active = db.load_assets()
    flow_of = {a: part_flow(info.flows) for a, info in active.items()}
    # One aggregate row per cell with open items: as many digits as open and done items.
    count = sum(len(of_cell) for asset, _capability, of_cell, _done in (
        db.open_levels_by_cell() if levels is None else levels) if asset in active)
    if count > PAGE_ROWS:
        flows: dict[str, list[str]] = {}
        for asset in sorted(flow_of):
            flows.setdefault(flow_of[asset], []).append(asset)
        items = views.item_dicts_by_asset(db, (flows[f] for f in sorted(flows)),
                                          (mt.OPEN, mt.DONE), order=reports.page_order,
                                          fields=fields)
        return Layout(True, count, items, flow_of)
    rows = views.item_rows(db, (mt.OPEN, mt.DONE), order=reports.page_order, fields=fields)
    held = list(views.item_dicts(db, rows, fields))
    if not needs_split(len(held), lambda: sum(
            len(storage_format.render_todo_row(it).encode()) for it in held)):
        return Layout(False, len(held), iter(held), flow_of)
    # By part flow and asset, as split() takes them (stable: table order kept within).
    held.sort(key=lambda it: (flow_of.get(it["asset"], ""), it["asset"]))
    return Layout(True, len(held), iter(held), flow_of)

"""Renderers: the terminal matrix, CSV/JSON, rally_import.csv, the wiki-markup to-do table.

Functions here take plain data (matrix entries, item dicts) and return text or rows; they never
touch the database, the network or the terminal.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TextIO

from sre_maturity.rules import maturity as mt

if TYPE_CHECKING:
    import pandas as pd

# The to-do table's columns, in SPEC §6 order (the page, confluence_page.txt, the HTML).
PAGE_COLUMNS = [
    "Priority", "Required for Go Live", "Target Milestone", "Owner", "Flow", "Asset Name",
    "Task", "Description", "Rally Card", "Status", "Category",
]
# Every Unicode line break (NEL, LS, PS too) becomes \n, so a cell can never split a table row.
_LINE_BREAKS = re.compile("\r\n|[\r\x85\u2028\u2029]")
# Control characters, and the bidirectional overrides and isolates that would let a name
# reorder the text around it (SPEC §11 "Names and messages").
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff"
                      "\u202a-\u202e\u2066-\u2069]")
# Any character that _LINE_BREAKS, the tab rule or _CONTROL would change.
_UNCLEAN = re.compile("[\r\x85\u2028\u2029\t\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff"
                      "\ufffe\uffff\u202a-\u202e\u2066-\u2069]")

_ANSI = {"Red": "\033[31m", "Amber": "\033[33m", "Green": "\033[32m", "dim": "\033[2m"}
_RESET = "\033[0m"


# ---------------------------------------------------------------------------- items and rows
def clean_text(value: object) -> str:
    """Text with control characters (bidirectional overrides too) removed and line ends
    normalised to ``\\n``."""
    text = "" if value is None else str(value)
    if not _UNCLEAN.search(text):  # the common case: nothing to change but the ends
        return text.strip()
    return _clean(text)


@lru_cache(maxsize=16384)  # the same criteria, owners and flows recur on every row
def _clean(text: str) -> str:
    text = _LINE_BREAKS.sub("\n", text).replace("\t", " ")
    return _CONTROL.sub("", text).strip()


# What a terminal would act on instead of showing: C0/C1 controls (ESC starts colour and cursor
# sequences, CR overwrites the line) and the direction marks that reorder text (RLO, ...).
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029"
                        "\u202a-\u202e\u2066-\u2069]")


def visible(text: object) -> str:
    """Text for the terminal with every control character shown as an escape (``\\x1b``,
    ``\\u202e``), never acted on; line ends and tabs stay."""
    text = "" if text is None else str(text)
    if not _INVISIBLE.search(text):
        return text
    return _INVISIBLE.sub(lambda m: (f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                                     else f"\\u{ord(m.group()):04x}"), text)


def _visible_entries(rows: Sequence[Mapping], fields: tuple[str, ...]) -> list[Mapping]:
    """``rows`` with the text ``fields`` made visible (rows that need no change are kept)."""
    # Names repeat on every row: look at each distinct value once; in the common case none
    # needs a change and the rows are kept as they are.
    values = {row.get(f) for row in rows for f in fields}
    if not any(isinstance(v, str) and _INVISIBLE.search(v) for v in values):
        return list(rows)
    out: list[Mapping] = []
    for row in rows:
        if any(isinstance(row.get(f), str) and _INVISIBLE.search(row[f]) for f in fields):
            row = {**row, **{f: visible(row[f]) for f in fields if isinstance(row.get(f), str)}}
        out.append(row)
    return out


_SHOWN_FIELDS = ("asset", "flow", "category", "capability", "why", "not_applicable_reason")


def sort_key(item: Mapping) -> tuple:
    """The to-do table's order of an item dict (see :func:`page_order`)."""
    return page_order(item["priority"], item["go_live"], item.get("flows", ""), item["asset"],
                      item["capability"], item["level"])


def page_order(priority: str, go_live: object, flows: str, asset: str, capability: str,
               level: int) -> tuple:
    """Priority, then go-live first, then flow, asset (then capability, level)."""
    return (priority, 0 if go_live else 1, flows, asset, capability, level)


def todo_items(items: Iterable[Mapping]) -> list[Mapping]:
    """Items that belong on the to-do table: open ones, and done ones awaiting re-assessment."""
    return sorted((it for it in items if mt.is_open(str(it["state"]))), key=sort_key)


def todo_rows(items: Iterable[Mapping]) -> list[dict[str, str]]:
    """The to-do table rows (SPEC §6) with ``_link`` and ``_colour`` for the status lozenge."""
    return [todo_row(it) for it in todo_items(items)]


def todo_row(it: Mapping) -> dict[str, str]:
    """One open item as a to-do table row."""
    task, description = level_text(it["capability"], it["level"], it["criteria"],
                                    it.get("why") or "")
    status, colour = status_text(it["work_status"], it["state"])
    return {
        "Priority": it["priority"],
        "Required for Go Live": "Yes" if it["go_live"] else "No",
        "Target Milestone": it["milestone"],
        "Owner": it["owner"],
        "Flow": it.get("flows", ""),
        "Asset Name": it["asset"],
        "Task": task,
        "Description": description,
        "Rally Card": it.get("rally_id") or "",
        "Status": status,
        "Category": it["category"],
        "_link": it.get("rally_url") or "",
        "_colour": colour,
    }


# The same texts recur on thousands of rows: one string each, whose hash is then known to the
# renderers' caches too.
@lru_cache(maxsize=16384)
def level_text(capability: str, level: int, criteria: str, why: str) -> tuple[str, str]:
    """A to-do row's Task and Description: the criteria, then why the item is open (without
    repeating the criteria)."""
    why = mt.reason_beside_criteria(why, level, criteria)
    return mt.task_name(capability, level), f"{criteria} ({why})" if why else criteria


@lru_cache(maxsize=256)
def status_text(work_status: str, state: str) -> tuple[str, str]:
    """A to-do row's Status and the colour of its lozenge."""
    return mt.display_status(work_status, state), mt.status_colour(work_status, state)


def neutralise(cell: str) -> str:
    """Stop spreadsheet apps from executing a cell (CSV formula injection)."""
    if cell and cell[0] in "=+-@\t\r":
        return "'" + cell
    return cell


# ---------------------------------------------------------------------------- wiki markup
# How Atlassian's wiki renderer reads a cell (reference/confluence.md §7, SPEC §11): a
# backslash escapes only ``- # * _ + ? ^ ~ | % { } [ ] ( ) ! @``, and only when it is not
# itself after a backslash; it runs before ``\\`` becomes a line break. Links ``[...]`` and
# macros ``{...}`` are cut out before the row is split, and a ``|`` after ``\`` or after
# ``|`` does not end a cell. So the characters of _BACKSLASHED get a backslash, except right
# after a line break (the backslash would follow one and show); the ones a backslash cannot
# make literal (``& : ; \ < >``) and ``| [ ] { }`` (still tokenised or split when
# backslashed) are numeric character references (XHTML has no ``&bsol;``); a line that would
# start ``h1.``-``h6.`` or ``bq.`` gets its first letter as a reference. A line break is
# ``\\`` and a space (see _wiki_escape).
_BACKSLASHED = frozenset("-#*_+?^~%()!@")
_REFERENCED = frozenset("|[]{}&:;\\<>")
_BLOCK_START = re.compile(r"\s*(?:h(?=[1-6]\.)|b(?=q\.))")
STATUS_COLOURS = ("Grey", "Red", "Yellow", "Green", "Blue")  # the status lozenge's colours
_LOZENGE_TITLE = re.compile(r"[\w][\w –-]*")  # what a status macro parameter holds safely
_LINK_ALIAS = re.compile(r"[\w.-]+")  # a Rally FormattedID (US123)


def wiki_escape(text: object) -> str:
    """Write text for one cell of a Confluence wiki-markup table so that the renderer shows
    exactly the text (line breaks as ``\\\\`` and a space) and formats nothing; never empty."""
    return _wiki_escape(clean_text(text))


@lru_cache(maxsize=16384)
def _wiki_escape(text: str) -> str:
    lines = []
    for n, line in enumerate(text.split("\n")):
        out = []
        block = _BLOCK_START.match(line)
        skip = block.end() - 1 if block else -1  # the h of "h3." / the b of "bq."
        for i, ch in enumerate(line):
            if i == skip or ch in _REFERENCED:
                out.append(f"&#{ord(ch)};")
            elif ch in _BACKSLASHED:
                # After a line break the backslash would follow a backslash and show.
                out.append(f"&#{ord(ch)};" if n and i == 0 else "\\" + ch)
            else:
                out.append(ch)
        lines.append("".join(out))
    # "\\" and a space: the server renderer breaks a line at "\\" only when no backslash
    # follows in the same run of non-space characters (ForceNewLineRendererComponent); the
    # space ends the run, and a reader never sees a space at the start of a line.
    return "\\\\ ".join(lines) or " "


def lozenge_colour(value: object) -> str:
    """The status lozenge colour named by ``value`` (Grey when it names none)."""
    wanted = clean_text(value).casefold()
    return next((c for c in STATUS_COLOURS if c.casefold() == wanted), STATUS_COLOURS[0])


def safe_url(url: str) -> str | None:
    """``url`` when it is an http(s) URL a wiki link can hold, else None."""
    url = clean_text(url)
    if not re.match(r"https?://", url) or any(c in url for c in "|[]{} \n"):
        return None
    return url


def wiki_cell(column: str, row: Mapping[str, object]) -> str:
    """One cell of a to-do row: the Rally Card as a link and the Status as a lozenge when
    their text fits those forms (else plain text, shown exactly)."""
    if column == "Rally Card":
        return _card_wiki_cell(row.get(column, ""), row.get("_link", ""))
    if column == "Status":
        return _status_wiki_cell(row.get(column, ""), row.get("_colour"))
    return _plain_wiki_cell(row.get(column, ""))


@lru_cache(maxsize=1024)  # most rows of a report have no story yet: one empty card
def _card_wiki_cell(card: object, link: object) -> str:
    value = clean_text(card)
    if _LINK_ALIAS.fullmatch(value):
        url = safe_url(str(link or ""))
        if url:
            return f"[{value}|{url}]"
    return wiki_escape(value)


@lru_cache(maxsize=1024)  # a handful of statuses and colours
def _status_wiki_cell(status: object, colour: object) -> str:
    value = " ".join(clean_text(status).split("\n"))  # a lozenge holds one line, in storage too
    if _LOZENGE_TITLE.fullmatch(value) and not value.endswith(" "):
        return f"{{status:colour={lozenge_colour(colour)}|title={value}}}"
    return wiki_escape(value)


@lru_cache(maxsize=65536)
def _plain_wiki_cell(value: object) -> str:
    # Most cells of a large table repeat (priority, owner, flow, criteria, category): one
    # look-up instead of cleaning and escaping the same text again for every row.
    return wiki_escape(value)


def wiki_table(rows: Sequence[Mapping[str, object]]) -> str:
    """The to-do table in Confluence wiki markup: ``||header||`` then ``|cell|`` rows."""
    lines = [wiki_header()]
    lines.extend(wiki_row(row) for row in rows)
    return "\n".join(lines) + "\n"


def wiki_header() -> str:
    """The header line of the wiki-markup to-do table."""
    return "||" + "||".join(PAGE_COLUMNS) + "||"


def wiki_row(row: Mapping[str, object]) -> str:
    """One to-do row as a line of the wiki-markup table (no line end)."""
    cell = _plain_wiki_cell
    get = row.get
    # PAGE_COLUMNS in order, spelled out: this runs once per row of a report.
    return "|".join((
        "", cell(get("Priority", "")), cell(get("Required for Go Live", "")),
        cell(get("Target Milestone", "")), cell(get("Owner", "")), cell(get("Flow", "")),
        cell(get("Asset Name", "")), cell(get("Task", "")), cell(get("Description", "")),
        _card_wiki_cell(get("Rally Card", ""), get("_link", "")),
        _status_wiki_cell(get("Status", ""), get("_colour")), cell(get("Category", "")), ""))


class TodoRowFormat:
    """How one output writes an item's to-do row from parts that recur on many rows (a
    level's cells, an asset's, a task's, a status's), each made once: the same text as
    rendering ``todo_row(it)`` cell by cell (a property test checks both outputs), at a
    fraction of the work for the one row per open item report writes.

    ``cell``, ``card`` and ``status`` render one cell (a plain value; the Rally Card from its
    id and link; the Status from its text and colour), ``sep`` goes between cells and
    ``start``/``end`` around the row. A row is :meth:`head` + :meth:`middle` +
    :meth:`tail`: the level's cells, the item's flow and asset, then the rest.
    """

    def __init__(self, cell: Callable[[object], str], card: Callable[[object, object], str],
                 status: Callable[[object, object], str], *, sep: str, start: str,
                 end: str) -> None:
        self._cell, self._card, self._sep, self._start, self._end = cell, card, sep, start, end

        def head(priority: str, go_live: bool, milestone: str, owner: str) -> str:
            return start + sep.join(cell(v) for v in (priority, "Yes" if go_live else "No",
                                                      milestone, owner)) + sep

        def middle(flows: str, asset: str) -> str:
            return cell(flows) + sep + cell(asset) + sep

        def task_cells(capability: str, level: int, criteria: str, why: str) -> str:
            task, description = level_text(capability, level, criteria, why)
            return cell(task) + sep + cell(description) + sep

        def status_cells(work_status: str, state: str, category: str) -> str:
            return sep + status(*status_text(work_status, state)) + sep + cell(category) + end

        self.head = lru_cache(maxsize=4096)(head)
        self.middle = lru_cache(maxsize=8192)(middle)
        self._task_cells = lru_cache(maxsize=16384)(task_cells)
        self._status_cells = lru_cache(maxsize=1024)(status_cells)

    def tail(self, capability: str, level: int, criteria: str, why: str, rally_id: str,
             rally_url: str, work_status: str, state: str, category: str) -> str:
        """The row from its Task on: Task, Description, Rally Card, Status, Category."""
        # The card is the one part unique to an item (once it has a story): never cached.
        return (self._task_cells(capability, level, criteria, why)
                + self._card(rally_id, rally_url)
                + self._status_cells(work_status, state, category))

    def row(self, it: Mapping) -> str:
        """The row of item dict ``it``."""
        return (self.head(it["priority"], bool(it["go_live"]), it["milestone"], it["owner"])
                + self.middle(it.get("flows", ""), it["asset"])
                + self.tail(*tail_key(it)))


def tail_key(it: Mapping) -> tuple:
    """What :meth:`TodoRowFormat.tail` takes of item dict ``it``, in its order."""
    return (it["capability"], it["level"], it["criteria"], it.get("why") or "",
            it.get("rally_id") or "", it.get("rally_url") or "", it["work_status"],
            it["state"], it["category"])


# What TwinRows reads of an item dict, each in one step: the level's cells, where, the rest.
_HEAD_KEY = itemgetter("priority", "go_live", "milestone", "owner")
_MIDDLE_KEY = itemgetter("flows", "asset")
_TAIL_KEY = itemgetter("capability", "level", "criteria", "why", "rally_id", "rally_url",
                       "work_status", "state", "category")


class TwinRows:
    """An item's to-do row in two formats at once (a paste dialect's and the storage
    format's, say), encoded as UTF-8 (files are written from them as they are, and a part of
    the list is measured in bytes): each recurring part of a row (the level's, the asset's,
    the rest of a row without a story) is looked up once for both formats and encoded once.
    One per run: its memory grows with the distinct parts."""

    def __init__(self, first: TodoRowFormat, second: TodoRowFormat) -> None:
        self._formats = (first, second)
        self._heads: dict[tuple, tuple[bytes, bytes]] = {}
        self._middles: dict[tuple, tuple[bytes, bytes]] = {}
        self._tails: dict[tuple, tuple[bytes, bytes]] = {}

    def _head(self, key: tuple) -> tuple[bytes, bytes]:
        priority, go_live, milestone, owner = key
        made = self._heads[key] = self._both("head", priority, bool(go_live), milestone, owner)
        return made

    def _middle(self, key: tuple) -> tuple[bytes, bytes]:
        made = self._middles[key] = self._both("middle", *key)
        return made

    def _tail(self, key: tuple) -> tuple[bytes, bytes]:
        capability, level, criteria, why, rally_id, rally_url, work_status, state, category = key
        made = self._both("tail", capability, level, criteria, why or "", rally_id or "",
                          rally_url or "", work_status, state, category)
        if not (rally_id or rally_url):  # a story's card is its own: not kept
            self._tails[key] = made
        return made

    def _both(self, part: str, *args: Any) -> tuple[bytes, bytes]:
        first, second = (getattr(f, part)(*args).encode() for f in self._formats)
        return first, second

    def __call__(self, it: Mapping) -> tuple[bytes, bytes]:
        """``(first.row(it), second.row(it))``, each encoded as UTF-8."""
        try:
            level, where, rest = _HEAD_KEY(it), _MIDDLE_KEY(it), _TAIL_KEY(it)
        except KeyError:  # an optional field missing: the keys as TodoRowFormat.row reads it
            level = (it["priority"], bool(it["go_live"]), it["milestone"], it["owner"])
            where, rest = (it.get("flows", ""), it["asset"]), tail_key(it)
        head = self._heads.get(level) or self._head(level)
        middle = self._middles.get(where) or self._middle(where)
        tail = self._tails.get(rest) or self._tail(rest)
        return head[0] + middle[0] + tail[0], head[1] + middle[1] + tail[1]


WIKI_ROWS = TodoRowFormat(_plain_wiki_cell, _card_wiki_cell, _status_wiki_cell, sep="|",
                          start="|", end="|")


def wiki_todo_row(it: Mapping) -> str:
    """``wiki_row(todo_row(it))``, from the parts :class:`TodoRowFormat` makes once."""
    return WIKI_ROWS.row(it)


def wiki_page(rows: Sequence[Mapping[str, str]], title: str, generated: str) -> str:
    """confluence_page.txt: heading, a one-line note and the table."""
    return wiki_page_head(title, generated, len(rows)) + wiki_table(rows)


def wiki_page_head(title: str, generated: str, count: int) -> str:
    """confluence_page.txt up to the table: the heading and a one-line note."""
    return wiki_head(wiki_escape, title, todo_note(generated, count))


def wiki_head(inline: Callable[[object], str], title: str, note: str) -> str:
    """A paste file up to its table: an ``h2.`` heading and an italic note line, each text
    written by ``inline`` (the dialect's escaping)."""
    return f"h2. {inline(title)}\n\n_{inline(note)}_\n\n"


def todo_note(generated: str, count: int) -> str:
    """The to-do paste file's note line."""
    return f"Generated by sre-tracker on {generated}: {counted(count, 'item')}."


# ---------------------------------------------------------------------------- matrix output
def abbreviations(categories: Sequence[str]) -> dict[str, str]:
    """Short unique column labels for categories (``Monitoring & Observability`` -> ``MO``)."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for cat in categories:
        words = [w for w in re.split(r"[\s&/,-]+", cat) if w and w.lower() not in {"and", "of"}]
        base = "".join(w[0] for w in words).upper()[:4] or cat[:3].upper()
        if len(base) == 1:
            base = cat[:3].upper()
        label, n = base, 2
        while label in used:
            label, n = f"{base}{n}", n + 1
        used.add(label)
        out[cat] = label
    return out


_RAG_RANK = {None: -1, mt.GREEN: 0, mt.AMBER: 1, mt.RED: 2}


def text_width(text: str) -> int:
    """The columns a terminal gives ``text``: East Asian wide and fullwidth characters (CJK)
    take two, combining marks none, everything else one."""
    if text.isascii():
        return len(text)
    import unicodedata

    return sum(0 if unicodedata.combining(c) else
               2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def pad(text: str, width: int) -> str:
    """``text`` padded with spaces to ``width`` terminal columns (:func:`text_width`)."""
    return text + " " * (width - text_width(text))


def status_table(assets: Mapping[str, tuple[int, Sequence[str], Mapping[str, Sequence]]],
                 flows: Mapping[str, Mapping[str, Sequence]], summary: Mapping,
                 colour: bool, marks: Mapping[tuple[str, str], str] | None = None) -> str:
    """The matrix in the terminal: assets x categories, flow weakest-link rows, counts.

    ``assets`` and ``flows`` are the numbers of :func:`maturity.category_grid`; ``marks`` the
    evidence mark of an (asset, category) whose capabilities checks answer
    (:data:`evidence.MARKS`), explained in the legend when any shows. Names are shown visible
    (:func:`visible`); names that then look alike share a row or a column.
    """
    from sre_maturity.rules import evidence as ev

    marks = marks or {}
    marked: dict[tuple[str, str], str] = {}  # (asset, category) as shown -> mark
    shown: dict[str, str] = {}  # category -> as shown

    def show(category: str) -> str:
        label = shown.get(category)
        if label is None:
            label = shown[category] = visible(category)
        return label

    # Per asset as shown: target and, per category as shown, [capabilities, assessed, not
    # applicable, lowest level, worst RAG].
    rows: dict[str, tuple[int, dict[str, list]]] = {}
    for asset, (target, _flows, cats) in assets.items():
        row = rows.setdefault(visible(asset), (target, {}))[1]
        for category, (size, assessed, na, low, rag) in cats.items():
            acc = row.setdefault(show(category), [0, 0, 0, None, None])
            if (asset, category) in marks:
                spot = (visible(asset), show(category))
                marked[spot] = ev.strongest((marked.get(spot, ""), marks[asset, category]))
            acc[0] += size
            acc[1] += assessed
            acc[2] += na
            if low is not None and (acc[3] is None or low < acc[3]):
                acc[3] = low
            if _RAG_RANK[rag] > _RAG_RANK[acc[4]]:
                acc[4] = rag
    flow_rows: dict[str, dict[str, list]] = {}
    for flow, cats in flows.items():
        row = flow_rows.setdefault(visible(flow), {})
        for category, (low, rag, not_assessed) in cats.items():
            acc = row.setdefault(show(category), [None, None, False])
            if low is not None and (acc[0] is None or low < acc[0]):
                acc[0] = low
            if _RAG_RANK[rag] > _RAG_RANK[acc[1]]:
                acc[1] = rag
            acc[2] = acc[2] or not_assessed
    categories = list(dict.fromkeys(label for _target, row in rows.values() for label in row))
    abbr = abbreviations(categories)

    def paint(text: str, rag: str | None, width: int) -> str:
        padded = pad(text, width)
        if colour and rag in _ANSI:
            return f"{_ANSI[rag]}{padded}{_RESET}"
        if colour and text in ("-", "n/a"):
            return f"{_ANSI['dim']}{padded}{_RESET}"
        return padded

    names = list(rows) + [f"[{f}]" for f in flow_rows]
    width = max([text_width(n) for n in names] + [len("asset")]) + 2
    col = max(5, *(text_width(a) + 1 for a in abbr.values()))
    out = [("asset".ljust(width) + "target ".ljust(8)
            + "".join(pad(a, col) for a in abbr.values())).rstrip()]
    for asset, (target, row) in rows.items():
        line = pad(asset, width) + str(target).ljust(8)
        for cat in categories:
            size, assessed, na, low, rag = row.get(cat) or (0, 0, 0, None, None)
            if not assessed or low is None:
                text, rag = ("n/a" if size and na == size else "-"), None
            else:
                text = f"{low}{(rag or ' ')[0]}{'*' if assessed + na < size else ''}"
            text += marked.get((asset, cat), "")
            line += paint(text, rag, col)
        out.append(line.rstrip())
    if flow_rows:
        out.append("")
        out.append("flow (weakest link)")
        for flow, row in flow_rows.items():
            line = pad(f"[{flow}]", width) + "".ljust(8)
            for cat in categories:
                low, rag, not_assessed = row.get(cat) or (None, None, False)
                rag = mt.flow_rag_shown(rag, not_assessed)
                text = (f"{low}{rag[0] if rag else ''}{'*' if not_assessed else ''}"
                        if low is not None else "-")
                line += paint(text, rag, col)
            out.append(line.rstrip())
    out.append("")
    out.append("legend: level 0-5 + R/A/G (Red: go-live gap, Amber: below target, Green: on "
               "target); '-' not assessed; '*' some capabilities not assessed (a flow's "
               "cell with '*' is never Green)")
    used = set(marked.values())
    if used:
        out.append("        " + "; ".join(f"'{m}' {text}" for m, text in ev.MARKS.items()
                                          if m in used))
    out.append("        " + ", ".join(f"{a} = {c}" for c, a in abbr.items()))
    out.append("")
    out.extend(summary_lines(summary))
    return "\n".join(out) + "\n"


def asset_detail(matrix: Sequence[Mapping], colour: bool,
                 shown: Mapping[tuple[str, str], Any] | None = None) -> str:
    """One line per capability of a single asset: level, target, RAG and why; with ``shown``
    (:class:`views.Shown` by asset and capability) what a level checks answer rests on, on a
    second line: the mark, the checks' counts and each failed check with what it saw."""
    from sre_maturity.rules import evidence as ev

    shown = shown or {}
    raw = [(e["asset"], e["capability"]) for e in matrix]
    matrix = _visible_entries(matrix, _SHOWN_FIELDS)
    out = []
    used: set[str] = set()
    width = max((text_width(e["capability"]) for e in matrix), default=10) + 2
    cat_width = max((text_width(e["category"]) for e in matrix), default=10) + 2
    for key, e in zip(raw, matrix, strict=True):
        if e["state"] == mt.ASSESSED:
            text = f"L{e['level']} (target {e['target_level']}, go-live {e['go_live_level']})"
            rag = e["rag"]
            tail = f"  {rag}, {e['open_items']} open" + (
                f" — answered no: {e['why']}" if e.get("why") else "")
        elif e["state"] == mt.NOT_APPLICABLE:
            text, rag, tail = "n/a", None, f"  {e['not_applicable_reason']}"
        else:
            text, rag, tail = "not assessed", None, ""
        label = text.ljust(34)
        if colour and rag in _ANSI:
            label = f"{_ANSI[rag]}{label}{_RESET}"
        out.append(f"{pad(e['category'], cat_width)}{pad(e['capability'], width)}{label}{tail}"
                   .rstrip())
        seen = shown.get(key)
        if seen is not None:
            used.add(seen.mark)
            out.append(" " * (cat_width + width) + evidence_line(seen))
    used.discard("")
    if used:
        out.append("")
        out.append("marks: " + "; ".join(f"'{m}' {text}" for m, text in ev.MARKS.items()
                                         if m in used))
    return "\n".join(out) + "\n"


def evidence_line(seen: Any) -> str:
    """What a cell's level rests on in words: ``+ checks: 2 pass, 1 fail, ...; failed: NAME
    (what it saw)`` (``seen`` a :class:`views.Shown`)."""
    s = seen.summary
    counts = ", ".join(f"{s[k]} {k}" for k in ("pass", "fail", "unknown") if s[k])
    parts = [f"{seen.mark + ' ' if seen.mark else ''}checks: {counts or 'none'}"]
    if s["overrides"]:
        parts.append(counted(int(s["overrides"]), "override"))
    if s["conflict"]:
        parts.append("the evidence disagrees with the person's answer")
    parts += [f"{name} says no: {visible(detail) or 'no detail'}" for name, detail in seen.failed]
    return "; ".join(parts)


def summarise(matrix: Sequence[Mapping], items: Iterable[Mapping]) -> dict:
    """Counts for the summary: cells by state, open items by RAG and owner."""
    states = Counter(e["state"] for e in matrix)
    todo = [it for it in items if mt.is_open(str(it["state"]))]
    return {
        "assets": len({e["asset"] for e in matrix}),
        "capabilities": len({e["capability"] for e in matrix}),
        "assessed": states.get(mt.ASSESSED, 0),
        "not_assessed": states.get(mt.NOT_ASSESSED, 0),
        "not_applicable": states.get(mt.NOT_APPLICABLE, 0),
        "open_items": len(todo),
        "open_red": sum(1 for it in todo if it["go_live"]),
        "open_amber": sum(1 for it in todo if not it["go_live"]),
        "awaiting_reassessment": sum(1 for it in todo if it["state"] == mt.DONE),
        "by_owner": dict(sorted(Counter(str(it["owner"]) for it in todo).items())),
    }


def counted(n: int, one: str, many: str | None = None) -> str:
    """``1 asset``, ``2 assets``; ``many`` for irregular plurals (``capabilities``)."""
    return f"{n} {one if n == 1 else many or one + 's'}"


def gate_reasons(gate: mt.Gate) -> str:
    """What keeps a go-live gate closed, in words (``gate`` and sre_matrix.html say it so):
    ``7 open go-live items and 40 go-live capabilities not assessed``; empty when open."""
    reasons = []
    if gate.blocking:
        reasons.append(counted(len(gate.blocking), "open go-live item", "open go-live items"))
    if gate.unassessed:
        reasons.append(counted(len(gate.unassessed), "go-live capability",
                               "go-live capabilities") + " not assessed")
    return " and ".join(reasons)


def summary_lines(s: Mapping) -> list[str]:
    owners = ", ".join(f"{k} {v}" for k, v in s["by_owner"].items()) or "none"
    return [
        f"{counted(s['assets'], 'asset')} x "
        f"{counted(s['capabilities'], 'capability', 'capabilities')}: {s['assessed']} assessed, "
        f"{s['not_applicable']} not applicable, {s['not_assessed']} still to assess",
        f"open items: {s['open_items']} ({s['open_red']} Red, {s['open_amber']} Amber; "
        f"{s['awaiting_reassessment']} awaiting re-assessment) — by owner: {owners}",
    ]


def matrix_csv(matrix: Sequence[Mapping]) -> str:
    """The matrix entries as CSV text (flows joined with ', ').

    Written with the csv module: it runs on every commit, and importing pandas would cost
    more than writing the file.
    """
    buf = io.StringIO(newline="")
    write_matrix_csv(buf, matrix)
    return buf.getvalue()


def matrix_frame_csv(frame: pd.DataFrame) -> str:
    """The matrix frame (:func:`views.matrix_frame`) as CSV text, byte for byte what
    :func:`matrix_csv` writes for the same matrix (``export`` goes through pandas; the files
    written on every commit keep the csv module)."""
    import pandas as pd

    out = frame.reset_index()[list(MATRIX_FRAME_COLUMNS)]
    for name in MATRIX_TEXT_COLUMNS:
        out[name] = out[name].map(lambda v: neutralise(v or ""))
    out.columns = pd.Index(MATRIX_COLUMNS)
    return out.to_csv(index=False, lineterminator="\n", na_rep="")


def matrix_writer(stream: TextIO):
    """A csv writer in the matrix file's dialect (``\\n`` line ends, minimal quoting)."""
    return csv.writer(stream, lineterminator="\n")


def write_matrix_csv(stream: TextIO, matrix: Iterable[Mapping]) -> None:
    """The matrix entries as CSV, written to ``stream`` row by row."""
    writer = matrix_writer(stream)
    writer.writerow(MATRIX_COLUMNS)
    writer.writerows(matrix_row(e) for e in matrix)


MATRIX_COLUMNS = [
    "Asset Name", "Flows", "Team", "Category", "Capability", "State", "Level", "Target Level",
    "Go Live Level", "RAG", "Open Items", "Assessed By", "Assessed At", "Not Applicable Reason",
    "Not Applicable Until",
]


# The matrix frame's columns in MATRIX_COLUMNS order, and those holding free text.
MATRIX_FRAME_COLUMNS = mt.MATRIX_FIELDS[:-1]  # all but the last, ``why``
MATRIX_TEXT_COLUMNS = ("asset", "flows", "team", "category", "capability", "assessed_by",
                       "not_applicable_reason")  # neutralised: a cell may not start a formula


def matrix_row(e: Mapping) -> list:
    """One matrix entry as a CSV row in :data:`MATRIX_COLUMNS` order (text cells neutralised)."""
    return [
        neutralise(e["asset"]), neutralise(", ".join(e["flows"])), neutralise(e.get("team") or ""),
        neutralise(e["category"]), neutralise(e["capability"]), e["state"],
        "" if e["level"] is None else e["level"], e["target_level"], e["go_live_level"],
        e["rag"] or "", e["open_items"], neutralise(e["assessed_by"] or ""),
        e["assessed_at"] or "", neutralise(e["not_applicable_reason"] or ""),
        e.get("not_applicable_until") or "",
    ]


class _Fields(dict):
    """Values -> their text as a field of the matrix file's CSV (``_neutral``: after
    :func:`neutralise`), each made once by the csv module itself: names, states and dates
    recur on every row."""

    def __init__(self, neutral: bool) -> None:
        super().__init__({None: "", "": ""})
        self._neutral = neutral
        self._buf = io.StringIO(newline="")
        self._writer = matrix_writer(self._buf)

    def __missing__(self, value: object) -> str:
        self._buf.seek(0)
        self._buf.truncate()
        self._writer.writerow([neutralise(value) if self._neutral else value])  # type: ignore[arg-type]
        text = self[value] = self._buf.getvalue()[:-1]  # less the line end
        return text


def write_matrix_rows_csv(stream: TextIO, rows: Iterable[Sequence]) -> None:
    """As :func:`write_matrix_csv`, from matrix rows (tuples of :data:`maturity.MATRIX_FIELDS`
    values): what :func:`matrix_row` makes of each as an entry, a block of rows at a time."""
    matrix_writer(stream).writerow(MATRIX_COLUMNS)
    text, plain = _Fields(neutral=True), _Fields(neutral=False)
    asset: object = _NOTHING
    flows_of: object = _NOTHING
    head = ""
    block: list[str] = []
    for (name, flow_names, team, category, capability, state, level, target, go_live, rag,
         n, by, at, reason, until, _why) in rows:
        if name is not asset or flow_names is not flows_of:  # the next asset's entries
            asset, flows_of = name, flow_names
            head = f"{text[name]},{text[', '.join(flow_names)]},{text[team]},"
        block.append(f"{head}{text[category]},{text[capability]},{plain[state]},{plain[level]},"
                     f"{plain[target]},{plain[go_live]},{plain[rag]},{plain[n]},{text[by]},"
                     f"{plain[at]},{text[reason]},{plain[until]}\n")
        if len(block) == 2000:
            stream.write("".join(block))
            block = []
    stream.write("".join(block))


def write_status_json(stream: TextIO, rows: Iterable[Sequence], flows: Iterable[Mapping],
                      summary: Mapping, evidence: Mapping[tuple[str, str], Mapping] | None = None
                      ) -> None:
    """``{"matrix": [...], "flows": [...], "summary": {...}}``, one entry per line, written to
    ``stream`` a block of entries at a time; ``rows`` are matrix rows (tuples of
    :data:`maturity.MATRIX_FIELDS` values), each shown as the object of its fields but
    ``why``, with ``evidence``: the cell's entry of ``evidence`` (SPEC §12), null when no
    check applies to it.

    The text is what ``json.JSONEncoder(ensure_ascii=False)`` makes of each entry as a dict
    (``json.dumps(indent=...)`` would fall back to the pure-Python encoder, ten times
    slower). An entry is put together from its values' encodings, each value encoded once:
    the same names, states and dates recur on every line, and encoding a dict per entry costs
    several times more.
    """
    encode = json.JSONEncoder(ensure_ascii=False).encode
    known: dict = {None: "null"}  # value -> its JSON text
    old = known.get

    def enc(value: object) -> str:
        text = known[value] = encode(value)
        return text

    stream.write('{\n  "matrix": [\n    ')
    block: list[str] = []
    between = ""  # what goes before the next block
    asset: object = _NOTHING
    flows_of: object = _NOTHING
    head = ""
    for (name, flow_names, team, category, capability, state, level, target, go_live, rag,
         n, by, at, reason, until, _why) in rows:
        if name is not asset or flow_names is not flows_of:  # the next asset's entries
            asset, flows_of = name, flow_names
            head = (f'{{"asset": {encode(name)}, "flows": {encode(flow_names)}, '
                    f'"team": {encode(team)}, "category": ')
        # A look-up per value (its text is never empty); encoded only when new.
        block.append(
            f'{head}{old(category) or enc(category)}, "capability": '
            f'{old(capability) or enc(capability)}, "state": {old(state) or enc(state)}, '
            f'"level": {old(level) or enc(level)}, "target_level": {old(target) or enc(target)}, '
            f'"go_live_level": {old(go_live) or enc(go_live)}, "rag": {old(rag) or enc(rag)}, '
            f'"open_items": {old(n) or enc(n)}, "assessed_by": {old(by) or enc(by)}, '
            f'"assessed_at": {old(at) or enc(at)}, "not_applicable_reason": '
            f'{old(reason) or enc(reason)}, "not_applicable_until": {old(until) or enc(until)}'
            f'{", " + _evidence_json(evidence, name, capability) if evidence else _NO_EVIDENCE}}}')
        if len(block) == 2000:
            stream.write(between + ",\n    ".join(block))
            block, between = [], ",\n    "
    if block:
        stream.write(between + ",\n    ".join(block))
    stream.write('\n  ],\n  "flows": [\n    ')
    stream.write(",\n    ".join(encode(dict(f)) for f in flows))
    stream.write(f'\n  ],\n  "summary": {json.dumps(dict(summary), ensure_ascii=False)}\n}}\n')


_NOTHING = object()  # a value no entry holds
_NO_EVIDENCE = ', "evidence": null'


def _evidence_json(evidence: Mapping[tuple[str, str], Mapping], asset: str, capability: str
                   ) -> str:
    found = evidence.get((asset, capability))
    return '"evidence": ' + ("null" if found is None else json.dumps(dict(found)))


def items_csv(items: Iterable[Mapping], chunk: int = 10_000) -> Iterator[tuple[str, int]]:
    """Every item (open, done, verified, archived) as CSV, for ``export --items``: the text
    in pieces of ``chunk`` items (the header first), each with its item count, so 200,000
    items are never all held as rows and frames at once."""
    import pandas as pd

    columns = list(ITEM_COLUMNS)
    first = True
    for part in _batched(items, chunk):
        frame = pd.DataFrame([{c: it.get(c, "") for c in columns} for it in part],
                             columns=columns)
        frame["go_live"] = frame["go_live"].map(lambda v: "Yes" if v else "No")
        for col in frame.columns:
            if frame[col].dtype == object:
                frame[col] = frame[col].map(lambda v: neutralise(clean_text(v)))
        # Headers in Title Case, as sre_matrix.csv, export and the to-do table name them.
        yield frame.rename(columns=ITEM_COLUMNS).to_csv(index=False, header=first,
                                                        lineterminator="\n"), len(part)
        first = False
    if first:  # no item at all: the header alone
        yield ",".join(ITEM_COLUMNS.values()) + "\n", 0


def _batched(items: Iterable[Mapping], size: int) -> Iterator[list[Mapping]]:
    batch: list[Mapping] = []
    for it in items:
        batch.append(it)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# ``export --items``: the item fields and their headers.
ITEM_COLUMNS = {
    "key": "Item Key", "flows": "Flows", "asset": "Asset Name", "category": "Category",
    "capability": "Capability", "level": "Level", "priority": "Priority",
    "go_live": "Required for Go Live", "owner": "Owner", "milestone": "Target Milestone",
    "criteria": "Criteria", "why": "Why", "state": "State", "work_status": "Work Status",
    "rally_id": "Rally ID", "rally_url": "Rally URL", "opened_at": "Opened At",
    "done_at": "Done At", "closed_at": "Closed At",
}


# ---------------------------------------------------------------------------- cycle time
def _days(start: str, end: str) -> float | None:
    from datetime import datetime

    try:
        a = datetime.fromisoformat(start)
        b = datetime.fromisoformat(end)
    except ValueError:
        return None
    if a.tzinfo is None or b.tzinfo is None:
        a, b = a.replace(tzinfo=None), b.replace(tzinfo=None)
    return max((b - a).total_seconds() / 86400, 0.0)


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    index = max(0, int(round(0.9 * len(ordered) + 0.5)) - 1)
    return ordered[min(index, len(ordered) - 1)]


def cycle_times(items: Iterable[Mapping], teams: Mapping[str, str]) -> list[dict]:
    """Median and 90th percentile (nearest rank) days from opening to story completion and to
    verification, grouped by flow, team and category, in group order.

    A pandas frame with one row per item and group it counts in; ``report --cycle-time`` is
    the only caller, off the hot paths.
    """
    import pandas as pd

    records = []
    for it in items:
        done = _days(it["opened_at"], it["done_at"]) if it.get("done_at") else None
        verified = (_days(it["opened_at"], it["closed_at"])
                    if it["state"] == mt.VERIFIED and it.get("closed_at") else None)
        if done is None and verified is None:
            continue
        keys = [("flow", f) for f in str(it.get("flows", "")).split(", ") if f]
        keys += [("team", teams.get(it["asset"], "") or "(no team)"), ("category", it["category"])]
        records += [(kind, name, done, verified) for kind, name in keys]
    if not records:
        return []
    frame = pd.DataFrame.from_records(records, columns=["by", "group", "done", "verified"])
    out = []
    for (kind, name), group in frame.groupby(["by", "group"], sort=True):
        row: dict = {"by": kind, "group": name}
        for label, column in (("to_completion", "done"), ("to_verification", "verified")):
            values = group[column].dropna().astype(float)
            row[f"{label}_n"] = int(values.size)
            row[f"{label}_median_days"] = round(float(values.median()), 1) if values.size else None
            row[f"{label}_p90_days"] = round(_p90(values.tolist()), 1) if values.size else None
        out.append(row)
    return out


def cycle_table(rows: Sequence[Mapping]) -> str:
    if not rows:
        return "no item has reached story completion or verification yet\n"
    # Group names whole (a category such as "Change Management & Release Safety" is not cut).
    group = max([text_width(str(r["group"])) for r in rows] + [len("group")]) + 2
    head = f"{'by':<9}{pad('group', group)}{'completed':>10}{'median':>8}{'p90':>7}" \
           f"{'verified':>10}{'median':>8}{'p90':>7}"
    lines = [head, "-" * len(head)]

    def fmt(v: object) -> str:
        return "-" if v is None else f"{v}"

    for r in rows:
        lines.append(
            f"{r['by']:<9}{pad(str(r['group']), group)}{r['to_completion_n']:>10}"
            f"{fmt(r['to_completion_median_days']):>8}{fmt(r['to_completion_p90_days']):>7}"
            f"{r['to_verification_n']:>10}{fmt(r['to_verification_median_days']):>8}"
            f"{fmt(r['to_verification_p90_days']):>7}"
        )
    lines.append("(days from the item opening to its story's completion / to its verification)")
    return "\n".join(lines) + "\n"

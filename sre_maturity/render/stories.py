"""Rally user stories for action items: their text (name, description, the Notes that carry
the item key), finding the key again in what Rally returns, and recording a story on its item.

The ``sre-tracker item: <key>`` line in Notes is how the tool recognises its own stories, even
after someone edited them in Rally's rich-text editor.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sre_maturity.render.reports import clean_text, neutralise, sort_key
from sre_maturity.rules import maturity as mt
from sre_maturity.store.csvfiles import csv_cell, csv_record

if TYPE_CHECKING:
    from config import Settings
    from database import Database

# Display-name headers of Rally's user-story import template (reference/rally.md §8).
RALLY_IMPORT_COLUMNS = ["Name", "Description", "Schedule State", "Tags", "Notes"]
# The fields read back from Rally when matching stories to items.
STORY_FIELDS = ["ObjectID", "FormattedID", "Name", "ScheduleState", "Notes"]
NAME_LIMIT = 256
KEY_MARKER = "sre-tracker item:"
# Rally's editor may turn the marker's space into &nbsp;.
_KEY_RE = re.compile(re.escape(KEY_MARKER).replace(r"\ ", "[ \xa0]")
                     + r"[ \t\xa0]*(.+?)[ \t]*(?:$|\n)", re.IGNORECASE | re.M)
_BLOCK_TAGS = ("p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote")


# ---------------------------------------------------------------------------- story text
def story_name(asset: str, capability: str, level: int, *, ascii_only: bool = False) -> str:
    """``[SRE] <asset> – <capability> L<level>``, shortened to Rally's 256 characters.

    ``ascii_only`` (``rally_import.csv``): the tool's own characters are ASCII, `` - `` and
    ``...``: which encodings Rally's CSV import reads is not documented (reference/rally.md
    §8), and Excel opens a UTF-8 file without a BOM as Windows-1252, turning ``–`` into
    ``â€“`` when it saves the file again. Names from the data are kept as they are.
    """
    dash, more = (" - ", "...") if ascii_only else (" – ", "…")
    name = f"[SRE] {asset}{dash}{capability} L{level}"
    if len(name) <= NAME_LIMIT:
        return name
    fixed = len(f"[SRE] {dash} L{level}")
    room = NAME_LIMIT - fixed
    a_room = min(len(asset), max(room // 2, room - len(capability)))
    a = asset if len(asset) <= a_room else asset[: a_room - len(more)] + more
    c_room = room - len(a)
    c = capability if len(capability) <= c_room else capability[: c_room - len(more)] + more
    return f"[SRE] {a}{dash}{c} L{level}"


def story_notes(key: str) -> str:
    """The Notes (Rally rich text) carrying the item key, so the tool always finds its story."""
    return html.escape(f"{KEY_MARKER} {key}", quote=False)


def reopened_notes(notes: str | None, who: str, when: str, level: int | None,
                   item_level: int) -> str:
    """The story's Notes with one line appended saying who found the level lower, when, and
    which level they found (Rally rich text: the line is escaped, after a line break)."""
    found = f"L{level}" if level is not None else "not assessed"
    line = (f"Reopened by sre-tracker: {who or 'unknown'} re-assessed on {when[:10]} and found "
            f"{found}, below L{item_level}; moved back to Defined.")
    notes = (notes or "").rstrip()
    return (notes + "<br />" if notes else "") + html.escape(line, quote=False)


def key_from_text(text: str | None) -> str | None:
    """The item key found in a story's Notes (or Name), tolerating Rally's HTML.

    Rally's editor wraps what the tool wrote (``<p>``, ``<div>``, ``<span style>``, ``<br>``) and
    escapes it (``&amp;``, ``&nbsp;``); beautifulsoup4 reads the visible text, one line per
    block, whatever the markup. Plain text (no tag) skips the parser.
    """
    if not text:
        return None
    if "<" in text:
        from bs4 import BeautifulSoup

        soup = BeautifulSoup(text, "html.parser")
        # Blocks and <br> end a line; inline tags (<b>, <span>) split nothing.
        for tag in soup.find_all(["br", *_BLOCK_TAGS]):
            if tag.name == "br":
                tag.replace_with("\n")
            else:
                tag.append("\n")
        plain = soup.get_text()
    else:
        plain = html.unescape(text)
    match = _KEY_RE.search(plain)
    return match.group(1).strip() if match else None


def story_description(item: Mapping, flows: str) -> str:
    """The story's Description (Rally rich text): criteria, flow, asset, level and why.

    Every line is cleaned (:func:`reports.clean_text`) and escaped, so the whole is clean."""
    goal, where, state = _description_args(item, flows)
    return "<br />".join((_goal_lines(*goal), _where_lines(*where), _state_text(*state)))


def _description_args(item: Mapping, flows: str) -> tuple[tuple, tuple, tuple]:
    """What each of the Description's three parts is made from: the level's, the asset's
    and the state's (each recurs on many items)."""
    current = item.get("current_level")
    return ((item["capability"], item["level"], item["criteria"]), (flows, item["asset"]),
            ("" if current is None else str(current), str(item["why"]), item["level"],
             item["criteria"], bool(item["go_live"]), item["milestone"] or "-"))


@lru_cache(maxsize=16384)
def _state_text(current: str, why: str, level: int, criteria: str, go_live: bool,
                milestone: str) -> str:
    return _state_lines(current, mt.reason_beside_criteria(why, level, criteria), go_live,
                        milestone)


def _csv_part(text: str) -> tuple[bool, str]:
    """Whether a cell holding ``text`` is quoted in CSV, and ``text`` with its quotes
    doubled: a Description's parts are made ready for CSV once (the quotes of a cell are
    doubled character by character, and the separator between the parts needs none)."""
    return csv_cell(text) != text, text.replace('"', '""')


@lru_cache(maxsize=4096)
def _goal_lines(capability: str, level: int, criteria: str) -> str:
    return _description_lines(("Goal", f"{capability} at level {level}"),
                              ("Criteria", str(criteria)))


@lru_cache(maxsize=4096)
def _where_lines(flows: str, asset: str) -> str:
    return _description_lines(("Flow", flows), ("Asset", asset))


@lru_cache(maxsize=16384)
def _state_lines(current: str, why: str, go_live: bool, milestone: str) -> str:
    return _description_lines(("Current level", current), ("Why", why),
                              ("Required for go live", "Yes" if go_live else "No"),
                              ("Target milestone", str(milestone)))


def _description_lines(*lines: tuple[str, str]) -> str:
    return "<br />".join(f"<b>{html.escape(label)}:</b> {html.escape(clean_text(value))}"
                         for label, value in lines)


# A Description's parts made ready for CSV, each once.
@lru_cache(maxsize=4096)
def _goal_csv(*args: Any) -> tuple[bool, str]:
    return _csv_part(_goal_lines(*args))


@lru_cache(maxsize=4096)
def _where_csv(*args: Any) -> tuple[bool, str]:
    return _csv_part(_where_lines(*args))


@lru_cache(maxsize=16384)
def _state_csv(*args: Any) -> tuple[bool, str]:
    return _csv_part(_state_text(*args))


def select_for_rally(items: Iterable[Mapping], include_amber: bool) -> list[Mapping]:
    """Open items with no Rally story: Red ones, plus Amber ones when asked."""
    return sorted((it for it in items if wants_story(it, include_amber)), key=sort_key)


def wants_story(it: Mapping, include_amber: bool) -> bool:
    """An open item with no Rally story: a Red one, or an Amber one when asked."""
    return it["state"] == mt.OPEN and not it.get("rally_oid") and bool(
        it["go_live"] or include_amber)


def rally_import_csv(items: Sequence[Mapping], tag: str) -> str:
    """rally_import.csv: one row per item, Rally's import-template headers."""
    return rally_import_header() + "".join(rally_import_record(it, tag) for it in items)


def rally_import_header() -> str:
    """The header line of rally_import.csv (CRLF-terminated, as Rally's template has it)."""
    return csv_record(RALLY_IMPORT_COLUMNS)


def rally_import_record(it: Mapping, tag: str) -> str:
    """One item as a line of rally_import.csv: ``csv_record(rally_import_row(it, tag))``, the
    Description from its recurring parts made ready for CSV once."""
    goal, where, state = _description_args(it, it.get("flows", ""))
    parts = (_goal_csv(*goal), _where_csv(*where), _state_csv(*state))
    quote = '"' if parts[0][0] or parts[1][0] or parts[2][0] else ""
    return (csv_cell(_import_name(it)) + "," + quote + parts[0][1] + "<br />" + parts[1][1]
            + "<br />" + parts[2][1] + quote + _fixed_cells(tag)
            + csv_cell(_import_notes(it)) + "\r\n")


def rally_import_row(it: Mapping, tag: str) -> list[str]:
    """One item as a row of rally_import.csv (cells cleaned and neutralised)."""
    return [
        _import_name(it),
        story_description(it, it.get("flows", "")),  # clean, and starts with a tag
        "Defined",
        _import_tag(tag),
        _import_notes(it),
    ]


def _import_name(it: Mapping) -> str:
    return neutralise(clean_text(story_name(it["asset"], it["capability"], it["level"],
                                            ascii_only=True)))


def _import_notes(it: Mapping) -> str:
    return neutralise(clean_text(story_notes(it["key"])))


@lru_cache(maxsize=64)
def _import_tag(tag: str) -> str:
    return neutralise(clean_text(tag))


@lru_cache(maxsize=64)
def _fixed_cells(tag: str) -> str:
    """The cells between a line's Description and its Notes, with their commas."""
    return f",{csv_cell('Defined')},{csv_cell(_import_tag(tag))},"


def story_payload(item: Mapping, settings: Settings, parent_ref: str, tag_ref: str) -> dict:
    """The WSAPI fields of a new story for ``item``, under the parent and with the tag."""
    return {
        "Name": story_name(item["asset"], item["capability"], item["level"]),
        "Description": story_description(item, item.get("flows", "")),
        "Notes": story_notes(item["key"]),
        "ScheduleState": "Defined",
        "PortfolioItem": parent_ref,
        "Project": f"/project/{settings.get('RALLY_PROJECT_ID')}",
        "Tags": [{"_ref": tag_ref}],
    }


# ---------------------------------------------------------------------------- stories back
def index_by_key(stories: list[dict]) -> dict[str, dict]:
    """Stories by the item key carried in their Notes (or Name)."""
    found: dict[str, dict] = {}
    for s in stories:
        key = key_from_text(s.get("Notes")) or key_from_text(s.get("Name"))
        # Several stories for one key (someone copied one): keep the oldest, stable choice.
        if key and (key not in found or _oid(s) < _oid(found[key])):
            found[key] = s
    return found


def _oid(story: dict) -> int:
    try:
        return int(story.get("ObjectID") or 0)
    except (TypeError, ValueError):
        return 0


def record_story(db: Database, settings: Settings, key: str, story: dict, now: str) -> None:
    """Store ``story`` (as Rally returned it) on the item ``key``: ids, link and state."""
    oid = str(story.get("ObjectID") or "")
    formatted = str(story.get("FormattedID") or "")
    url = story_url(settings, oid) if oid else search_url(settings, formatted)
    db.set_item_story(key, oid, formatted, url, story.get("ScheduleState") or "Defined", now)


def story_url(settings: Settings, oid: str) -> str:
    """The web page of the story with ObjectID ``oid`` in the configured project."""
    from sre_maturity.clients import rally
    return rally.story_url(settings.text("RALLY_BASE_URL"), settings.text("RALLY_PROJECT_ID"), oid)


def search_url(settings: Settings, formatted_id: str) -> str:
    """Link to a story known only by FormattedID (CSV path; reference/rally.md §7)."""
    return f"{settings.get('RALLY_BASE_URL')}/#/search?keywords={formatted_id}"

"""The wiki-markup files a person pastes (``confluence_page.txt``, ``confluence_rulebook.txt``),
each in the dialect of the Confluence it goes into.

Data Center's Insert → Markup converts with the server renderer (:func:`reports.wiki_escape`
writes for it); Cloud's editor converts with Atlassian's JavaScript transformer
(:mod:`cloud_wiki`). No one file shows the data exactly in both (Cloud decodes no character
reference and lets nothing protect a ``|`` in a cell, the server knows no ``{adf}``), so:

- the site is known (``CONFLUENCE_API`` is ``cloud``/``datacenter``, or ``CONFLUENCE_BASE_URL``
  is set and ``auto`` decides): ``<stem>.txt`` in that site's dialect;
- else both: ``<stem>.txt`` for Data Center / Server and ``<stem>.cloud.txt`` for Cloud.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sre_maturity.render import cloud_wiki, reports
from sre_maturity.support.errors import ConfigError

CLOUD_SUFFIX = ".cloud.txt"


@dataclass(frozen=True)
class Dialect:
    """How one site's converter is written for."""

    site: str  # "datacenter" or "cloud" (CONFLUENCE_API's words)
    label: str  # for people: where the file goes
    cell: Callable[[object], str]  # one table cell showing exactly the text
    inline: Callable[[object], str]  # the text of a heading or the note line
    rows: reports.TodoRowFormat  # how an item's to-do row is written

    def todo_row(self, it: Mapping) -> str:
        """An item's to-do row."""
        return self.rows.row(it)

    def head(self, title: str, note: str) -> str:
        """A heading and an italic note line, before the table."""
        return reports.wiki_head(self.inline, title, note)

    def table(self, columns: Sequence[str], rows: Sequence[Mapping[str, object]]) -> str:
        """A table of plain cells: the header row (the tool's own column names, which need no
        escaping) and one line per row."""
        lines = ["||" + "||".join(columns) + "||"]
        lines.extend("|" + "|".join(self.cell(row.get(c, "")) for c in columns) + "|"
                     for row in rows)
        return "\n".join(lines) + "\n"


DATACENTER = Dialect("datacenter", "Confluence Data Center / Server", reports.wiki_escape,
                     reports.wiki_escape, reports.WIKI_ROWS)
CLOUD = Dialect("cloud", "Confluence Cloud", cloud_wiki.cell, cloud_wiki.inline,
                cloud_wiki.ROWS)


def site(settings) -> str | None:
    """``cloud`` or ``datacenter`` when the settings say which Confluence is used, else None
    (a setting that is not valid says nothing: see :func:`unusable_setting`)."""
    try:
        api = (settings.get("CONFLUENCE_API") or "auto").strip().lower()
        if api in (CLOUD.site, DATACENTER.site):
            return api
        if api == "auto" and settings.get("CONFLUENCE_BASE_URL"):
            return str(settings.confluence_api)
    except ConfigError:
        pass
    return None


def unusable_setting(settings) -> str | None:
    """A notice when CONFLUENCE_API or CONFLUENCE_BASE_URL is set but not valid (the paste
    files are then written for both sites; only the commands that talk to Confluence fail on
    it), else None."""
    for name in ("CONFLUENCE_API", "CONFLUENCE_BASE_URL"):
        try:
            settings.get(name)
        except ConfigError as exc:
            return f"{exc}; the paste files are written for both sites meanwhile"
    return None


def files(settings, stem: str) -> list[tuple[str, Dialect]]:
    """The paste files for ``stem`` (``confluence_page``) and the dialect of each."""
    known = site(settings)
    if known == CLOUD.site:
        return [(stem + ".txt", CLOUD)]
    if known == DATACENTER.site:
        return [(stem + ".txt", DATACENTER)]
    return [(stem + ".txt", DATACENTER), (stem + CLOUD_SUFFIX, CLOUD)]


def remove_stale(out_dir: Path, stem: str, written: Sequence[tuple[str, Dialect]]) -> None:
    """Remove the Cloud file of an earlier run once the site is known: nobody should paste a
    table that is no longer kept current."""
    if all(name != stem + CLOUD_SUFFIX for name, _d in written):
        (out_dir / (stem + CLOUD_SUFFIX)).unlink(missing_ok=True)


def summary(written: Sequence[tuple[str, Dialect]], what: str) -> str:
    """One line saying which file goes where."""
    return "; ".join(f"{name}: {what if n == 0 else 'the same'} for {d.label}"
                     for n, (name, d) in enumerate(written))

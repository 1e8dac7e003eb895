"""The ``sync`` command: pull story states back from Rally (or a Rally CSV export), adopt
stories that carry an item's key, commit, then bring the Confluence to-do table up to date.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from config import RALLY_REQUIRED, Settings
from database import DB_FILE, MATRIX_FILE, Rollback, now_iso
from sre_maturity.commands.push import update_pages
from sre_maturity.render.reports import counted
from sre_maturity.render.stories import STORY_FIELDS, index_by_key, record_story
from sre_maturity.rules import maturity as mt
from sre_maturity.support.context import CommandOptions, Context
from sre_maturity.support.errors import EXIT_OK

log = logging.getLogger("sre_tracker.sync")

EXPORT_COLUMNS = {"formatted id": True, "name": False, "schedule state": True, "notes": False,
                  "object id": False}


def read_rally_export(path: Path) -> list[dict]:
    """Stories from a Rally CSV export: Formatted ID, Schedule State, Name, Notes."""
    from sre_maturity.store import csvfiles
    rows, problems = csvfiles.read_rows(path, EXPORT_COLUMNS)
    stories = []
    for line, v in rows:
        if not v.get("formatted id"):
            problems.add(line, "Formatted ID", "empty")
            continue
        if not v.get("schedule state"):
            problems.add(line, "Schedule State", "empty")
            continue
        stories.append({"FormattedID": v["formatted id"], "Name": v.get("name", ""),
                        "ScheduleState": v["schedule state"], "Notes": v.get("notes", ""),
                        "ObjectID": v.get("object id", ""), "line": line})
    problems.raise_if_any()
    return stories


# Rally's fixed schedule states and the custom ones sites commonly add before Defined and after
# Accepted (reference/rally.md, ScheduleState).
KNOWN_STATES = ("Idea", *mt.RALLY_STATES, "Released")


def unknown_states(stories: list[dict], source: str) -> list[str]:
    """One warning per Schedule State of an export that Rally does not know by that name (a
    typo or a site's own state): it is shown as the item's status, and never counts as done."""
    lines: dict[str, list[int]] = {}
    for story in stories:
        state = story["ScheduleState"]
        if state not in KNOWN_STATES:
            lines.setdefault(state, []).append(story["line"])
    return [f"{source} line{'s' if len(at) > 1 else ''} {', '.join(map(str, at[:5]))}"
            f"{' …' if len(at) > 5 else ''}: Schedule State {state!r} is not one of Rally's "
            f"({', '.join(KNOWN_STATES)}); shown as the status, never counted as done — "
            "check the export's column"
            for state, at in lines.items()]


def match_stories(items: list[dict], stories: list[dict], complete: bool
                  ) -> tuple[dict[str, str | None], dict[str, dict]]:
    """Match stories to items: by stored ObjectID, then FormattedID, then the key in Notes.

    Returns (states by item key — None when a tracked story is gone — and stories to adopt by
    item key). ``complete`` says the list holds every story (API), so absent ones are missing.
    """
    by_oid = {str(s["ObjectID"]): s for s in stories if s.get("ObjectID")}
    by_fid = {str(s["FormattedID"]): s for s in stories if s.get("FormattedID")}
    by_key = index_by_key(stories)
    states: dict[str, str | None] = {}
    adopt: dict[str, dict] = {}
    for it in items:
        story = None
        if it["rally_oid"]:
            story = by_oid.get(it["rally_oid"])
        if story is None and it["rally_id"]:
            story = by_fid.get(it["rally_id"])
        if story is None:
            story = by_key.get(it["key"])
            if story is not None and not it["rally_oid"] and not it["rally_id"]:
                adopt[it["key"]] = story
                continue
        if story is not None:
            states[it["key"]] = story.get("ScheduleState") or "Defined"
        elif (it["rally_oid"] or it["rally_id"]) and complete:
            states[it["key"]] = None
    return states, adopt


MATCH_FIELDS = ("asset", "capability", "level", "state", "rally_oid", "rally_id")


def matchable_items(db, stories: list[dict]) -> list[dict]:
    """The items :func:`match_stories` can match to ``stories`` (not archived, with only what
    matching reads): those with a story id, and those a story's Notes name; not the 10^5
    others of a large organisation, which no story can match."""
    def live(rows) -> dict[str, dict]:  # rows of MATCH_FIELDS, in that order
        return {key: {"key": key, "rally_oid": oid, "rally_id": rid}
                for asset, capability, level, state, oid, rid, *_cell in rows
                if state != mt.ARCHIVED for key in (mt.item_key(asset, capability, level),)}

    items = live(db.story_item_rows(MATCH_FIELDS))
    named: set[str] = set()  # the assets of keys in Notes that no item with a story has
    for key in index_by_key(stories):
        if key not in items:
            try:
                named.add(mt.split_key(key)[0])
            except ValueError:
                continue
    if named:
        items = {**live(db.item_rows(assets=named, fields=MATCH_FIELDS)), **items}
    return list(items.values())


def _cells(keys) -> set[tuple[str, str]]:
    """The matrix cells (asset, capability) of item keys."""
    return {mt.split_key(k)[:2] for k in keys}


@dataclass(frozen=True)
class SyncOptions(CommandOptions):
    """What ``sync`` was asked to do."""

    from_csv: str | None = None
    dry_run: bool = False
    no_confluence: bool = False


def run(opts: SyncOptions, ctx: Context) -> int:
    """The ``sync`` command."""
    from sre_maturity.rules.views import update_matrix_file

    settings: Settings = ctx.settings
    if not opts.dry_run:
        ctx.require_identity()
    if not opts.no_confluence and not opts.dry_run:
        settings.check_service("CONFLUENCE_")  # before anything is written (§11)
    if opts.from_csv:
        stories = read_rally_export(Path(opts.from_csv))
        source = Path(opts.from_csv).name
        for line in unknown_states(stories, source):
            ctx.warn(line)
    else:
        from sre_maturity.clients import rally
        settings.check_service("RALLY_")
        settings.require(RALLY_REQUIRED, "sync (or use sync --from-csv EXPORT.csv)")
        with rally.client_from_settings(settings) as rc:
            parent = rc.resolve_parent(settings.text("RALLY_PARENT_ID"))
            stories = rc.fetch_stories(settings.text("RALLY_TAG"), parent["_ref"], STORY_FIELDS)
        source = "Rally"
    now = now_iso()
    db = ctx.open_db()
    changed: list[tuple] = []
    adopted: list[str] = []
    try:
        states, adopt = match_stories(matchable_items(db, stories), stories,
                                      complete=not opts.from_csv)
        with db.transaction():
            # An adopted story's state counts as a change like any other (a story completed
            # before it was adopted makes its item done, awaiting re-assessment).
            adopted_states = {key: story.get("ScheduleState") or "Defined"
                              for key, story in adopt.items()}
            changed = db.apply_story_states({**adopted_states, **states}, now)
            for key, story in adopt.items():
                record_story(db, settings, key, story, now)
                adopted.append(f"{key} ← {story.get('FormattedID')}")
            if opts.dry_run:
                raise Rollback
        if (changed or adopted) and not opts.dry_run:
            update_matrix_file(ctx, db, _cells([c[0] for c in changed] + list(adopt)))
    finally:
        db.close()
    prefix = "would " if opts.dry_run else ""
    ctx.print(f"{len(stories)} stories read from {source}")
    for line in adopted:
        ctx.print(f"  {prefix}adopt {line}")
    for key, old, new, old_state, new_state in changed:
        extra = " (done, awaiting re-assessment)" if new_state == mt.DONE and \
            old_state != mt.DONE else " (reopened)" if old_state == mt.DONE and \
            new_state == mt.OPEN else ""
        ctx.print(f"  {prefix}{key}: {old} → {new}{extra}")
    if not changed and not adopted:
        ctx.print("no status changed")
    if opts.dry_run:
        ctx.print("dry run: nothing was written")
        return EXIT_OK
    if changed or adopted:
        ctx.commit([DB_FILE, MATRIX_FILE],
                   f"sync: {counted(len(changed), 'status', 'statuses')} changed, "
                   f"{counted(len(adopted), 'story', 'stories')} adopted (from {source})")
    if opts.no_confluence:
        return EXIT_OK
    return update_pages(ctx)



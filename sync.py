"""The loop with the servers: ``report --push``, ``sync`` and ``check``.

Stories are created in Rally and their ids stored as soon as Rally returns them; ``sync`` pulls
their states back; both then bring the Confluence to-do table up to date.
"""

from __future__ import annotations

import logging
from pathlib import Path

import maturity as mt
import reports
from config import RALLY_REQUIRED, Settings
from database import DB_FILE, MATRIX_FILE, now_iso
from errors import EXIT_OK, PartialFailure

log = logging.getLogger("sre_tracker.sync")

STORY_FIELDS = ["ObjectID", "FormattedID", "Name", "ScheduleState", "Notes"]
EXPORT_COLUMNS = {"formatted id": True, "name": False, "schedule state": True, "notes": False,
                  "object id": False}


def require_rally(settings: Settings, purpose: str = "report --push") -> None:
    settings.require(RALLY_REQUIRED, purpose)


def story_url(settings: Settings, oid: str) -> str:
    from rally import story_url as url

    return url(settings.get("RALLY_BASE_URL"), settings.get("RALLY_PROJECT_ID"), oid)


def search_url(settings: Settings, formatted_id: str) -> str:
    """Link to a story known only by FormattedID (CSV path; reference/rally.md §7)."""
    return f"{settings.get('RALLY_BASE_URL')}/#/search?keywords={formatted_id}"


def index_by_key(stories: list[dict]) -> dict[str, dict]:
    """Stories by the item key carried in their Notes (or Name)."""
    found: dict[str, dict] = {}
    for s in stories:
        key = reports.key_from_text(s.get("Notes")) or reports.key_from_text(s.get("Name"))
        # Several stories for one key (someone copied one): keep the oldest, stable choice.
        if key and (key not in found or _oid(s) < _oid(found[key])):
            found[key] = s
    return found


def _oid(story: dict) -> int:
    try:
        return int(story.get("ObjectID") or 0)
    except (TypeError, ValueError):
        return 0


def story_payload(item: dict, settings: Settings, parent_ref: str, tag_ref: str) -> dict:
    return {
        "Name": reports.story_name(item["asset"], item["capability"], item["level"]),
        "Description": reports.story_description(item, item.get("flows", "")),
        "Notes": reports.story_notes(item["key"]),
        "ScheduleState": "Defined",
        "PortfolioItem": parent_ref,
        "Project": f"/project/{settings.get('RALLY_PROJECT_ID')}",
        "Tags": [{"_ref": tag_ref}],
    }


def _progress(ctx, done: int, total: int) -> None:
    if total >= 20 and ctx.out.isatty() and ctx.verbosity >= 0:
        print(f"\rcreating stories: {done}/{total}", end="", file=ctx.out, flush=True)


def push(args, ctx, items: list[dict]) -> None:
    """Create the stories the selected ``items`` lack (adopting any that already exist) and
    commit their ids; PartialFailure lists the stories that could not be created."""
    import rally
    from views import write_matrix_file

    settings: Settings = ctx.settings
    tag = settings.get("RALLY_TAG")
    selected = reports.select_for_rally(items, args.include_amber)
    created, adopted, failures = 0, 0, []
    db = ctx.open_db()
    try:
        with rally.client_from_settings(settings) as rc:
            parent = rc.resolve_parent(settings.get("RALLY_PARENT_ID"))
            existing = index_by_key(rc.fetch_stories(tag, parent["_ref"], STORY_FIELDS))
            now = now_iso()
            to_create = []
            with db.transaction():
                for it in selected:
                    story = existing.get(it["key"])
                    if story:
                        _record(db, settings, it["key"], story, now)
                        adopted += 1
                    else:
                        to_create.append(it)
            if to_create:
                tag_ref = rc.ensure_tag(tag)
                payloads = [story_payload(it, settings, parent["_ref"], tag_ref)
                            for it in to_create]

                def on_created(index: int, obj: dict) -> None:
                    nonlocal created
                    # Store each id at once: a run that dies later must not create it again.
                    with db.transaction():
                        _record(db, settings, to_create[index]["key"], obj, now_iso())
                    created += 1
                    _progress(ctx, created, len(to_create))

                results = rc.create_stories(payloads, on_created=on_created)
                if created >= 20 and ctx.out.isatty():
                    print(file=ctx.out)
                failures = [(to_create[i]["key"], r.get("error", "failed"))
                            for i, r in enumerate(results) if not r.get("ok")]
        if created or adopted:
            write_matrix_file(ctx, db)
    finally:
        db.close()
        if created or adopted:
            ctx.commit([DB_FILE, MATRIX_FILE],
                       f"report --push: {created} stories created, {adopted} adopted")
    ctx.print(f"rally: {created} stories created, {adopted} existing stories adopted, "
              f"{len(failures)} failed")
    if failures:
        for key, error in failures:
            print(f"  not created: {key}: {error}", file=ctx.err)
        raise PartialFailure(f"{len(failures)} of {len(selected)} stories were not created "
                             "(listed above); run report --push again to finish")


def _record(db, settings: Settings, key: str, story: dict, now: str) -> None:
    oid = str(story.get("ObjectID") or "")
    formatted = str(story.get("FormattedID") or "")
    url = story_url(settings, oid) if oid else search_url(settings, formatted)
    db.set_item_story(key, oid, formatted, url, story.get("ScheduleState") or "Defined", now)


def read_rally_export(path: Path) -> list[dict]:
    """Stories from a Rally CSV export: Formatted ID, Schedule State, Name, Notes."""
    import csvfiles

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
                        "ObjectID": v.get("object id", "")})
    problems.raise_if_any()
    return stories


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


class _Rollback(Exception):
    pass


def run_sync(args, ctx) -> int:
    """The ``sync`` command."""
    from views import write_matrix_file

    settings: Settings = ctx.settings
    if args.from_csv:
        stories = read_rally_export(Path(args.from_csv))
        source = Path(args.from_csv).name
    else:
        import rally

        settings.require(RALLY_REQUIRED, "sync (or use sync --from-csv EXPORT.csv)")
        with rally.client_from_settings(settings) as rc:
            parent = rc.resolve_parent(settings.get("RALLY_PARENT_ID"))
            stories = rc.fetch_stories(settings.get("RALLY_TAG"), parent["_ref"], STORY_FIELDS)
        source = "Rally"
    now = now_iso()
    db = ctx.open_db()
    changed: list[tuple] = []
    adopted: list[str] = []
    try:
        items = [it for it in db.load_items() if it["state"] != mt.ARCHIVED]
        states, adopt = match_stories(items, stories, complete=not args.from_csv)
        try:
            with db.transaction():
                for key, story in adopt.items():
                    _record(db, settings, key, story, now)
                    adopted.append(f"{key} ← {story.get('FormattedID')}")
                changed = db.apply_story_states(states, now)
                if args.dry_run:
                    raise _Rollback
        except _Rollback:
            pass
        if (changed or adopted) and not args.dry_run:
            write_matrix_file(ctx, db)
    finally:
        db.close()
    prefix = "would " if args.dry_run else ""
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
    if args.dry_run:
        ctx.print("dry run: nothing was written")
        return EXIT_OK
    if changed or adopted:
        ctx.commit([DB_FILE, MATRIX_FILE],
                   f"sync: {len(changed)} statuses changed, {len(adopted)} stories adopted "
                   f"(from {source})")
    if args.no_confluence:
        return EXIT_OK
    return update_page(ctx)


def update_page(ctx, items: list[dict] | None = None) -> int:
    """Bring the Confluence to-do table up to date (from ``items`` when the caller already
    has them), or say why the page is skipped."""
    settings: Settings = ctx.settings
    missing = settings.confluence_missing()
    if missing:
        ctx.notice(f"Confluence page skipped: {', '.join(missing)} not set")
        return EXIT_OK
    import confluence

    if items is None:
        from views import load_view

        with ctx.open_db() as db:
            _m, _f, items = load_view(db)
    rows = reports.todo_rows(items)
    client = confluence.client_from_settings(settings)
    try:
        result = confluence.update_todo_table(
            client, settings.get("CONFLUENCE_PAGE_ID"), settings.get("CONFLUENCE_TABLE_TITLE"),
            rows,
        )
    finally:
        client.close()
    if result["changed"]:
        ctx.print(f"confluence: page updated to version {result['version']} "
                  f"({result['summary']})")
    else:
        ctx.print("confluence: table already up to date (no new version)")
    return EXIT_OK



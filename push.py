"""``report --push``: create the Rally stories open items lack (adopting stories that already
carry an item's key), store their ids as Rally returns them, and bring the Confluence to-do
table up to date (``sync`` reuses that last step).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import reports
from config import RALLY_REQUIRED, Settings
from database import DB_FILE, MATRIX_FILE, now_iso
from errors import EXIT_OK, PartialFailure
from stories import STORY_FIELDS, index_by_key, record_story, select_for_rally, story_payload

if TYPE_CHECKING:
    from context import Context


def require_settings(settings: Settings, purpose: str = "report --push") -> None:
    """Refuse before any work when a Rally setting the push needs is missing."""
    settings.require(RALLY_REQUIRED, purpose)


def _progress(ctx: Context, done: int, total: int) -> None:
    if total >= 20 and ctx.out.isatty() and ctx.verbosity >= 0:
        print(f"\rcreating stories: {done}/{total}", end="", file=ctx.out, flush=True)


def push_stories(ctx: Context, items: list[dict], *, include_amber: bool = False) -> None:
    """Create the stories the selected ``items`` lack (adopting any that already exist) and
    commit their ids; PartialFailure lists the stories that could not be created."""
    import rally
    from views import update_matrix_file

    settings: Settings = ctx.settings
    tag = settings.get("RALLY_TAG")
    selected = select_for_rally(items, include_amber)
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
                        record_story(db, settings, it["key"], story, now)
                        adopted += 1
                    else:
                        to_create.append(it)
            if to_create:
                tag_ref = rc.ensure_tag(tag)
                payloads = [story_payload(it, settings, parent["_ref"], tag_ref)
                            for it in to_create]

                def on_chunk(done: list[tuple[int, dict]]) -> None:
                    nonlocal created
                    # Store the ids of each chunk as soon as Rally returns it, in one
                    # transaction: a run that dies later must not create them again. Stories
                    # found after a lost answer were made by this run: created too.
                    stamp = now_iso()
                    with db.transaction():
                        for index, obj in done:
                            record_story(db, settings, to_create[index]["key"], obj, stamp)
                    created += len(done)
                    _progress(ctx, created, len(to_create))

                def find_existing(indices: list[int]) -> dict[int, dict]:
                    # A create whose answer was lost: the stories Rally holds now, by key.
                    found = index_by_key(rc.fetch_stories(tag, parent["_ref"], STORY_FIELDS))
                    return {i: found[to_create[i]["key"]] for i in indices
                            if to_create[i]["key"] in found}

                results = rc.create_stories(payloads, on_chunk=on_chunk,
                                            find_existing=find_existing)
                if created >= 20 and ctx.out.isatty():
                    print(file=ctx.out)
                failures = [(to_create[i]["key"], r.get("error", "failed"))
                            for i, r in enumerate(results) if not r.get("ok")]
        if created or adopted:
            update_matrix_file(ctx, db, {(it["asset"], it["capability"]) for it in selected})
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


def push_page(ctx: Context, items: list[dict] | None = None) -> int:
    """Bring the Confluence to-do table up to date (from ``items`` when the caller already
    has them), or say why the page is skipped."""
    settings: Settings = ctx.settings
    missing = settings.confluence_missing()
    if missing:
        ctx.notice(f"Confluence page skipped: {', '.join(missing)} not set")
        return EXIT_OK
    import confluence

    if items is None:
        import maturity as mt
        import views

        with ctx.open_db() as db:
            items = views.items(db, states=(mt.OPEN, mt.DONE))
    rows = reports.todo_rows(items)
    client = confluence.client_from_settings(settings)
    try:
        result = confluence.update_todo_table(
            client, settings.get("CONFLUENCE_PAGE_ID"), settings.get("CONFLUENCE_TABLE_TITLE"),
            rows, reports.item_keys(items),
        )
    finally:
        client.close()
    if result["changed"]:
        ctx.print(f"confluence: page updated to version {result['version']} "
                  f"({result['summary']})")
    else:
        ctx.print("confluence: table already up to date (no new version)")
    return EXIT_OK



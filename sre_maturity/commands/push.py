"""``report --push``: create the Rally stories open items lack (adopting stories that already
carry an item's key), store their ids as Rally returns them, and bring the Confluence to-do
table up to date (``sync`` reuses that last step).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from config import RALLY_REQUIRED, Settings
from database import DB_FILE, MATRIX_FILE, now_iso
from sre_maturity.render import reports, storage_format
from sre_maturity.render.stories import (
    STORY_FIELDS,
    index_by_key,
    record_story,
    reopened_notes,
    select_for_rally,
    story_payload,
)
from sre_maturity.support.errors import (
    EXIT_OK,
    ConfigError,
    ConfluenceError,
    PageNeedsFix,
    PartialFailure,
)

ctx_log = logging.getLogger("sre_tracker.push")

if TYPE_CHECKING:
    from sre_maturity.support.context import Context


def require_settings(settings: Settings, purpose: str = "report --push", *,
                     pages: bool = True) -> None:
    """Refuse before any work when a Rally setting the push needs is missing, or when a
    setting of either service it talks to (Confluence too, with ``pages``) is not valid: a bad
    page setting must not stop the run after Rally was written."""
    settings.check_service("RALLY_")
    settings.require(RALLY_REQUIRED, purpose)
    if pages:
        settings.check_service("CONFLUENCE_")


def _progress(ctx: Context, done: int, total: int) -> None:
    if total >= 20 and ctx.out.isatty() and ctx.verbosity >= 0:
        print(f"\rcreating stories: {done}/{total}", end="", file=ctx.out, flush=True)


def push_stories(ctx: Context, items: list[dict], *, include_amber: bool = False) -> None:
    """Create the stories the selected ``items`` lack (adopting any that already exist) and
    commit their ids; PartialFailure lists the stories that could not be created."""
    from sre_maturity.clients import rally
    from sre_maturity.rules.views import update_matrix_file

    settings: Settings = ctx.settings
    tag = settings.text("RALLY_TAG")
    selected = select_for_rally(items, include_amber)
    created, adopted, failures = 0, 0, []
    reopened: list[str] = []
    db = ctx.open_db()
    try:
        with rally.client_from_settings(settings) as rc:
            parent = rc.resolve_parent(settings.text("RALLY_PARENT_ID"))
            fetched = rc.fetch_stories(tag, parent["_ref"], STORY_FIELDS)
            existing = index_by_key(fetched)
            now = now_iso()
            reopened = reopen_stories(rc, db, settings, items, fetched)
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
        if created or adopted or reopened:
            update_matrix_file(ctx, db, {(it["asset"], it["capability"]) for it in selected})
    finally:
        db.close()
        if created or adopted or reopened:
            moved = f", {len(reopened)} moved back to Defined" if reopened else ""
            ctx.commit([DB_FILE, MATRIX_FILE],
                       f"report --push: {created} stories created, {adopted} adopted{moved}")
    for line in reopened:
        ctx.print(f"rally: {line}")
    ctx.print(f"rally: {created} stories created, {adopted} existing stories adopted, "
              f"{len(failures)} failed")
    if failures:
        for key, error in failures:
            print(f"  not created: {key}: {error}", file=ctx.err)
        raise PartialFailure(f"{len(failures)} of {len(selected)} stories were not created "
                             "(listed above); run report --push again to finish")


def reopen_stories(rc, db, settings: Settings, items: list[dict], fetched: list[dict]
                   ) -> list[str]:
    """Move the stories of reopened items (a lower re-assessment after the story was completed)
    back to Defined, with a line in their Notes; the item keeps its one story. Returns what
    was done, one line per story."""
    from sre_maturity.rules import maturity as mt
    wanted = [it for it in items if it["work_status"] == mt.REOPENED and it.get("rally_oid")]
    if not wanted:
        return []
    by_oid = {str(s.get("ObjectID")): s for s in fetched if s.get("ObjectID")}
    by_key = index_by_key(fetched)
    cells = db.load_cells({(it["asset"], it["capability"]) for it in wanted})
    done = []
    for it in wanted:
        story = by_oid.get(str(it["rally_oid"])) or by_key.get(it["key"])
        if story is None:
            continue  # gone from Rally: the next sync marks it Missing in Rally
        state = story.get("ScheduleState") or "Defined"
        if state in mt.RALLY_DONE_STATES:
            cell = cells.get((it["asset"], it["capability"]))
            level = cell.level if cell is not None and cell.state == mt.ASSESSED else None
            notes = reopened_notes(story.get("Notes"), cell.assessed_by if cell else "",
                                   cell.assessed_at if cell else now_iso(), level, it["level"])
            rc.update_story(str(story.get("ObjectID") or it["rally_oid"]),
                            {"ScheduleState": "Defined", "Notes": notes})
            done.append(f"{story.get('FormattedID') or it['rally_id']} ({it['key']}) moved "
                        f"back from {state} to Defined: the item was reopened")
            state = "Defined"
        # Store at once, story by story: a run that dies later must not add the note twice.
        with db.transaction():
            db.apply_story_states({it["key"]: state}, now_iso())
    return done


def update_pages(ctx: Context) -> int:
    """After Rally's side is done and committed: the to-do page, then the Rulebook and matrix
    pages. A Confluence failure now is partly done (exit 3); a re-run updates the pages."""
    from sre_maturity.render import pages
    try:
        code = push_page(ctx)
        pages.update_confluence(ctx)
    except PageNeedsFix as exc:  # says itself what to change; a plain re-run cannot help
        raise PartialFailure(f"Rally is up to date, but the Confluence page was not updated: "
                             f"{exc}") from exc
    except (ConfluenceError, ConfigError) as exc:
        raise PartialFailure(f"Rally is up to date, but the Confluence page was not updated: "
                             f"{exc}; run the command again to update the page") from exc
    return code


def push_page(ctx: Context) -> int:
    """Bring the Confluence to-do list up to date, or say why the page is skipped: one table
    on ``CONFLUENCE_PAGE_ID`` while the list fits one page, else child pages with an index on
    it (:mod:`todo_parts`)."""
    settings: Settings = ctx.settings
    missing = settings.confluence_missing()
    if missing:
        ctx.notice(f"Confluence page skipped: {', '.join(missing)} not set")
        return EXIT_OK
    from sre_maturity.clients import confluence
    from sre_maturity.render import todo_parts
    page_id = settings.text("CONFLUENCE_PAGE_ID")
    title = settings.text("CONFLUENCE_TABLE_TITLE")
    client = confluence.client_from_settings(settings)
    try:
        with ctx.open_db() as db:
            # The keys of stored items, closed ones too (their rows leave the page): looked
            # up only for the assets of rows a page update meets.
            known = StoredKeys(db)
            plan = todo_parts.layout(db)
            if plan.split:
                return _push_parts(ctx, client, page_id, title, plan, known)
            rows = reports.todo_rows(plan.items)
            result = confluence.update_page(client, page_id, _whole_list_edit(title, rows, known))
            if result["summary"] == ONE_PAGE_AGAIN:
                _empty_children(ctx, client, page_id, title, known, keep=set())
    finally:
        client.close()
    if result["changed"]:
        ctx.print(f"confluence: page updated to version {result['version']} "
                  f"({result['summary']})")
    else:
        ctx.print("confluence: table already up to date (no new version)")
    return EXIT_OK


class StoredKeys(storage_format.KnownKeys):
    """The page-row keys (Task, Asset Name) of the items stored in ``db``, open or closed,
    read asset by asset the first time a page row of that asset is asked about: a page holds
    the rows of a few dozen assets, the organisation 10^5 items."""

    def __init__(self, db) -> None:
        self._db = db
        self._names: dict[str, list[str]] | None = None  # page spelling -> stored names
        self._keys: dict[str, set[tuple[str, str]]] = {}

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple) or len(key) != 2:
            return False
        asset = key[1]
        keys = self._keys.get(asset)
        if keys is None:
            keys = self._keys[asset] = self._read(asset)
        return key in keys

    def _read(self, asset: str) -> set[tuple[str, str]]:
        from sre_maturity.rules import views
        if self._names is None:
            self._names = {}
            for name in self._db.known_assets():
                self._names.setdefault(storage_format.known_key("", name)[1], []).append(name)
        names = self._names.get(asset)
        if not names:
            return set()
        return {storage_format.known_key(task, name)
                for task, name in views.item_keys(self._db, names)}


# Child pages created at once by a split list's first push: two keep the server busy while the
# next part is rendered, without a burst a rate limit would refuse (a refused create is listed,
# exit 3, and the next run makes it).
CREATES_IN_FLIGHT = 2
MEMO_FILE = ".sre-tracker.pages.json"  # ignored by the data folder's .gitignore (.sre-tracker.*)


def _load_memo(path, site: str) -> dict[str, list]:
    """The child pages' [version, rows fingerprint] the tool last wrote or found up to date
    on ``site`` (see ``confluence.update_part_page``); empty when missing or unreadable: a
    lost memo only costs full reads."""
    import json
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    pages = data.get(site) if isinstance(data, dict) else None
    return {str(k): v for k, v in pages.items()} if isinstance(pages, dict) else {}


def _save_memo(path, site: str, memo: dict[str, list]) -> None:
    import json

    from sre_maturity.store.csvfiles import atomic_write
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    data[site] = memo
    try:
        atomic_write(path, json.dumps(data, sort_keys=True) + "\n")
    except OSError as exc:  # a read-only folder: the next run reads the pages in full
        ctx_log.warning("could not write %s: %s", path.name, exc)


ONE_PAGE_AGAIN = "the to-do list fits one page again: the index became the table"


def _whole_list_edit(title: str, rows: list[dict], known):
    """The main page's edit while the list fits one page: the to-do table's update (SPEC §6),
    or, where the page still holds the index of a split list, the table in its place."""
    from sre_maturity.render import storage_format, storage_page, todo_parts

    def apply(body: str) -> tuple[str, bool, str]:
        found = storage_page.locate(storage_page.load(body), title, todo_parts.either_is_ours)
        if found.table is not None and todo_parts.INDEX_IS_OURS(
                storage_page.header_texts(found.page, found.table) or []):
            markup = storage_format.render_table(rows)
            new = storage_page.replace_table(body, title, todo_parts.either_is_ours, markup)
            return new.body, True, ONE_PAGE_AGAIN
        return storage_format.update_table(body, title, rows, known)

    return apply


def _push_parts(ctx: Context, client, page_id: str, title: str, plan, known) -> int:
    """A split list: each part's child page created or updated (the splice, no-op and 409
    rules of one page), children left over from an earlier split emptied of the tool's rows,
    then the index on the main page."""
    from sre_maturity.clients import confluence
    from sre_maturity.render import storage_format, storage_page, todo_parts

    main = client.get_page(page_id)
    children = {c["title"].casefold(): c for c in client.child_pages(page_id, versions=True)}
    memo_file = ctx.data_dir / MEMO_FILE
    memo = _load_memo(memo_file, client.base_url)

    def make(it) -> tuple[tuple[dict, str], int]:
        # The item and its storage row: the row measures the part, the rows fingerprint it;
        # the table's row dicts are made only for a page that needs the full update.
        html = storage_format.render_todo_row(it)
        return (it, html), len(html.encode())

    index, done, created, updated = [], set(), 0, 0

    def update(part, child: str, fingerprint: str, existing: dict) -> None:
        nonlocal updated
        result = confluence.update_part_page(
            client, existing["id"], title, fingerprint, _rows_of(part.entries), known, memo,
            existing)
        if result["changed"]:
            updated += 1
            ctx.print(f"confluence: page '{child}' updated to version {result['version']} "
                      f"({result['summary']})")

    def settle(sent: tuple) -> None:
        # A part's create, sent while the next part was made: counted, or (a page of that
        # title was there after all) that page updated instead.
        nonlocal created
        part, child, fingerprint, future = sent
        existing = future.result()
        if existing.get("created"):
            created += 1
            ctx.print(f"confluence: page '{child}' created ({len(part.entries)} rows)")
        else:
            update(part, child, fingerprint, existing)

    try:
        # A create (a page of 10^3 rows, the server's slowest answer) is awaited while the
        # next part is read and rendered, and at most CREATES_IN_FLIGHT are under way at once:
        # the first push of a large organisation makes 10^2 pages.
        with ThreadPoolExecutor(max_workers=CREATES_IN_FLIGHT,
                                thread_name_prefix="create") as sender:
            sent: deque[tuple] = deque()
            for part in todo_parts.split(plan.items, plan.flow_of, make):
                child = todo_parts.child_title(title, part.name)
                done.add(child.casefold())
                index.append(todo_parts.index_row(part, title))
                rendered = [html for _it, html in part.entries]
                fingerprint = storage_format.rows_fingerprint(title, rendered)
                while len(sent) >= CREATES_IN_FLIGHT:
                    settle(sent.popleft())
                existing = children.get(child.casefold())
                if existing is None:
                    sent.append((part, child, fingerprint, sender.submit(
                        _create_child, client, main, child, title, rendered, fingerprint,
                        memo)))
                else:
                    update(part, child, fingerprint, existing)
            while sent:
                settle(sent.popleft())
        emptied = _empty_children(ctx, client, page_id, title, known, keep=done,
                                  children=list(children.values()), memo=memo)
    finally:
        _save_memo(memo_file, client.base_url, memo)
    edit = storage_page.table_edit(title, todo_parts.either_is_ours,
                                   todo_parts.index_storage(index), "index of the parts")
    result = confluence.update_page(client, page_id, edit, page=main)
    kept = len(index) - created - updated
    ctx.print(f"confluence: the to-do list is {len(index)} child pages ({created} created, "
              f"{updated} updated, {kept} already up to date"
              + (f", {emptied} left over emptied" if emptied else "") + "); index "
              + (f"updated to version {result['version']}" if result["changed"]
                 else "already up to date (no new version)"))
    return EXIT_OK


def _rows_of(entries: list[tuple[dict, str]]) -> Callable[[], list[dict]]:
    """The to-do table rows of a part's (item, storage row) entries, made when asked."""
    return lambda: [reports.todo_row(it) for it, _html in entries]


def _create_child(client, main: dict, child: str, title: str, rendered: list[str],
                  fingerprint: str, memo: dict[str, list]) -> dict:
    """Create a part's child page under ``main`` holding the heading and the table; a page
    of that title already under ``main`` (a create whose answer was lost, or made by hand) is
    returned to be updated instead. ``{"id", ..., "created": bool}``."""
    from sre_maturity.clients import confluence
    from sre_maturity.render import storage_format
    try:
        page = client.create_page(main["space"], main["id"], child,
                                  storage_format.new_page_body(title, rendered))
        memo[page["id"]] = [page["version"], fingerprint]
        return {**page, "created": True}
    except (confluence.TitleTaken, confluence.WriteOutcomeUnknown) as exc:
        found = client.find_page(main["space"], child)
        if found is None:
            raise
        if found["parent"] and found["parent"] != main["id"]:
            raise ConfluenceError(
                f"a page titled '{child}' already exists elsewhere in the space (page "
                f"{found['id']}); move it under page {main['id']} ('{main['title']}') or rename "
                "it, then run the command again") from exc
        return {**found, "created": False}


def _empty_children(ctx: Context, client, page_id: str, title: str, known, *,
                    keep: set[str], children: list[dict] | None = None,
                    memo: dict[str, list] | None = None) -> int:
    """Child pages of an earlier split that hold no part now (their flow left, or the list
    fits one page again): the tool's rows taken off their table, people's rows kept.
    Returns how many changed."""
    from sre_maturity.clients import confluence
    from sre_maturity.render import storage_format, todo_parts
    prefix = todo_parts.child_title(title, "").casefold()
    if children is None:
        children = client.child_pages(page_id)
    changed = 0
    for child in children:
        name = child["title"].casefold()
        if not name.startswith(prefix) or name in keep:
            continue
        if memo is None:
            result = confluence.update_todo_table(client, child["id"], title, [], known)
        else:
            result = confluence.update_part_page(
                client, child["id"], title, storage_format.rows_fingerprint(title, []),
                list, known, memo, child)
        if result["changed"]:
            changed += 1
            ctx.print(f"confluence: page '{child['title']}' holds no part now: its rows were "
                      f"taken off (version {result['version']})")
    return changed

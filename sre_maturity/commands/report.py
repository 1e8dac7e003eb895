"""The ``report`` command: rally_import.csv, confluence_page.txt/.html, the Rulebook and
sre_matrix.html (with ``--push``, the Rally stories and the Confluence page first; see
:mod:`push`), or with ``--cycle-time`` the cycle-time statistics.

The text itself is rendered by :mod:`reports` (the to-do table, wiki markup, statistics) and
:mod:`stories` (Rally story text); this module reads the data and writes the files.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from sre_maturity.support.context import CommandOptions, Context
from sre_maturity.support.errors import EXIT_OK, InputError, PartialFailure, require_data_folder


@dataclass(frozen=True)
class ReportOptions(CommandOptions):
    """What ``report`` was asked to do."""

    include_amber: bool = False
    output_dir: str | None = None
    push: bool = False
    cycle_time: bool = False


def run(opts: ReportOptions, ctx: Context) -> int:
    """The ``report`` command: the files; with --push the stories and the page first; with
    --cycle-time only the cycle-time table."""
    from sre_maturity.render import reports
    from sre_maturity.rules import maturity as mt
    from sre_maturity.rules import views
    if opts.push:
        from sre_maturity.commands import push
        push.require_settings(ctx.settings)
        ctx.require_identity()
    if opts.cycle_time:
        with ctx.open_db() as db:
            items = views.items(db)
            teams = {a: info.team for a, info in db.load_assets().items()}
        ctx.data.write(reports.cycle_table(reports.cycle_times(items, teams)))
        return EXIT_OK
    code, partial = EXIT_OK, None
    if opts.push:
        with ctx.open_db() as db:
            items = views.items(db, states=(mt.OPEN,))
        try:
            push.push_stories(ctx, items, include_amber=opts.include_amber)
        except PartialFailure as exc:
            partial = exc  # files and page still show what was created; raised last
        del items
    with views.no_cycle_collection():  # 10^5 items and matrix rows, no reference cycle
        write_files(ctx, opts)
    if opts.push:
        try:
            code = push.update_pages(ctx)
        except PartialFailure as exc:
            if partial is not None:  # stories and page both: say the page's, raise the first
                print(f"sre_tracker: {exc}", file=ctx.err)
            partial = partial or exc
    if partial is not None:
        raise partial
    return code


def write_files(ctx: Context, opts: ReportOptions) -> None:
    """rally_import.csv, confluence_page.txt and confluence_page.html (written row by row from
    one sorted pass over the open items), the Rulebook files and sre_matrix.html, then a
    summary."""
    from database import now_iso
    from sre_maturity.render import (
        matrix_page,
        pages,
        paste,
        reports,
        storage_format,
        stories,
        todo_parts,
    )
    from sre_maturity.rules import views

    out_dir = Path(opts.output_dir).expanduser() if opts.output_dir else ctx.data_dir
    if not opts.output_dir:
        require_data_folder(out_dir)
    elif out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--output-dir {out_dir} is a file, not a folder; give a folder")
    elif not out_dir.is_dir():
        raise InputError(f"--output-dir {out_dir} does not exist; create it first")
    tag = ctx.settings.text("RALLY_TAG")
    title = ctx.settings.text("CONFLUENCE_TABLE_TITLE")
    generated = now_iso()[:10]
    wiki_files = paste.files(ctx.settings, "confluence_page")
    if (unusable := paste.unusable_setting(ctx.settings)) is not None:
        ctx.notice(unusable)
    selected = 0
    # What sre_matrix.html shows of the items (all open or awaiting re-assessment): it lists
    # the go-live ones (the dicts themselves: nothing changes them) and counts the others.
    opened = matrix_page.OpenItems()

    def seen(it: Mapping) -> None:
        nonlocal selected
        if stories.wants_story(it, opts.include_amber):
            rally_file.write(stories.rally_import_record(it, tag))
            selected += 1
        if it["go_live"]:
            opened.red.append(it)
        else:
            opened.others[it["asset"]][str(it["owner"])] += 1

    parts: list[todo_parts.IndexRow] = []
    with ctx.open_db() as db:
        levels = views.open_levels(db)  # counted for the list, the matrix and the summary
        plan = todo_parts.layout(db, levels)
        count = plan.count
        with ExitStack() as files:
            rally_file = files.enter_context(views.atomic_stream(out_dir / "rally_import.csv"))
            html_file = files.enter_context(
                views.atomic_stream(out_dir / "confluence_page.html"))
            rally_file.write(stories.rally_import_header())
            if plan.split:
                # The index and the parts: in the site's dialect, Data Center's when the site
                # is not set (one set of part files; see the README).
                wiki_files = wiki_files[:1]
                dialect = wiki_files[0][1]
                wiki_file = files.enter_context(
                    views.atomic_stream(out_dir / "confluence_page.txt"))
                parts = write_parts(out_dir, title, generated, plan, seen, dialect)
                wiki_file.write(todo_parts.index_wiki_page(parts, title, generated, count,
                                                           dialect.inline))
                html_file.write(todo_parts.index_storage(parts) + "\n")
            else:
                # One paste file per dialect the site may need (paste.files).
                wiki = [(files.enter_context(views.atomic_stream(out_dir / name)).write, d)
                        for name, d in wiki_files]
                note = reports.todo_note(generated, count)
                for write, d in wiki:
                    write(d.head(title, note) + reports.wiki_header() + "\n")
                html_file.write(storage_format.table_start())
                for it in plan.items:
                    seen(it)
                    for write, d in wiki:
                        write(d.todo_row(it) + "\n")
                    html_file.write(storage_format.render_todo_row(it))
                html_file.write(storage_format.TABLE_END + "\n")
        paste.remove_stale(out_dir, "confluence_page", wiki_files)
        remove_stale_parts(out_dir, {r.file for r in parts})
        del plan  # let the sorted rows go before the matrix is built
        matrix, flows = views.matrix_rows(db, levels=levels)
        summary = views.summary(db, matrix, levels=levels)
    for line in reports.summary_lines(summary):
        ctx.print(line)
    kind = "Red and Amber" if opts.include_amber else "Red"
    ctx.print(f"rally_import.csv: {selected} {kind} items without a Rally story")
    if parts:
        first = parts[0]
        ctx.print(f"confluence_page.txt: {count} rows, too many for one page: an index of "
                  f"{len(parts)} parts (paste it into the to-do page); each part's table is "
                  f"in its own file, e.g. {first.file}.txt for the child page "
                  f"'{first.title}' (.html: the same in storage format)")
    else:
        ctx.print(paste.summary(wiki_files, f"{count} rows") + " (paste via Insert → Markup → "
                  "Confluence wiki); confluence_page.html: the same table in storage format")
    for line in pages.write_files(ctx, out_dir, matrix, flows, opened):
        ctx.print(line)
    ctx.print(f"written to {out_dir}")


def write_parts(out_dir: Path, title: str, generated: str, plan, seen, dialect) -> list:
    """A split to-do list's part files (wiki markup in ``dialect``, a ``paste.Dialect``, and
    storage format, one pair per part, each under ``todo_parts.PAGE_BYTES``); ``seen(item)``
    is called for every item. Returns the index rows, with the file each part is in."""
    from sre_maturity.render import reports, storage_format, todo_parts
    from sre_maturity.store.csvfiles import atomic_write_bytes

    rows = reports.TwinRows(dialect.rows, storage_format.STORAGE_ROWS)  # encoded rows

    def make(it: Mapping) -> tuple[tuple[bytes, bytes], int]:
        seen(it)
        wiki, html = rows(it)
        return (wiki, html), len(html)

    index = []
    for number, part in enumerate(todo_parts.split(plan.items, plan.flow_of, make), 1):
        stem = todo_parts.file_stem(number, part.name)
        # A part's rows are held anyway: each file written in one piece.
        wiki_head = (todo_parts.part_wiki_head(title, part, generated, dialect.inline)
                     + reports.wiki_header() + "\n")
        atomic_write_bytes(out_dir / f"{stem}.txt", b"".join((
            wiki_head.encode(), b"\n".join(wiki for wiki, _html in part.entries), b"\n")))
        atomic_write_bytes(out_dir / f"{stem}.html", b"".join((
            storage_format.table_start().encode(),
            *(html for _wiki, html in part.entries),
            (storage_format.TABLE_END + "\n").encode())))
        index.append(todo_parts.index_row(part, title, stem))
    return index


def remove_stale_parts(out_dir: Path, keep: set[str]) -> None:
    """Remove part files an earlier ``report`` wrote that this one did not (a flow that left,
    or a list that fits one page again): pasting a stale part would undo work."""
    from sre_maturity.render import todo_parts
    for path in out_dir.glob(todo_parts.FILE_PREFIX + "*"):
        if todo_parts.is_part_file(path.name) and path.name.rsplit(".", 1)[0] not in keep:
            path.unlink(missing_ok=True)

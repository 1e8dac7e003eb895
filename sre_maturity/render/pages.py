"""The pages to look at — the Rulebook and the maturity matrix — written by ``report`` as files,
and kept current on Confluence by ``report --push`` and ``sync`` when their page ids are set.

Files: ``confluence_rulebook.txt`` (wiki markup to paste) and ``confluence_rulebook.html``
(its storage-format twin) from :mod:`rulebook`; ``sre_matrix.html`` from :mod:`matrix_page`.
Pages: ``CONFLUENCE_RULEBOOK_PAGE_ID`` gets the Rulebook table under the heading
``SRE Maturity Model``, ``CONFLUENCE_MATRIX_PAGE_ID`` the matrix table under
``SRE Maturity Matrix``, with the to-do table's rules (byte-exact splice, no version when the
table is unchanged, 409 re-read and re-applied: :func:`confluence.update_page` with
``storage_page.table_edit``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from sre_maturity.render import matrix_page, paste, reports, rulebook
from sre_maturity.rules.maturity import MatrixRow
from sre_maturity.support.context import Context

log = logging.getLogger("sre_tracker.pages")

RULEBOOK_SETTING = "CONFLUENCE_RULEBOOK_PAGE_ID"
MATRIX_SETTING = "CONFLUENCE_MATRIX_PAGE_ID"
PAGE_SETTINGS = {RULEBOOK_SETTING: rulebook.TITLE, MATRIX_SETTING: matrix_page.CONFLUENCE_TITLE}


def write_files(ctx: Context, out_dir: Path, matrix: Sequence[MatrixRow],
                flows: Sequence[Mapping], items: Sequence[Mapping] | matrix_page.OpenItems
                ) -> list[str]:
    """Write the Rulebook files and ``sre_matrix.html``; return the summary lines to print.

    ``matrix`` (rows of :func:`views.matrix_rows`), ``flows`` and ``items`` are the read model
    ``report`` already holds; the model and the assessment history (for the trend) are read
    here.
    """
    from database import DB_FILE, now_iso
    from sre_maturity.git import gitops
    from sre_maturity.rules.views import atomic_stream
    from sre_maturity.store.csvfiles import atomic_write

    now = now_iso()
    dates = matrix_page.week_ends(now)
    with ctx.open_db() as db:
        model = db.load_model()
        trend = matrix_page.go_live_trend(db.level_history(), matrix, dates)
        evidence, automated = _evidence(db)
    table_rows = rulebook.rows(model, automated)
    wiki_files = paste.files(ctx.settings, rulebook.STEM)
    for name, dialect in wiki_files:
        atomic_write(out_dir / name, rulebook.wiki_page(table_rows, now[:10], dialect))
    paste.remove_stale(out_dir, rulebook.STEM, wiki_files)
    atomic_write(out_dir / rulebook.HTML_FILE, rulebook.storage_table(table_rows) + "\n")
    commit = gitops.head(ctx.data_dir, DB_FILE)
    generated = now[:16].replace("T", " ") + " UTC"
    items = matrix_page.open_items(items)
    split = matrix_page.needs_split(matrix, items)
    names = matrix_page.flow_files(list(dict.fromkeys(f["flow"] for f in flows)))
    written = set()
    flow_piece: tuple[int, list[str]] = (0, [])

    def flush() -> None:  # one flow's file, whole: a few hundred KB
        number, pieces = flow_piece
        if number:
            with atomic_stream(out_dir / names[number - 1]) as flow_fh:
                flow_fh.writelines(pieces)
            written.add(names[number - 1])

    with atomic_stream(out_dir / matrix_page.HTML_FILE) as fh:
        for where, piece in matrix_page.render_files(
                matrix, flows, items, trend=trend, dates=dates, generated=generated,
                commit=commit, split=split, evidence=evidence):
            if not where:
                fh.write(piece)
                continue
            if where != flow_piece[0]:
                flush()
                flow_piece = (where, [])
            flow_piece[1].append(piece)
        flush()
    for path in out_dir.glob("sre_matrix.*.html"):
        if matrix_page.is_flow_file(path.name) and path.name not in written:
            path.unlink(missing_ok=True)  # a flow that left, or a matrix in one file again
    shown = (f"each flow's heatmap in a file of its own ({names[0]}, …; the whole matrix "
             "would be too large to open as one file)" if split and names else
             "the matrix as a heatmap per flow")
    return [
        paste.summary(wiki_files, "the maturity model, "
                      + reports.counted(len(table_rows), "level"))
        + f" (paste it like confluence_page.txt); {rulebook.HTML_FILE}: the same in storage "
        "format",
        f"{matrix_page.HTML_FILE}: every flow ready or blocked for go-live, and {shown} (open "
        "it in a browser)",
    ]


def update_confluence(ctx: Context) -> None:
    """Bring the Rulebook and matrix pages whose ids are set up to date (one read each, a
    write only when the table changed), or say why they are skipped."""
    settings = ctx.settings
    wanted = [(name, title) for name, title in PAGE_SETTINGS.items() if settings.get(name)]
    if not wanted:
        return
    missing = [m for m in settings.confluence_missing() if m != "CONFLUENCE_PAGE_ID"]
    if missing:
        ctx.notice(f"Confluence pages {', '.join(repr(t) for _n, t in wanted)} skipped: "
                   f"{', '.join(missing)} not set")
        return
    from sre_maturity.clients import confluence
    from sre_maturity.render import kept_table, storage_page
    from sre_maturity.rules import views
    with ctx.open_db() as db:
        model = db.load_model()
        matrix, flows = views.matrix_rows(db)
        # Rows the tool once wrote: they leave the table when their level or asset retires.
        known_levels = {(storage_page.fold(c), storage_page.fold(f"L{level}"))
                        for c, level in db.level_specs()}
        pairs = db.flow_assets_ever()
        categories = db.categories_ever()
        evidence, automated = _evidence(db)
    fold = storage_page.fold
    known_assets = {(fold(f), fold(a)) for f, a in pairs}
    known_assets |= {(fold(f), fold(matrix_page.WEAKEST_LINK)) for f, _a in pairs}
    known_assets.add((fold(matrix_page.LEGEND_LABEL), fold(matrix_page.LEGEND)))
    known_assets.add((fold(matrix_page.LEGEND_LABEL), fold(matrix_page.MARKS_LEGEND)))
    client = confluence.client_from_settings(settings)
    try:
        for name, title in wanted:
            if name == RULEBOOK_SETTING:
                edit = kept_table.table_edit(
                    title, storage_page.has_columns(*rulebook.SIGNATURE),
                    rulebook.storage_table(rulebook.rows(model, automated)), rulebook.KEY,
                    known_levels)
            else:
                edit = kept_table.table_edit(
                    title, storage_page.has_columns(*matrix_page.SIGNATURE),
                    matrix_page.confluence_table(matrix, flows, client.flavour, evidence),
                    matrix_page.KEY, known_assets, {fold(c) for c in categories})
            result = confluence.update_page(client, settings.text(name), edit)
            if result["changed"]:
                ctx.print(f"confluence: '{title}' page updated to version {result['version']} "
                          f"({result['summary']})")
            else:
                ctx.print(f"confluence: '{title}' table already up to date (no new version)")
    finally:
        client.close()


def _evidence(db) -> tuple[dict, dict[tuple[str, int, int], list[str]]]:
    """What the pages show of the checks (SPEC §12): :class:`views.Shown` of every checked
    cell, and for each automated question ``(capability, level, question)`` its checks, each
    with the assets whose verdict of it is overridden now."""
    from datetime import UTC, datetime

    from sre_maturity.rules import evidence as ev
    from sre_maturity.rules import views

    checks = db.load_checks()
    if not checks:
        return {}, {}
    now = datetime.now(UTC)
    overridden: dict[str, list[str]] = {}
    for o in db.load_overrides():
        if ev.active(o, now):
            overridden.setdefault(o.check, []).append(o.asset)
    automated: dict[tuple[str, int, int], list[str]] = {}
    for c in checks:
        words = c.name + (" (advisory)" if c.mode == "advisory" else "")
        if c.name in overridden:
            words += f" (overridden for {', '.join(overridden[c.name])})"
        automated.setdefault((c.capability, c.level, c.question), []).append(words)
    return views.shown_evidence(db, now=now), automated


def _signature(name: str) -> tuple[str, ...]:
    return rulebook.SIGNATURE if name == RULEBOOK_SETTING else matrix_page.SIGNATURE


def check(settings) -> list[tuple[bool | None, str]]:
    """For ``check``: one line per page id set (ok, or the reason): the page can be read and
    parsed, and where the table is or will go."""
    from sre_maturity.clients import confluence
    from sre_maturity.render import storage_page
    from sre_maturity.support.errors import ConfigError, ConfluenceError

    try:
        wanted = [(name, title) for name, title in PAGE_SETTINGS.items() if settings.get(name)]
        if not wanted:
            return []
        missing = [m for m in settings.confluence_missing() if m != "CONFLUENCE_PAGE_ID"]
    except ConfigError as exc:
        return [(False, f"confluence pages: {exc}")]
    if missing:
        return [(False, f"confluence pages: {', '.join(missing)} not set (needed by "
                        f"{', '.join(name for name, _t in wanted)})")]
    out: list[tuple[bool | None, str]] = []
    try:
        client = confluence.client_from_settings(settings)
    except ConfluenceError as exc:
        return [(False, f"confluence pages: {exc}")]
    try:
        for name, title in wanted:
            try:
                page = client.get_page(settings.get(name))
                found = storage_page.locate(storage_page.load(page["body"]), title,
                                            storage_page.has_columns(*_signature(name)))
            except ConfluenceError as exc:
                out.append((False, f"confluence: {name}: {exc}"))
                continue
            where = f"{name}: page '{page['title']}' v{page['version']}"
            if found.table is not None:
                state = f"table '{title}' found"
            elif found.heading is not None:
                state = f"heading '{title}' has no table yet: the table will be added under it"
            else:
                state = f"heading '{title}' not found: heading and table will be appended"
            out.append((True, f"confluence: {where}, {state}"))
    finally:
        client.close()
    return out

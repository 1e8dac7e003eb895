"""The pages to look at — the Rulebook and the maturity matrix — written by ``report`` as files,
and kept current on Confluence by ``report --push`` and ``sync`` when their page ids are set.

Files: ``confluence_rulebook.txt`` (wiki markup to paste) and ``confluence_rulebook.html``
(its storage-format twin) from :mod:`rulebook`; ``sre_matrix.html`` from :mod:`matrix_page`.
Pages: ``CONFLUENCE_RULEBOOK_PAGE_ID`` gets the Rulebook table under the heading
``SRE Maturity Model``, ``CONFLUENCE_MATRIX_PAGE_ID`` the matrix table under
``SRE Maturity Matrix``, with the to-do table's rules (byte-exact splice, no version when the
table is unchanged, 409 re-read and re-applied: :func:`confluence.update_page_table`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import matrix_page
import rulebook
from context import Context

log = logging.getLogger("sre_tracker.pages")

RULEBOOK_SETTING = "CONFLUENCE_RULEBOOK_PAGE_ID"
MATRIX_SETTING = "CONFLUENCE_MATRIX_PAGE_ID"
PAGE_SETTINGS = {RULEBOOK_SETTING: rulebook.TITLE, MATRIX_SETTING: matrix_page.CONFLUENCE_TITLE}


def write_stream(path: Path, chunks: Iterable[str]) -> None:
    """Write text given in pieces via a temporary file: never half a file, never the whole
    text in memory."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            for chunk in chunks:
                fh.write(chunk)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_files(ctx: Context, out_dir: Path, matrix: Sequence[Mapping],
                flows: Sequence[Mapping], items: Sequence[Mapping]) -> list[str]:
    """Write the Rulebook files and ``sre_matrix.html``; return the summary lines to print.

    ``matrix``, ``flows`` and ``items`` are the read model ``report`` already holds; the model
    and the assessment history (for the trend) are read here.
    """
    import gitops
    from csvfiles import atomic_write
    from database import DB_FILE, now_iso

    now = now_iso()
    dates = matrix_page.week_ends(now)
    with ctx.open_db() as db:
        model = db.load_model()
        trend = matrix_page.go_live_trend(db.level_history(), matrix, dates)
    table_rows = rulebook.rows(model)
    atomic_write(out_dir / rulebook.TEXT_FILE, rulebook.wiki_page(table_rows, now[:10]))
    atomic_write(out_dir / rulebook.HTML_FILE, rulebook.storage_table(table_rows) + "\n")
    commit = gitops.head(ctx.data_dir, DB_FILE)
    generated = now[:16].replace("T", " ") + " UTC"
    write_stream(out_dir / matrix_page.HTML_FILE,
                 matrix_page.render(matrix, flows, items, trend=trend, dates=dates,
                                    generated=generated, commit=commit))
    return [
        f"{rulebook.TEXT_FILE}: the maturity model, {len(table_rows)} levels (paste it like "
        f"confluence_page.txt); {rulebook.HTML_FILE}: the same in storage format",
        f"{matrix_page.HTML_FILE}: the matrix as a heatmap per flow (open it in a browser)",
    ]

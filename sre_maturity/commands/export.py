"""The ``export`` command: the matrix (or with ``--items``, every action item) as CSV, to
stdout or to a file (never over the tool's own files; see :mod:`outputs`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sre_maturity.support.context import CommandOptions, Context
from sre_maturity.support.errors import EXIT_OK


@dataclass(frozen=True)
class ExportOptions(CommandOptions):
    """What ``export`` writes, and where ("-": stdout)."""

    items: bool = False
    output: str = "-"


def run(opts: ExportOptions, ctx: Context) -> int:
    """Write the matrix (or with --items, every action item) to CSV."""
    from sre_maturity.render import reports
    from sre_maturity.rules import views
    from sre_maturity.store.csvfiles import atomic_write
    from sre_maturity.support.outputs import check_output_file

    if opts.output != "-":
        check_output_file("export -o", opts.output, ctx.data_dir)
    if opts.items:
        return _export_items(opts, ctx)
    with views.no_cycle_collection(), ctx.open_db() as db:
        frame = views.matrix_frame(db)
        text, rows = reports.matrix_frame_csv(frame), len(frame)
    if opts.output == "-":
        ctx.data.write(text)
    else:
        path = Path(opts.output)
        atomic_write(path, text)
        ctx.print(f"wrote {path} ({rows} matrix rows)")
    return EXIT_OK


def _export_items(opts: ExportOptions, ctx: Context) -> int:
    """``export --items``: the items written as they are read, a few thousand at a time (a
    file through a temporary sibling, so an error leaves none half-written)."""
    from contextlib import nullcontext

    from sre_maturity.render import reports
    from sre_maturity.rules import views
    from sre_maturity.store.csvfiles import atomic_stream

    rows = 0
    path = Path(opts.output)
    with views.no_cycle_collection(), ctx.open_db() as db, \
            (nullcontext(ctx.data) if opts.output == "-" else atomic_stream(path)) as out:
        for text, count in reports.items_csv(views.iter_items(db)):
            out.write(text)
            rows += count
    if opts.output != "-":
        ctx.print(f"wrote {path} ({rows} items)")
    return EXIT_OK

"""The ``status`` command: the matrix, the flows' weakest links and the open items, as a table,
CSV or JSON, now or (``--as-of``) as they were at a date or commit.

The text itself is rendered by :mod:`reports`; this module reads the data and picks what to show.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TextIO

from context import CommandOptions, Context
from errors import EXIT_OK


@dataclass(frozen=True)
class StatusOptions(CommandOptions):
    """What ``status`` was asked to show."""

    flow: str | None = None
    asset: str | None = None
    format: str = "table"
    as_of: str | None = None


def run(opts: StatusOptions, ctx: Context) -> int:
    """Show the matrix, the flows' weakest links and the open items."""
    import reports
    import views

    with ctx.open_db_as_of(opts.as_of) as db:
        matrix, flows = views.matrix(db)
        matrix, flows, _items = _filter(matrix, flows, [], opts.flow, opts.asset)
        summary = views.summary(db, matrix)
    if opts.format == "json":
        ctx.out.write(reports.status_json(matrix, flows, summary))
    elif opts.format == "csv":
        ctx.out.write(reports.matrix_csv(matrix))
    else:
        colour = _use_colour(ctx.out)
        if opts.as_of:
            ctx.print(f"as of {opts.as_of}")
        if opts.asset:
            ctx.out.write(reports.asset_detail(matrix, colour))
            ctx.print()
            ctx.print("\n".join(reports.summary_lines(summary)))
        else:
            ctx.out.write(reports.status_table(matrix, flows, summary, colour))
    return EXIT_OK


def _filter(matrix, flows, items, flow: str | None, asset: str | None):
    from names import resolve

    if flow:
        flow = resolve("flow", flow, {f["flow"] for f in flows})
        matrix = [e for e in matrix if flow in e["flows"]]
        flows = [f for f in flows if f["flow"] == flow]
        names = {e["asset"] for e in matrix}
        items = [it for it in items if it["asset"] in names]
    if asset:
        asset = resolve("asset", asset, {e["asset"] for e in matrix},
                        f"it is not in flow {flow}" if flow else "")
        matrix = [e for e in matrix if e["asset"] == asset]
        own = set(matrix[0]["flows"]) if matrix else set()
        flows = [f for f in flows if f["flow"] in own]
        items = [it for it in items if it["asset"] == asset]
    return matrix, flows, items


def _use_colour(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    return hasattr(stream, "isatty") and stream.isatty()

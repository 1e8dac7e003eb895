"""The ``status`` command: the matrix, the flows' weakest links and the open items, as a table,
CSV or JSON, now or (``--as-of``) as they were at a date or commit.

The text itself is rendered by :mod:`reports`; this module reads the data and picks what to show.
The table of every asset (or of a flow's) is drawn from numbers per asset and category; the
JSON, the CSV and one asset's detail go through the matrix entries, as tuples.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from sre_maturity.support.context import CommandOptions, Context
from sre_maturity.support.errors import EXIT_OK

if TYPE_CHECKING:
    from sre_maturity.rules import maturity as mt
@dataclass(frozen=True)
class StatusOptions(CommandOptions):
    """What ``status`` was asked to show."""

    flow: str | None = None
    asset: str | None = None
    format: str = "table"
    as_of: str | None = None


def run(opts: StatusOptions, ctx: Context) -> int:
    """Show the matrix, the flows' weakest links and the open items."""
    from sre_maturity.rules.views import no_cycle_collection

    with no_cycle_collection():
        return _run(opts, ctx)


def _run(opts: StatusOptions, ctx: Context) -> int:
    from sre_maturity.render import reports
    from sre_maturity.rules import views
    rows: list[mt.MatrixRow] = []
    flows: list[dict] = []
    with ctx.open_db_as_of(opts.as_of) as db:
        levels = views.open_levels(db)  # counted for the matrix and for the summary
        if opts.format == "table" and not opts.asset:
            grid, flow_grid = views.category_grid(db, levels=levels)
            grid, flow_grid = _filter_grid(grid, flow_grid, opts.flow)
            summary = views.summary_of(db, grid, *_grid_counts(grid), levels=levels)
            shown = views.shown_evidence(db, grid)
            model = db.load_model() if shown else {}
            marks = {(a, model[c].category): mark for (a, c), sh in shown.items()
                     for mark in (sh.mark,) if mark and c in model}
        else:
            rows, flows = views.matrix_rows(db, levels=levels)
            rows, flows = _filter(rows, flows, opts.flow, opts.asset)
            summary = views.summary(db, rows, levels=levels)
            shown = views.shown_evidence(db, {r.asset for r in rows}) \
                if opts.format != "csv" else {}
    if opts.format == "json":
        reports.write_status_json(ctx.data, rows, flows, summary,
                                  {k: sh.summary for k, sh in shown.items()})
    elif opts.format == "csv":
        reports.write_matrix_rows_csv(ctx.data, rows)
    else:
        colour = _use_colour(ctx.data)
        if opts.as_of:
            ctx.print_data(f"as of {opts.as_of}")
        if opts.asset:
            from sre_maturity.rules import maturity as mt
            matrix = [dict(zip(mt.MATRIX_FIELDS, r, strict=True)) for r in rows]
            ctx.data.write(reports.asset_detail(matrix, colour, shown))
            ctx.print_data()
            ctx.print_data("\n".join(reports.summary_lines(summary)))
        else:
            ctx.data.write(reports.status_table(grid, flow_grid, summary, colour, marks))
    return EXIT_OK


def _filter(rows: list[mt.MatrixRow], flows: list[dict], flow: str | None, asset: str | None
            ) -> tuple[list[mt.MatrixRow], list[dict]]:
    """The matrix rows and flow entries of ``flow`` and/or ``asset`` (None: all)."""
    from sre_maturity.support.names import resolve

    if flow:
        flow = resolve("flow", flow, {f["flow"] for f in flows})
        rows = [r for r in rows if flow in r.flows]
        flows = [f for f in flows if f["flow"] == flow]
    if asset:
        asset = resolve("asset", asset, {r.asset for r in rows},
                        f"it is not in flow {flow}" if flow else "")
        rows = [r for r in rows if r.asset == asset]
        own = set(rows[0].flows) if rows else set()
        flows = [f for f in flows if f["flow"] in own]
    return rows, flows


def _filter_grid(grid: dict, flow_grid: dict, flow: str | None) -> tuple[dict, dict]:
    """The numbers of :func:`views.category_grid` for the assets of ``flow`` (None: all)."""
    if not flow:
        return grid, flow_grid
    from sre_maturity.support.names import resolve

    flow = resolve("flow", flow, set(flow_grid))
    return ({a: numbers for a, numbers in grid.items() if flow in numbers[1]},
            {flow: flow_grid[flow]})


def _grid_counts(grid: dict) -> tuple[int, Counter[str]]:
    """How many capabilities the grid's assets have, and how many of their cells are in each
    state (as the matrix entries would count them)."""
    from sre_maturity.rules import maturity as mt
    cells = assessed = na = 0
    for _target, _flows, cats in grid.values():
        for size, n_assessed, n_na, _low, _rag in cats.values():
            cells += size
            assessed += n_assessed
            na += n_na
    states: Counter[str] = Counter()
    if cells:
        states.update({mt.ASSESSED: assessed, mt.NOT_APPLICABLE: na,
                       mt.NOT_ASSESSED: cells - assessed - na})
    return (cells // len(grid) if grid else 0), states


def _use_colour(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    return hasattr(stream, "isatty") and stream.isatty()

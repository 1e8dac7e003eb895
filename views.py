"""The read model: what commands show, computed from the database (matrix entries, flow
roll-ups, items with their flows) and the readable ``sre_matrix.csv`` written from it."""

from __future__ import annotations

from context import Context


def write_matrix_file(ctx: Context, db) -> None:
    """Rewrite sre_matrix.csv from the database (deterministic, for diffs and review)."""
    import maturity as mt
    import reports
    from csvfiles import atomic_write
    from database import MATRIX_FILE, now_iso

    matrix, _flows = mt.matrix_view(db.load_model(), db.load_assets(), db.load_cells(),
                                    db.open_item_cells(), now_iso()[:10])
    atomic_write(ctx.data_dir / MATRIX_FILE, reports.matrix_csv(matrix))


def load_view(db, today: str | None = None):
    """Matrix entries, flow roll-ups and item dicts (with their flows) from the database."""
    import maturity as mt
    from database import now_iso

    today = today or now_iso()[:10]
    model, assets = db.load_model(), db.load_assets()
    items = db.load_items()
    cells = db.load_cells()
    for it in items:
        info = assets.get(it["asset"])
        it["flows"] = info.flow_label if info else ""
        it["team"] = info.team if info else ""
        cell = cells.get((it["asset"], it["capability"]))
        it["current_level"] = cell.level if cell is not None else None
    live = [it for it in items if mt.is_open(it["state"]) and it["asset"] in assets
            and it["capability"] in model]
    matrix, flows = mt.matrix_view(model, assets, cells, live, today)
    return matrix, flows, [it for it in items if it["asset"] in assets or
                           not mt.is_open(it["state"])]

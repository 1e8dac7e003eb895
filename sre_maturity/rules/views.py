"""The read model: what commands show, computed from the database (matrix entries, flow
roll-ups, summary counts, items with their flows) and the readable ``sre_matrix.csv``.

Work follows what a command shows: the matrix comes from the cells and one aggregate row per
cell with open items (never a row per item); the summary from counts grouped by level; items
are read as rows only by the commands that print them, and the report files are written one row
at a time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

from sre_maturity.store.csvfiles import atomic_stream
from sre_maturity.support.context import Context

if TYPE_CHECKING:
    from datetime import datetime

    import pandas as pd

    from sre_maturity.rules import evidence as ev
    from sre_maturity.rules import maturity as mt
    from sre_maturity.rules.checkspec import CheckRow, EvidenceRecord, Override
# Above this many assets changed at once, sre_matrix.csv is written whole, not patched.
PATCH_ASSETS = 100
# The stored item fields report's files read (the rest of an item dict comes from the model).
REPORT_ITEM_FIELDS = ("asset", "capability", "level", "state", "work_status", "rally_oid",
                      "rally_id", "rally_url")


@contextmanager
def no_cycle_collection() -> Iterator[None]:
    """Python's cyclic garbage collector paused: the matrix is some 10^5 new tuples and lists
    holding no reference cycle, which the collector would otherwise walk again and again while
    they are made (a tenth of ``status``'s time at 2,000 assets)."""
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _today(today: str | None) -> str:
    from database import now_iso

    return today or now_iso()[:10]


def matrix(db, today: str | None = None, assets: Iterable[str] | None = None
           ) -> tuple[list[dict], list[dict]]:
    """The matrix entries and the flow roll-ups (as ``status --format json`` shows them),
    of every active asset or only of ``assets``."""
    from sre_maturity.rules import maturity as mt
    model, active = db.load_model(), db.load_assets()
    if assets is not None:
        wanted = set(assets)
        active = {a: info for a, info in active.items() if a in wanted}
    with no_cycle_collection():
        cells = {(r[0], r[1]): r for r in db.matrix_cells(assets)}
        return mt.matrix_view(model, active, cells, (), _today(today),
                              counts=open_counts(db, model, assets))


def matrix_rows(db, today: str | None = None, *, levels: Sequence | None = None,
                assets: Iterable[str] | None = None) -> tuple[list[mt.MatrixRow], list[dict]]:
    """As :func:`matrix`, the entries as :class:`maturity.MatrixRow` tuples, for what goes
    through every entry (the JSON and CSV of ``status``, export, the report's summary and
    sre_matrix.html); ``levels`` as :func:`open_counts` takes them; ``assets``: only those
    assets' entries (and their flows' roll-ups of them)."""
    from sre_maturity.rules import maturity as mt
    model, active = db.load_model(), db.load_assets()
    if assets is not None:
        wanted = set(assets)
        active = {a: info for a, info in active.items() if a in wanted}
    cells = {(r[0], r[1]): r for r in db.matrix_cells(assets)}
    return mt.matrix_rows(model, active, cells, _today(today),
                          open_counts(db, model, assets, levels=levels))


def gate(db, assets: Iterable[str], *, allow_unassessed: bool = False,
         today: str | None = None) -> mt.Gate:
    """The go-live gate of ``assets`` (a flow's, or one): :func:`maturity.go_live_gate` over
    their matrix rows and their open and done items, as ``gate`` shows it."""
    from sre_maturity.rules import maturity as mt
    names = set(assets)
    rows, _flows = matrix_rows(db, today, assets=names)
    return mt.go_live_gate(rows, items(db, (mt.OPEN, mt.DONE), names),
                           allow_unassessed=allow_unassessed)


def category_grid(db, today: str | None = None, *, levels: Iterable[tuple] | None = None
                  ) -> tuple[dict[str, tuple], dict[str, dict[str, tuple]]]:
    """The terminal matrix's numbers per asset and category and per flow and category
    (:func:`maturity.category_grid`), from the cells' levels and one aggregate row per cell
    with open items (``levels`` as :func:`open_counts` takes them): no entry per
    asset x capability."""
    from sre_maturity.rules import maturity as mt
    model = db.load_model()
    return mt.category_grid(model, db.load_assets(), db.cell_levels(), _today(today),
                            open_counts(db, model, levels=levels))


def matrix_frame(db, today: str | None = None) -> pd.DataFrame:
    """The maturity matrix as a pandas DataFrame, for exports and analysis off the hot paths.

    One row per active asset × capability (model order), indexed by ``(asset, capability)``;
    the columns are :data:`reports.MATRIX_FRAME_COLUMNS` minus the index: ``flows`` (joined
    with ``", "``), ``team``, ``category``, ``state`` (Assessed, Not Assessed, Not
    Applicable), ``level`` (nullable integer: <NA> when not assessed or not applicable),
    ``target_level``, ``go_live_level``, ``rag``, ``open_items``, who and when assessed, and
    the not-applicable reason and expiry.
    The asset × capability grid of levels is ``matrix_frame(db)["level"].unstack()``.
    """
    import pandas as pd

    from sre_maturity.render.reports import MATRIX_FRAME_COLUMNS

    rows, _flows = matrix_rows(db, today)
    # The rows hold MATRIX_FRAME_COLUMNS in order (and then ``why``); flows joined.
    width = len(MATRIX_FRAME_COLUMNS)
    records = [(r[0], ", ".join(r[1]), *r[2:width]) for r in rows]
    frame = pd.DataFrame.from_records(records, columns=list(MATRIX_FRAME_COLUMNS))
    frame["level"] = frame["level"].astype("Int64")
    return frame.set_index(["asset", "capability"])


def open_levels(db, assets: Iterable[str] | None = None) -> list[tuple[str, str, str, str | None]]:
    """The open items' levels per cell (of ``assets``), one aggregate row per cell with open
    items (:meth:`database.Database.open_levels_by_cell`): what :func:`open_counts` and
    :func:`summary_of` count, read once for both."""
    return list(db.open_levels_by_cell(assets))


def open_counts(db, model: Mapping, assets: Iterable[str] | None = None, *,
                levels: Iterable[tuple[str, str, str, str | None]] | None = None
                ) -> dict[tuple[str, str], tuple[int, int]]:
    """(open items, of which Red) per cell with open items, from one aggregate row per cell
    (``levels`` from :func:`open_levels`, read here when not given)."""
    go_live = {cap.name: frozenset(str(lv) for lv, s in cap.levels.items() if s.go_live)
               for cap in model.values()}
    counts = {}
    seen: dict[tuple[str, str], tuple[int, int]] = {}  # few distinct level sets per capability
    for asset, capability, of_cell, _done in (db.open_levels_by_cell(assets) if levels is None
                                              else levels):
        n = seen.get((capability, of_cell))
        if n is None:
            red = go_live.get(capability, frozenset())
            n = seen[(capability, of_cell)] = (len(of_cell), sum(d in red for d in str(of_cell)))
        counts[(asset, capability)] = n
    return counts


def summary(db, rows: Iterable[mt.MatrixRow], assets: Iterable[str] | None = None, *,
            levels: Sequence | None = None) -> dict:
    """The summary counts of ``reports.summarise`` for the matrix ``rows``
    (:func:`matrix_rows`), the open items counted by SQL (only those of ``assets``; default:
    the rows' assets; ``levels`` as :func:`summary_of` takes them)."""
    rows = list(rows)
    names = {r.asset for r in rows} if assets is None else set(assets)
    return summary_of(db, names, len({r.capability for r in rows}),
                      Counter(r.state for r in rows), levels=levels)


def summary_of(db, assets: Iterable[str], capabilities: int, states: Mapping[str, int], *,
               levels: Iterable[tuple[str, str, str, str | None]] | None = None) -> dict:
    """As :func:`summary`, from counts already made: the ``assets`` shown, how many
    ``capabilities`` they have, and how many of their cells are in each of the ``states``;
    the open items are counted from ``levels`` (:func:`open_levels`, read here when not
    given), only those of ``assets``."""
    from sre_maturity.rules import maturity as mt
    names = set(assets)
    if levels is None:
        levels = db.open_levels_by_cell(names)
    # Cells with the same open and done levels of a capability count alike: tally those first.
    alike = Counter((capability, of_cell, done or "")
                    for asset, capability, of_cell, done in levels if asset in names)
    specs = db.level_specs()
    todo = red = done_n = 0
    owners: Counter[str] = Counter()
    for (capability, of_cell, done), n in alike.items():
        for digit in str(of_cell):
            spec = specs.get((capability, int(digit)))
            todo += n
            red += n if spec and spec.go_live else 0
            done_n += n if digit in done else 0
            owners[spec.owner if spec else "Asset"] += n
    return {
        "assets": len(names),
        "capabilities": capabilities,
        "assessed": states.get(mt.ASSESSED, 0),
        "not_assessed": states.get(mt.NOT_ASSESSED, 0),
        "not_applicable": states.get(mt.NOT_APPLICABLE, 0),
        "open_items": todo,
        "open_red": red,
        "open_amber": todo - red,
        "awaiting_reassessment": done_n,
        "by_owner": dict(sorted(owners.items())),
    }


def items(db, states: Iterable[str] | None = None,
          assets: Iterable[str] | None = None) -> list[dict]:
    """Item dicts with their ``flows``, ``team`` and ``current_level`` (optionally only those
    in ``states`` / of ``assets``); open items of assets that left flows.csv are left out."""
    return list(iter_items(db, states, assets))


def iter_items(db, states: Iterable[str] | None = None,
               assets: Iterable[str] | None = None) -> Iterator[dict]:
    """As :func:`items`, one at a time."""
    return item_dicts(db, item_rows(db, states, assets))


def item_rows(db, states: Iterable[str] | None = None, assets: Iterable[str] | None = None,
              *, order: Callable[..., Any] | None = None, fields: Sequence[str] | None = None
              ) -> list:
    """The stored item rows (no words) that :func:`items` shows; with ``order`` (a sort key
    over an item's priority, go-live flag, flows, asset, capability and level, such as
    ``reports.page_order``), sorted by it; ``fields``: only these stored fields (see
    :meth:`database.Database.item_rows`; default all). Only these small rows are held while
    sorting; :func:`item_dicts` then makes the dicts one at a time."""
    active = db.load_assets()
    rows = _shown_rows(db, active, states, assets, fields, ordered=order is None)
    if order is not None:
        rows.sort(key=_row_order(db, active, order))
    return rows


def _shown_rows(db, active: Mapping, states: Iterable[str] | None,
                assets: Iterable[str] | None, fields: Sequence[str] | None, *,
                ordered: bool) -> list:
    """``db.item_rows`` without the open items of assets no longer ``active``."""
    from sre_maturity.rules import maturity as mt
    assets = None if assets is None else list(assets)
    rows = db.item_rows(states, assets, fields=fields, ordered=ordered)
    if assets is not None and active.keys() >= set(assets):
        return rows  # every asset asked for is active (a flow's, say): nothing to leave out
    from database import ITEM_FIELDS

    state = (fields or ITEM_FIELDS).index("state")  # a row is a tuple of fields, in order
    return [r for r in rows if r[0] in active or not mt.is_open(r[state])]


def _row_order(db, active: Mapping, order: Callable[..., Any]) -> Callable[[Any], Any]:
    """The sort key of an item row for ``order`` (see :func:`item_rows`)."""
    ranks = {k: (spec.priority, spec.go_live) for k, spec in db.level_specs().items()}
    labels = {a: info.flow_label for a, info in active.items()}

    def key(r) -> Any:
        asset, capability, level = r[:3]  # database.ITEM_FIELDS starts with the key
        priority, go_live = ranks.get((capability, level), ("P3", False))
        return order(priority, go_live, labels.get(asset, ""), asset, capability, level)

    return key


def item_dicts_by_asset(db, groups: Iterable[Iterable[str]], states: Iterable[str], *,
                        order: Callable[..., Any], fields: Sequence[str]) -> Iterator[dict]:
    """The item dicts (as :func:`item_dicts`) of each group of assets in turn, by asset and
    then ``order`` (as :func:`item_rows`): one read per group and only its rows held, so
    that 10^5 items are walked a flow at a time."""
    active = db.load_assets()
    key = _row_order(db, active, order)
    states = list(states)
    make = _item_dict(db, fields)
    for group in groups:
        rows = _shown_rows(db, active, states, group, fields, ordered=False)
        rows.sort(key=lambda r: (r[0], key(r)))  # r[0]: the asset
        yield from map(make, rows)


def item_keys(db, assets: Iterable[str] | None = None) -> set[tuple[str, str]]:
    """(Task, Asset Name) of every stored item (of ``assets``; None: of all), open or closed:
    the rows of the page's to-do table that are the tool's (any other row there is a
    person's)."""
    from sre_maturity.rules import maturity as mt
    return {(mt.task_name(capability, level), asset) for asset, capability, level, *_cell
            in db.item_rows(assets=assets, fields=("asset", "capability", "level"))}


def item_dicts(db, rows: Sequence, fields: Sequence[str] | None = None) -> Iterator[dict]:
    """Item dicts (the level's words, ``flows``, ``team``, ``current_level``) for stored rows
    (read with ``fields``, default all), made one at a time."""
    return map(_item_dict(db, fields), rows)


def _item_dict(db, fields: Sequence[str] | None) -> Callable[[Any], dict]:
    """A row of :func:`item_rows` (read with ``fields``) -> its item dict."""
    labels = {a: (info.flow_label, info.team) for a, info in db.load_assets().items()}
    words = db.item_words(fields)

    def make(r) -> dict:
        it = words(r)
        it["flows"], it["team"] = labels.get(it["asset"], ("", ""))
        return it

    return make


def load_view(db, today: str | None = None):
    """Matrix entries, flow roll-ups and every item dict (with its flows): for the few callers
    that compare whole views (``setup --dry-run``)."""
    entries, flows = matrix(db, today)
    return entries, flows, items(db)


# ---------------------------------------------------------------------------- files
def write_matrix_file(ctx: Context, db) -> None:
    """Rewrite sre_matrix.csv from the database (deterministic, for diffs and review).

    Streamed from the cells and one aggregate row per cell: no item is read, and no text of
    the whole file is held.
    """
    from database import MATRIX_FILE
    from sre_maturity.render import reports

    with no_cycle_collection():  # 10^5 rows, no reference cycle
        rows, _flows = matrix_rows(db)
    with atomic_stream(ctx.data_dir / MATRIX_FILE) as fh:
        reports.write_matrix_rows_csv(fh, rows)
    ctx.matrix_written()


def update_matrix_file(ctx: Context, db, touched: Iterable[tuple[str, str]]) -> None:
    """Bring sre_matrix.csv up to date after a change of the ``touched`` cells: their rows
    are computed again and every other row is copied as it is (rows whose Not Applicable mark
    has expired are recomputed too). Without a usable file (missing, another header, a touched
    row not in it), or when the change spans many assets (an ``assess --auto`` run), the whole
    file is written instead: streaming it is then cheaper than computing entries to patch."""
    import csv

    from database import MATRIX_FILE
    from sre_maturity.render import reports

    path = ctx.data_dir / MATRIX_FILE
    today = _today(None)
    touched = set(touched) | set(db.expired_cells(today))
    names = {a for a, _c in touched}
    if len(names) > PATCH_ASSETS:
        write_matrix_file(ctx, db)
        return
    entries, _flows = matrix(db, today, assets=names)
    fresh = {(reports.neutralise(e["asset"]), reports.neutralise(e["capability"])):
             reports.matrix_row(e) for e in entries if (e["asset"], e["capability"]) in touched}
    if not path.is_file() or len(fresh) != len(touched):
        write_matrix_file(ctx, db)
        return
    seen = 0
    with open(path, encoding="utf-8", newline="") as src, atomic_stream(path) as fh:
        read: list[str] = []  # the lines of the record the reader has just parsed

        def lines() -> Iterator[str]:
            for line in src:
                read.append(line)
                yield line

        rows = csv.reader(lines())
        if next(rows, None) != reports.MATRIX_COLUMNS:
            seen = -1
        else:
            out = reports.matrix_writer(fh)
            out.writerow(reports.MATRIX_COLUMNS)
            read.clear()
            for row in rows:
                new = fresh.get((row[0], row[4])) if len(row) > 4 else None
                if new is not None:
                    seen += 1
                    out.writerow(new)
                else:  # copied as it was written: cheaper than writing the parsed row again
                    fh.write("".join(read))
                read.clear()
        if seen != len(fresh):  # not the file this database wrote: rewrite it whole
            fh.seek(0)
            fh.truncate()
            whole, _flows = matrix_rows(db, today)
            reports.write_matrix_rows_csv(fh, whole)
    ctx.matrix_written()


class CellEvidence(NamedTuple):
    """What a cell's level rests on (SPEC §12): its applicable checks, how each stands now
    (:class:`evidence.CheckState`), the stored evidence by check name, and the level the rules
    give (:class:`evidence.Cell`) with the person's latest assessed level (None: none)."""

    checks: list[CheckRow]
    states: list[ev.CheckState]
    records: dict[str, EvidenceRecord]
    result: ev.Cell
    person_level: int | None
    overrides: dict[str, Override] = {}

    def failed(self, checks: Iterable[str] | None = None) -> tuple[tuple[str, str], ...]:
        """The gate checks (of ``checks``; None: all) that say no now, each with what it saw
        (an override: who overrode it and why)."""
        wanted = None if checks is None else set(checks)
        out = []
        for s in self.states:
            if not s.gate or s.says is not False or wanted is not None and s.check not in wanted:
                continue
            if s.override is not None:
                o = self.overrides.get(s.check)
                out.append((s.check, f"overridden no by {o.by}: {o.reason}" if o
                            else "overridden no"))
            else:
                record = self.records.get(s.check)
                out.append((s.check, record.detail if record else ""))
        return tuple(out)


def cell_evidence(db, keys: Iterable[tuple[str, str]], now: datetime, *,
                  overlay: Iterable[Any] = (), overlay_overrides: Iterable[Override] = ()
                  ) -> dict[tuple[str, str], CellEvidence]:
    """:class:`CellEvidence` of the cells ``keys`` (asset, capability) that a check applies
    to; ``overlay`` holds verdicts of a run not stored yet (a dry run, an assessment not yet
    confirmed): their definitive ones stand in for the stored evidence, as
    ``overlay_overrides`` for the stored overrides."""
    from sre_maturity.rules import evidence as ev
    from sre_maturity.rules import maturity as mt
    from sre_maturity.rules.checkspec import DEFINITIVE, EvidenceRecord

    keys = set(keys)
    overlay = list(overlay)
    names = {a for a, _c in keys}
    by_capability: dict[str, list[CheckRow]] = {}
    for check in db.load_checks():
        by_capability.setdefault(check.capability, []).append(check)
    if not keys or not by_capability:
        return {}
    model, assets, params = db.load_model(), db.load_assets(), db.load_asset_params()
    records = db.load_evidence(names)
    for v in overlay:
        if v.verdict in DEFINITIVE:
            records[(v.asset, v.check)] = EvidenceRecord(
                v.asset, v.check, v.verdict, v.detail, v.link or "", v.checked_at,
                v.valid_until or "", v.fingerprint)
    overrides = {(o.asset, o.check): o for o in db.load_overrides()}
    overrides.update({(o.asset, o.check): o for o in overlay_overrides})
    # The person's latest answer is the cell's own unless the checks moved it since.
    person: dict[tuple[str, str], tuple[str, int | None]] = {}
    by_checks = []
    for asset, capability, state, level, _until, by in db.cell_levels(names, by=True):
        if (asset, capability) in keys:
            if by == ev.CHECKS_ASSESSOR:
                by_checks.append((asset, capability))
            else:
                person[(asset, capability)] = (state, level)
    person.update(db.person_levels(by_checks, checks_source=ev.CHECKS_SOURCE))
    fingerprints = {(v.asset, v.check): v.fingerprint for v in overlay}
    out = {}
    for asset, capability in sorted(keys):
        info, cap = assets.get(asset), model.get(capability)
        if info is None or cap is None:
            continue
        teams = (info.team,) if info.team else ()
        checks = [c for c in by_capability.get(capability, ())
                  if ev.applies(c.applies_to, asset, teams, info.flows)]
        if not checks:
            continue
        states = ev.states_for(asset, teams, info.flows, checks, params.get(asset, {}),
                               records, overrides, now, fingerprints)
        state, level = person.get((asset, capability), (mt.NOT_ASSESSED, None))
        person_level = level if state == mt.ASSESSED else None
        questions = {lv: len(spec.questions) for lv, spec in cap.levels.items()}
        out[(asset, capability)] = CellEvidence(
            checks, states, {c.name: records[(asset, c.name)] for c in checks
                             if (asset, c.name) in records},
            ev.cell(questions, states, person_level), person_level,
            {c.name: overrides[(asset, c.name)] for c in checks if (asset, c.name) in overrides})
    return out


class Shown(NamedTuple):
    """How a cell's level shows what it rests on: the pinned ``evidence`` summary of
    ``status --format json``, the mark (:data:`evidence.MARKS`, ``""`` for none) and the
    gate checks that say no with what they saw (``(check, detail)``; an override's reason)."""

    summary: dict[str, object]
    mark: str
    failed: tuple[tuple[str, str], ...]


def shown_evidence(db, assets: Iterable[str] | None = None, now: datetime | None = None
                   ) -> dict[tuple[str, str], Shown]:
    """:class:`Shown` of every cell (of ``assets``) a check applies to. One read of the
    checks table and nothing more when there are no checks."""
    from datetime import UTC
    from datetime import datetime as moment

    from sre_maturity.rules import evidence as ev

    capabilities = {c.capability for c in db.load_checks()}
    if not capabilities:
        return {}
    names = list(db.load_assets()) if assets is None else list(assets)
    found = cell_evidence(db, {(a, c) for a in names for c in capabilities},
                          now or moment.now(UTC))
    return {key: Shown(ev.summary(seen.states, seen.result) or {},
                       ev.mark(seen.states, seen.result), seen.failed())
            for key, seen in found.items()}

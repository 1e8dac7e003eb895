"""Importing the CSVs (``setup --from-csv``): the definitions (flows, assets, capabilities,
questions) brought in line with ``flows.csv`` and ``maturity_model.csv``, and the bulk levels
of ``assessments.csv`` appended to the history.

Each function takes an open :class:`~database.Database` and runs inside the caller's
transaction. The statements that sync a definitions table live here with the rules for it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from database import Database, history_entry
from sre_maturity.rules import maturity as mt
from sre_maturity.rules.checkspec import AssetParams, CheckRow
from sre_maturity.store import schema
from sre_maturity.store.csvfiles import AssessmentRow, FlowRow, ModelRow
from sre_maturity.support.errors import InputError
from sre_maturity.support.names import unknown_message

__all__ = ["ImportReport", "check_definitions", "differences", "flow_definitions",
           "import_assessments", "import_checks", "import_definitions", "model_definitions",
           "param_definitions"]


@dataclass(frozen=True)
class _Definitions:
    """One kind of definition the CSVs hold: its table, key, written and compared columns."""

    table: str
    key: tuple[str, ...]
    columns: tuple[str, ...]  # written on import, in this order after the key
    compared: tuple[str, ...]  # a change here reports the row as updated (a prefix of columns)


_QUESTION_TEXT = ("criteria", "question", "owner", "priority", "go_live", "milestone")
KINDS = {kind.table: kind for kind in (
    _Definitions("assets", ("asset",), ("team",), ()),
    _Definitions("flows", ("flow", "asset"), ("team", "target_level", "position"),
                 ("team", "target_level")),
    _Definitions("capabilities", ("capability",), ("category", "position"), ("category",)),
    _Definitions("questions", ("capability", "level", "seq"), _QUESTION_TEXT, _QUESTION_TEXT),
)}
# How an import's output and the stale-CSV notice name a row of each table.
_NAMES: dict[str, Callable[[tuple], str]] = {
    "assets": lambda k: f"asset {k[0]}",
    "flows": lambda k: f"{k[0]}/{k[1]}",
    "capabilities": lambda k: f"capability {k[0]}",
    "questions": lambda k: f"{k[0]} L{k[1]} question {k[2]}",
}

_CHECK_TEXT = ("capability", "level", "question", "kind", "target", "expect", "valid_days",
               "applies_to", "mode", "fingerprint")
_CHECKS = _Definitions("checks", ("name",), (*_CHECK_TEXT, "position"), _CHECK_TEXT)
_PARAMS = _Definitions("asset_params", ("asset", "name"), ("value",), ("value",))
KINDS.update({_CHECKS.table: _CHECKS, _PARAMS.table: _PARAMS})
_NAMES.update({"checks": lambda k: f"check {k[0]}",
               "asset_params": lambda k: f"parameter {k[1]} of {k[0]}"})


@dataclass
class _SyncResult:
    """What one kind's import did: added (key, was archived), updated and archived keys."""

    added: list[tuple[tuple, bool]] = field(default_factory=list)
    updated: list[tuple] = field(default_factory=list)
    archived: list[tuple] = field(default_factory=list)


@dataclass
class ImportReport:
    """What an import of the CSVs added, updated and archived."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    archived: list[str] = field(default_factory=list)
    # What the import of checks.csv and assets.csv did, told apart from the flows and model.
    checks: ImportReport | None = None

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.archived
                    or (self.checks is not None and self.checks.changed))

    def note(self, result: _SyncResult, name: Callable[[tuple], str], *,
             updates: bool = True) -> None:
        """Add one kind's changes under its rows' names (updates left out when asked)."""
        self.added += [name(k) + (" (restored)" if restored else "")
                       for k, restored in result.added]
        if updates:
            self.updated += [name(k) for k in result.updated]
        self.archived += [name(k) for k in result.archived]


def flow_definitions(flows: list[FlowRow]) -> dict[str, dict[tuple, tuple]]:
    """The assets and flows rows ``flows.csv`` asks for: {table: {key: written values}}."""
    teams: dict[str, str] = {}
    for f in flows:
        if not teams.get(f.asset):  # an asset's team: the first flow row that names one
            teams[f.asset] = f.team
    return {"assets": {(a,): (t,) for a, t in teams.items()},
            "flows": {(f.flow, f.asset): (f.team, f.target_level, pos)
                      for pos, f in enumerate(flows)}}


def model_definitions(model: list[ModelRow]) -> dict[str, dict[tuple, tuple]]:
    """The capabilities and questions rows ``maturity_model.csv`` asks for."""
    categories: dict[str, str] = {}
    for m in model:
        categories.setdefault(m.capability, m.category)
    seqs: dict[tuple[str, int], int] = defaultdict(int)
    questions = {}
    for m in model:
        seqs[(m.capability, m.level)] += 1
        questions[(m.capability, m.level, seqs[(m.capability, m.level)])] = (
            m.criteria, m.question, m.owner, m.priority, int(m.go_live), m.milestone)
    return {"capabilities": {(c,): (cat, pos) for pos, (c, cat) in enumerate(categories.items())},
            "questions": questions}


def import_definitions(
    db: Database, flows: list[FlowRow], model: list[ModelRow], now: str
) -> ImportReport:
    """Bring flows and model in line with the CSVs: add, update text, archive what left.

    Runs inside the caller's transaction. Assessments are never touched.
    """
    report = ImportReport()
    wanted = {**flow_definitions(flows), **model_definitions(model)}
    report.note(_sync_definitions(db, KINDS["assets"], wanted["assets"], now), _NAMES["assets"],
                updates=False)
    report.note(_sync_definitions(db, KINDS["flows"], wanted["flows"], now), _NAMES["flows"])
    caps = _sync_definitions(db, KINDS["capabilities"], wanted["capabilities"], now)
    report.note(caps, _NAMES["capabilities"])
    qs = _sync_definitions(db, KINDS["questions"], wanted["questions"], now)
    if qs.updated:
        report.updated.append(f"{len(qs.updated)} question rows")
    # Questions of an archived capability are already said with the capability.
    caps_gone = {k[0] for k in caps.archived}
    q_gone = [k for k in qs.archived if k[0] not in caps_gone]
    if q_gone:
        report.archived.append(f"{len(q_gone)} question rows")
    if report.changed:
        # The merge driver takes the side imported last for a row both sides changed.
        db.set_meta("definitions_imported_at", now)
    return report


def check_definitions(checks: list[CheckRow]) -> dict[str, dict[tuple, tuple]]:
    """The checks rows ``checks.csv`` asks for: {"checks": {key: written values}}."""
    import json

    return {"checks": {(c.name,): (c.capability, c.level, c.question, c.kind, c.target,
                                   c.expect, c.valid_days,
                                   json.dumps(list(c.applies_to), ensure_ascii=False), c.mode,
                                   c.fingerprint, c.line) for c in checks}}


def param_definitions(assets: list[AssetParams]) -> dict[str, dict[tuple, tuple]]:
    """The asset_params rows ``assets.csv`` asks for: one per asset and column."""
    return {"asset_params": {(a.asset, name): (value,) for a in assets
                             for name, value in a.params.items()}}


def import_checks(db: Database, checks: list[CheckRow], assets: list[AssetParams],
                  now: str) -> ImportReport:
    """Bring the checks and the assets' parameters in line with checks.csv and assets.csv
    (empty lists when a file is absent: everything it held is archived). Runs inside the
    caller's transaction; the evidence already taken is kept (a changed definition voids it
    through its fingerprint, not by deletion)."""
    report = ImportReport()
    wanted = check_definitions(checks)["checks"]
    report.note(_sync_definitions(db, _CHECKS, wanted, now), _NAMES["checks"])
    params = param_definitions(assets)["asset_params"]
    result = _sync_definitions(db, _PARAMS, params, now)
    # One line per asset, not per parameter: "parameters of web" says where to look.
    for attr in ("added", "updated", "archived"):
        keys = [k[0] if attr == "added" else k for k in getattr(result, attr)]
        assets_named = dict.fromkeys(k[0] for k in keys)
        getattr(report, attr).extend(f"parameters of {a}" for a in assets_named)
    if report.changed:
        db.set_meta("definitions_imported_at", now)  # the merge driver's stamp, as above
    return report


def differences(db: Database, wanted: dict[str, dict[tuple, tuple]]) -> list[str]:
    """How the database's active definitions differ from ``wanted`` (as made by
    :func:`flow_definitions` / :func:`model_definitions`): ``2 assets not in the database:
    a, b``-style phrases, none when they agree. Read only."""
    found: dict[str, list[str]] = {"not in the database": [], "changed": [],
                                   "only in the database": []}
    for table, rows in wanted.items():
        kind = KINDS[table]
        have = {k: tuple(r[c] for c in kind.compared)
                for k, r in schema.definition_rows(db.conn, table, kind.key).items()
                if r["archived_at"] is None}
        compared = len(kind.compared)
        name = _NAMES[table]
        found["not in the database"] += [name(k) for k in rows if k not in have]
        found["changed"] += [name(k) for k in rows
                             if k in have and have[k] != rows[k][:compared]]
        found["only in the database"] += [name(k) for k in have if k not in rows]
    return [f"{label}: {', '.join(names[:4])}"
            + (f" (+{len(names) - 4} more)" if len(names) > 4 else "")
            for label, names in found.items() if names]


def _sync_definitions(db: Database, kind: _Definitions, wanted: dict[tuple, tuple],
                      now: str) -> _SyncResult:
    """Make ``kind``'s table hold ``wanted`` ({key: values of ``kind.columns``}): insert
    or update each row (restoring archived ones), archive the rows no longer wanted."""
    old = schema.definition_rows(db.conn, kind.table, kind.key)
    result = _SyncResult()
    compared = len(kind.compared)
    for key, values in wanted.items():
        row = old.get(key)
        if row is None or row["archived_at"] is not None:
            result.added.append((key, row is not None))
        elif tuple(row[col] for col in kind.compared) != values[:compared]:
            result.updated.append(key)
    schema.upsert_definitions(db.conn, kind.table, kind.key, kind.columns, wanted)
    result.archived = [key for key, row in old.items()
                       if key not in wanted and row["archived_at"] is None]
    schema.archive_definitions(db.conn, kind.table, kind.key, result.archived, now)
    return result


def import_assessments(
    db: Database, rows: list[AssessmentRow], assessor: str, now: str, source_name: str
) -> tuple[set[tuple[str, str]], list[str]]:
    """Apply bulk levels (SPEC §2, §11); returns (cells changed, skipped descriptions).

    The caller refreshes the items, passing the changed cells as re-assessed.
    """
    assets = {n.casefold(): n for n in schema.active_names(db.conn, "assets", "asset")}
    caps = {n.casefold(): n for n in schema.active_names(db.conn, "capabilities", "capability")}
    for row in rows:
        where = f"{source_name}:{row.line}, column"
        if row.asset.casefold() not in assets:
            raise InputError(f"{where} 'Asset Name': " + unknown_message(
                "asset", row.asset, assets.values(), "add it to flows.csv or fix the name"))
        if row.capability.casefold() not in caps:
            raise InputError(f"{where} 'Capability': " + unknown_message(
                "capability", row.capability, caps.values(),
                "add it to maturity_model.csv or fix the name"))
    cells = db.load_cells()
    skipped: list[str] = []
    entries: list[tuple] = []
    for row in rows:
        asset, cap = assets[row.asset.casefold()], caps[row.capability.casefold()]
        cell = cells.get((asset, cap), mt.Cell(asset, cap))
        state = mt.NOT_APPLICABLE if row.level is None else mt.ASSESSED
        same = cell.state == state and (
            cell.level == row.level if state == mt.ASSESSED else cell.na_reason == row.na_reason
        )
        if same:
            continue
        at = row.assessed_at or now
        if cell.assessed_at and at < cell.assessed_at:
            skipped.append(
                f"{source_name}:{row.line} {asset} / {cap}: assessed {at}, older than the "
                f"current assessment ({cell.assessed_at})"
            )
            continue
        entries.append(history_entry(
            asset, cap, cell.state, cell.level, state, row.level, [], "", row.notes,
            row.na_reason if row.level is None else "", "", row.assessed_by or assessor, at,
            "import",
        ))
    db.append_history(entries)
    return {(e[1], e[2]) for e in entries}, skipped

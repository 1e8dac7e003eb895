"""``setup`` without prompts: load the data folder's CSVs into the database, safely re-runnable.

New rows are added, changed text updated, rows that left the CSVs archived; assessments are
never lost. ``--dry-run`` applies everything inside a transaction, compares, and rolls back.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import csvfiles
import gitops
from context import CommandOptions, Context
from csvfiles import AssessmentRow, FlowRow, ModelRow
from database import BIG_IMPORT, DB_FILE, MATRIX_FILE, Database, ImportReport, Rollback, now_iso
from errors import EXIT_OK, InputError

DEFAULT_MODEL = Path(__file__).resolve().with_name(csvfiles.MODEL_FILE)


def ensure_model(folder: Path, replace: bool = False) -> bool:
    """Write the shipped default maturity_model.csv unless one exists; True when written."""
    target = folder / csvfiles.MODEL_FILE
    if target.exists() and not replace:
        return False
    if target.resolve() != DEFAULT_MODEL:
        shutil.copyfile(DEFAULT_MODEL, target)
    return True


@dataclass(frozen=True)
class SetupOptions(CommandOptions):
    """What ``setup`` was asked to do."""

    from_csv: bool = False
    dry_run: bool = False
    new_model: bool = False


def run(opts: SetupOptions, ctx: Context) -> int:
    """Import flows.csv, maturity_model.csv and (if present) assessments.csv; commit.

    The interactive part of ``setup`` (writing the CSVs from prompts) runs before, in
    :mod:`interactive_setup`.
    """
    dry_run = opts.dry_run
    folder: Path = ctx.data_dir
    if not folder.is_dir():
        raise InputError(f"data folder {folder} does not exist; create it or pass --data-dir")
    flows_path = folder / csvfiles.FLOWS_FILE
    if not flows_path.exists():
        raise InputError(f"{flows_path} not found; run 'sre_tracker.py setup' (interactive) or "
                         "write flows.csv with columns Flow, Asset Name[, Team, Target Level]")
    model_path = folder / csvfiles.MODEL_FILE
    wrote_model = False
    if not model_path.exists():
        if dry_run:
            model_path = DEFAULT_MODEL
        else:
            wrote_model = ensure_model(folder)
    # Validate every input before anything is written.
    flows = csvfiles.read_flows(flows_path)
    model = csvfiles.read_model(model_path)
    assessments_path = folder / csvfiles.ASSESSMENTS_FILE
    rows = csvfiles.read_assessments(assessments_path) if assessments_path.exists() else []
    assessor = gitops.user_name(folder)
    now = now_iso()

    if dry_run:
        return _dry_run(ctx, flows, model, rows, assessor, now)

    repo_files: list[str] = []
    if gitops.available() and gitops.repo_root(folder) is None:
        gitops.init(folder)
        ctx.print(f"created a git repository in {folder}")
    if gitops.repo_root(folder) is not None:
        repo_files = gitops.ensure_files(folder)
        gitops.register_drivers(folder)
    ctx.prepare_folder()

    db = Database(folder / DB_FILE, create=True)
    try:
        with db.transaction():
            report, changed, skipped, changes = _import(db, flows, model, rows, assessor, now)
            unchanged = not (report.changed or changed or changes)
            if unchanged:
                # Leave the file byte-identical so git sees no change and no commit is made.
                raise Rollback
        if not unchanged and len(changed) + len(changes) >= BIG_IMPORT:
            db.compact(always=True)  # a big import leaves half-full pages: repack them
        if not unchanged or not (folder / MATRIX_FILE).exists():
            from views import write_matrix_file

            write_matrix_file(ctx, db)
    finally:
        db.close()
    _print_report(ctx, report, changed, skipped, changes)
    files = [csvfiles.FLOWS_FILE, csvfiles.MODEL_FILE, DB_FILE, MATRIX_FILE, *repo_files]
    if assessments_path.exists():
        files.append(csvfiles.ASSESSMENTS_FILE)
    if wrote_model:
        ctx.print(f"wrote the default {csvfiles.MODEL_FILE}")
    message = _message(report, changed, changes)
    ctx.commit(files, message)
    return EXIT_OK


def _import(db: Database, flows: list[FlowRow], model: list[ModelRow],
            rows: list[AssessmentRow], assessor: str, now: str
            ) -> tuple[ImportReport, set, list[str], list]:
    """The import sequence, inside the caller's transaction: definitions, then assessments,
    then the items they open or close. Returns (definitions report, cells assessed, skipped
    rows, item changes)."""
    report = db.import_definitions(flows, model, now)
    changed, skipped = db.import_assessments(rows, assessor, now, csvfiles.ASSESSMENTS_FILE)
    changes = db.refresh_items(now=now, reassessed=changed)
    return report, changed, skipped, changes


def _message(report, changed: set, changes) -> str:
    parts = []
    if report.added:
        parts.append(f"{len(report.added)} added")
    if report.updated:
        parts.append(f"{len(report.updated)} updated")
    if report.archived:
        parts.append(f"{len(report.archived)} archived")
    if changed:
        parts.append(f"{len(changed)} assessments imported")
    opened = sum(1 for c in changes if c.new_state == "open")
    if opened:
        parts.append(f"{opened} items opened")
    return "setup: " + (", ".join(parts) if parts else "refresh")


def _print_report(ctx, report, changed: set, skipped: list[str], changes) -> None:
    if not (report.changed or changed or changes):
        ctx.print("setup: nothing changed")
    for label, entries in (("added", report.added), ("updated", report.updated),
                           ("archived", report.archived)):
        if entries:
            shown = ", ".join(entries[:8]) + (f" (+{len(entries) - 8} more)"
                                             if len(entries) > 8 else "")
            ctx.print(f"{label}: {shown}")
    if changed:
        ctx.print(f"imported {len(changed)} assessments from {csvfiles.ASSESSMENTS_FILE}")
    for s in skipped:
        ctx.print(f"skipped {s}")
    if changes:
        by: dict[str, int] = {}
        for ch in changes:
            by[ch.reason] = by.get(ch.reason, 0) + 1
        ctx.print("items: " + ", ".join(f"{n} {r}" for r, n in sorted(by.items())))


def _dry_run(ctx, flows, model, rows, assessor: str, now: str) -> int:
    from views import load_view

    path = ctx.data_dir / DB_FILE
    tmp = None
    if not path.exists():
        tmp = tempfile.TemporaryDirectory(prefix="sre-dry-run-")
        path = Path(tmp.name) / DB_FILE
    db = Database(path, create=True)
    try:
        before_matrix, _f, before_items = load_view(db)
        with db.transaction():
            report, changed, skipped, changes = _import(db, flows, model, rows, assessor, now)
            after_matrix, _f, after_items = load_view(db)
            raise Rollback
    finally:
        db.close()
        if tmp is not None:
            tmp.cleanup()
    ctx.print("dry run: nothing was written")
    _print_report(ctx, report, changed, skipped, changes)
    for line in preview_lines(before_matrix, after_matrix, before_items, after_items):
        ctx.print(line)
    return EXIT_OK


def preview_lines(before_matrix, after_matrix, before_items, after_items) -> list[str]:
    """Which cells' level/RAG move and which items appear or close between two views."""
    lines = []
    old = {(e["asset"], e["capability"]): e for e in before_matrix}
    new = {(e["asset"], e["capability"]): e for e in after_matrix}
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a is None:
            if b and b["state"] != "Not Assessed":
                lines.append(f"  new cell {key[0]} / {key[1]}: {b['state']} "
                             f"L{b['level']} {b['rag'] or ''}".rstrip())
            continue
        if b is None:
            lines.append(f"  cell {key[0]} / {key[1]} leaves the matrix (archived)")
            continue
        if (a["level"], a["rag"], a["state"]) != (b["level"], b["rag"], b["state"]):
            lines.append(f"  {key[0]} / {key[1]}: {_cell(a)} → {_cell(b)}")
    open_before = {i["key"] for i in before_items if i["state"] in ("open", "done")}
    open_after = {i["key"] for i in after_items if i["state"] in ("open", "done")}
    for key in sorted(open_after - open_before):
        lines.append(f"  item appears: {key}")
    for key in sorted(open_before - open_after):
        lines.append(f"  item closes: {key}")
    if not lines:
        lines.append("  no level, RAG or item would change")
    return ["preview:", *lines]


def _cell(e) -> str:
    if e["state"] != "Assessed":
        return e["state"]
    return f"L{e['level']} {e['rag']}"

"""``setup`` without prompts: load the data folder's CSVs into the database, safely re-runnable.

New rows are added, changed text updated, rows that left the CSVs archived; assessments are
never lost. ``--dry-run`` applies everything inside a transaction, compares, and rolls back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from database import BIG_IMPORT, DB_FILE, MATRIX_FILE, Database, Rollback, now_iso
from sre_maturity import HOME
from sre_maturity.git import gitops
from sre_maturity.render.reports import counted
from sre_maturity.rules.checkspec import AssetParams, CheckRow
from sre_maturity.store import checkfiles, csvfiles, schema, sources
from sre_maturity.store.csvfiles import AssessmentRow, FlowRow, ModelRow
from sre_maturity.store.imports import (
    ImportReport,
    import_assessments,
    import_checks,
    import_definitions,
)
from sre_maturity.support.context import CommandOptions, Context
from sre_maturity.support.errors import EXIT_OK, InputError, program_name, require_data_folder

# Where an installed wheel puts the shipped files (pyproject: [tool.setuptools.data-files]).
SHARE = Path("share") / "sre-tracker"


def shipped_file(name: str) -> Path:
    """A file shipped with the tool: beside the modules in a clone, else under the
    installation's ``share/sre-tracker`` (venv, pipx, --user)."""
    import sys
    import sysconfig

    beside = HOME / name
    if beside.exists():
        return beside
    roots = [sys.prefix, sysconfig.get_path("data")]
    with contextlib.suppress(KeyError):  # platforms without a user scheme
        roots.append(sysconfig.get_path("data", sysconfig.get_preferred_scheme("user")))
    for root in roots:
        candidate = Path(root) / SHARE / name
        if candidate.exists():
            return candidate
    raise InputError(f"the shipped {name} is missing from this installation "
                     f"(looked beside {beside.parent} and in {SHARE} under {', '.join(roots)}); "
                     "reinstall sre-tracker")


def default_model() -> Path:
    """The shipped default maturity_model.csv."""
    return shipped_file(csvfiles.MODEL_FILE)


def ensure_model(folder: Path, replace: bool = False) -> bool:
    """Write the shipped default maturity_model.csv unless one exists; True when written."""
    target = folder / csvfiles.MODEL_FILE
    if target.exists() and not replace:
        return False
    source = default_model()
    if target.resolve() != source.resolve():
        shutil.copyfile(source, target)
    return True


@dataclass(frozen=True)
class SetupOptions(CommandOptions):
    """What ``setup`` was asked to do."""

    from_csv: bool = False
    dry_run: bool = False
    new_model: bool = False


def run(opts: SetupOptions, ctx: Context,
        new_flows: list[tuple[str, str, str, int]] | None = None) -> int:
    """Import flows.csv, maturity_model.csv and (if present) assessments.csv; commit.

    ``new_flows`` (the rows the interactive setup collected) replace flows.csv and
    ``opts.new_model`` writes the default model over an existing one; both are validated with
    everything else before anything is written.
    """
    dry_run, new_model, interactive = opts.dry_run, opts.new_model, not opts.from_csv
    folder: Path = ctx.data_dir
    require_data_folder(folder)
    schema.check_regular(folder / DB_FILE)  # a link or a pipe: refused before any write
    flows_path = folder / csvfiles.FLOWS_FILE
    if new_flows is not None:
        flows = csvfiles.flow_rows(new_flows)
    elif not flows_path.exists():
        examples = ""
        with contextlib.suppress(InputError):
            examples = f" (examples: {shipped_file('examples/flows.csv').parent})"
        raise InputError(f"{flows_path} not found; run '{program_name()} setup' (interactive) or "
                         "write flows.csv with columns Flow, Asset Name[, Team, Target Level]"
                         + examples)
    else:
        flows = csvfiles.read_flows(flows_path)
    model_path = folder / csvfiles.MODEL_FILE
    write_model = new_model or not model_path.exists()
    # Validate every input (and git's identity) before anything is written.
    model = csvfiles.read_model(default_model() if write_model else model_path)
    assessments_path = folder / csvfiles.ASSESSMENTS_FILE
    rows = csvfiles.read_assessments(assessments_path) if assessments_path.exists() else []
    rows, retired = _retired_rows(folder / DB_FILE, rows, flows)
    csvfiles.check_assessment_names(rows, flows, model)
    evidence = checkfiles.read_folder(folder, flows, model)
    assessor = gitops.user_name(folder)
    now = now_iso()

    if dry_run:
        return _dry_run(ctx, flows, model, rows, evidence, assessor, now, retired)
    ctx.require_identity(creating_repo=True)

    said: list[str] = []
    with _UndoOnFailure(folder):
        if new_flows is not None:
            csvfiles.write_flows(flows_path, new_flows)
            said.append(f"wrote {flows_path.name}")
        if write_model and ensure_model(folder, replace=True):
            said.append(f"wrote the default {csvfiles.MODEL_FILE}"
                        + (" (edit it to fit your teams)" if interactive else ""))
        elif interactive:
            said.append(f"kept the existing {csvfiles.MODEL_FILE}")
        if gitops.available() and gitops.repo_root(folder) is None:
            gitops.init(folder)
            said.insert(0, f"created a git repository in {folder}")
        if gitops.repo_root(folder) is not None:
            gitops.ensure_files(folder)
            gitops.register_drivers(folder)
        ctx.prepare_folder()

        db = Database(folder / DB_FILE, create=True)
        ctx.attach(db)  # a Ctrl-C after the commit finishes it (interrupts.py)
        try:
            with db.transaction():
                report, changed, skipped, changes = _import(db, flows, model, rows, evidence,
                                                            assessor, now)
                unchanged = not (report.changed or changed or changes)
                if unchanged:
                    # Leave the file byte-identical: git sees no change, no commit is made.
                    raise Rollback
                for key, value in sources.fingerprints(folder).items():
                    db.set_meta(key, value)
            if not unchanged and len(changed) + len(changes) >= BIG_IMPORT:
                db.compact(always=True)  # a big import leaves half-full pages: repack them
            if not unchanged or not (folder / MATRIX_FILE).exists():
                from sre_maturity.rules.views import write_matrix_file

                write_matrix_file(ctx, db)
        finally:
            db.close()
    for line in said:
        ctx.print(line)
    _print_report(ctx, report, changed, skipped, changes,
                  fresh=_skipped_news(folder, assessments_path, skipped), retired=retired)
    # The git files always go with setup's commit: the first one holds them, so a clone has
    # the merge drivers' attributes and the .env ignore from the start.
    ctx.commit([*sources.SETUP_FILES, DB_FILE, MATRIX_FILE],
               _message(report, changed, changes))
    return EXIT_OK


def _import(db: Database, flows: list[FlowRow], model: list[ModelRow],
            rows: list[AssessmentRow], evidence: tuple[list[CheckRow], list[AssetParams]],
            assessor: str, now: str) -> tuple[ImportReport, set, list[str], list]:
    """The import sequence, inside the caller's transaction: definitions (the checks and the
    assets' parameters with them), then assessments, then the items they open or close.
    Returns (definitions report, cells assessed, skipped rows, item changes)."""
    from sre_maturity.rules.views import no_cycle_collection

    with no_cycle_collection():  # 10^4-10^5 rows, cells and items made; none holds a cycle
        report = import_definitions(db, flows, model, now)
        report.checks = import_checks(db, *evidence, now)
        changed, skipped = import_assessments(db, rows, assessor, now,
                                              csvfiles.ASSESSMENTS_FILE)
        changes = db.refresh_items(now=now, reassessed=changed)
    return report, changed, skipped, changes


SKIPPED_NOTE = "sre-tracker.skipped"  # in .git: which assessments.csv was last told about


def _skipped_news(folder: Path, path: Path, skipped: list[str]) -> bool:
    """True when the skipped rows have not been told for this content of assessments.csv
    (the note lives in the clone's .git, never committed); records it as told."""
    import hashlib

    if not skipped:
        return False
    stamp = hashlib.sha256(path.read_bytes()).hexdigest()
    if gitops.repo_root(folder) is None:
        return True
    note = Path(gitops.run(folder, "rev-parse", "--absolute-git-dir").strip()) / SKIPPED_NOTE
    if note.is_file() and note.read_text(encoding="utf-8").strip() == stamp:
        return False
    note.write_text(stamp + "\n", encoding="utf-8")
    return True


class _UndoOnFailure:
    """A first setup that fails half way puts the folder back as it was: files it created are
    removed, files it changed get their old bytes back, a repository it created goes. (A later
    setup needs none of this: the database transaction keeps the data as it was.)"""

    TOUCHED = (csvfiles.FLOWS_FILE, csvfiles.MODEL_FILE, f"{DB_FILE}-journal", MATRIX_FILE,
               ".gitattributes", ".gitignore")

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.first = not os.path.lexists(folder / DB_FILE)  # a link is the user's: kept
        self.had_git = (folder / ".git").exists()
        self.before = {name: (folder / name).read_bytes() if (folder / name).is_file() else None
                       for name in self.TOUCHED} if self.first else {}

    def __enter__(self) -> _UndoOnFailure:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is None or not self.first:
            return
        (self.folder / DB_FILE).unlink(missing_ok=True)
        for name, old in self.before.items():
            path = self.folder / name
            if old is None:
                path.unlink(missing_ok=True)
            elif path.read_bytes() != old:
                path.write_bytes(old)
        if not self.had_git:
            shutil.rmtree(self.folder / ".git", ignore_errors=True)


def _message(report, changed: set, changes) -> str:
    """``setup: added asset sso, Login/sso; archived asset dns-gateway; ...``: what changed,
    by name as ``assess`` says it (a long list is cut in the subject and given whole below)."""
    parts, body = [], []
    for _checks, label, entries in _definition_changes(report):
        parts.append(f"{label} {_first(entries, 4)}")
        if len(entries) > 4:
            body += [f"{label}:", *(f"  {e}" for e in entries)]
    if changed:
        parts.append(f"{counted(len(changed), 'assessment')} imported")
    if changes:  # the same words as the output: opened, reopened, verified, archived
        parts.append("items: " + _item_counts(changes))
    subject = "setup: " + ("; ".join(parts) if parts else "refresh")
    return subject + ("\n\n" + "\n".join(body) if body else "")


def _definition_changes(report) -> Iterator[tuple[bool, str, list[str]]]:
    """(of checks.csv / assets.csv?, "added" / "updated" / "archived", the names) of every
    non-empty list of definition changes an import reports, the model's and flows' first."""
    for checks, part in ((False, report), (True, report.checks)):
        if part is None:
            continue
        for label, entries in (("added", part.added), ("updated", part.updated),
                               ("archived", part.archived)):
            if entries:
                yield checks, label, entries


def _first(entries: list[str], n: int) -> str:
    return ", ".join(entries[:n]) + (f" (+{len(entries) - n} more)" if len(entries) > n else "")


def _item_counts(changes) -> str:
    by: dict[str, int] = {}
    for ch in changes:
        by[ch.reason] = by.get(ch.reason, 0) + 1
    return ", ".join(f"{n} {r}" for r, n in sorted(by.items()))


def _retired_rows(db_path: Path, rows: list[AssessmentRow], flows: list[FlowRow]
                  ) -> tuple[list[AssessmentRow], list[AssessmentRow]]:
    """``rows`` split into those to import and those naming an asset the database knows but
    flows.csv no longer lists (a retired asset: archived with its history, its rows skipped)."""
    if not rows or not db_path.is_file():
        return rows, []
    listed = {f.asset.casefold() for f in flows}
    with Database(db_path) as db:
        known = {a.casefold(): a for a in db.known_assets() if a.casefold() not in listed}
    if not known:
        return rows, []
    kept = [r for r in rows if r.asset.casefold() not in known]
    # Named as the database spells them (the rows may spell them in another case).
    return kept, [dataclasses.replace(r, asset=known[r.asset.casefold()]) for r in rows
                  if r.asset.casefold() in known]


def _print_report(ctx, report, changed: set, skipped: list[str], changes,
                  fresh: bool = True, retired: list[AssessmentRow] | None = None) -> None:
    """What the import did; the rows skipped as older are told once per change of
    assessments.csv (``fresh``), and listed with -v; the rows of retired assets in one note."""
    if not (report.changed or changed or changes):
        ctx.print("setup: nothing changed")
    if retired:
        names = sorted({r.asset for r in retired}, key=str.casefold)
        ctx.print(f"skipped {counted(len(retired), 'row')} of {csvfiles.ASSESSMENTS_FILE} "
                  f"naming {_first(names, 4)}, no longer in {csvfiles.FLOWS_FILE} (archived, "
                  "with its history)")
    for checks, label, entries in _definition_changes(report):
        suffix = " (checks.csv, assets.csv)" if checks else ""
        ctx.print(f"{label}{suffix}: {_first(entries, 8)}")
    if changed:
        ctx.print(f"imported {counted(len(changed), 'assessment')} from "
                  f"{csvfiles.ASSESSMENTS_FILE}")
    if skipped and (fresh or ctx.verbosity > 0):
        ctx.print(f"skipped {counted(len(skipped), 'row')} of {csvfiles.ASSESSMENTS_FILE}: older "
                  "than the current assessment of the cell"
                  + ("" if ctx.verbosity > 0 else " (-v lists them)"))
    if ctx.verbosity > 0:
        for line in skipped:
            ctx.print(f"  skipped {line}")
    if changes:
        ctx.print("items: " + _item_counts(changes))


def _dry_run(ctx, flows, model, rows, evidence, assessor: str, now: str,
             retired: list[AssessmentRow]) -> int:
    from sre_maturity.rules.views import load_view

    path = ctx.data_dir / DB_FILE
    tmp = None
    if not path.exists():
        tmp = tempfile.TemporaryDirectory(prefix="sre-dry-run-")
        path = Path(tmp.name) / DB_FILE
    db = Database(path, create=True)
    try:
        before_matrix, _f, before_items = load_view(db)
        with db.transaction():
            report, changed, skipped, changes = _import(db, flows, model, rows, evidence,
                                                        assessor, now)
            after_matrix, _f, after_items = load_view(db)
            raise Rollback
    finally:
        db.close()
        if tmp is not None:
            tmp.cleanup()
    ctx.print("dry run: nothing was written")
    _print_report(ctx, report, changed, skipped, changes, retired=retired)
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

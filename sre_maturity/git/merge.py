"""Git plumbing for the data folder: merge drivers for ``sre_data.db`` and ``sre_matrix.csv``,
and the readable dump git uses as the database's diff text-conversion (SPEC §7).

The database merge is three-way and row by row: the assessment history is a union, a matrix
cell takes the newest assessment, items merge field by field and are then reconciled with the
merged cells, and the definitions (assets, flows, capabilities, questions) merge row by row as
the cells do, so an asset one SRE added and another SRE's new flow both survive a pull.

To merge another definitions table (one that ``setup`` keeps in step with a CSV, such as the
evidence checks), add it to :data:`DEFINITION_TABLES` with its primary key and to
:data:`TABLE_ORDER` after the tables it references: nothing else is needed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sre_maturity.support.context import CommandOptions, Context
from sre_maturity.support.errors import EXIT_OK, DatabaseError, InputError, NewerSchema

# The definitions tables, merged three-way row by row (a row only one side changed takes that
# side; both changed: the side whose definitions were imported last, a tie broken by the rows'
# text), by their primary keys (the schema's, repeated so the merge reads on its own).
DEFINITION_TABLES: dict[str, tuple[str, ...]] = {
    "assets": ("asset",),
    "flows": ("flow", "asset"),
    "capabilities": ("capability",),
    "questions": ("capability", "level", "seq"),
    # checks.csv and assets.csv (SPEC §12)
    "checks": ("name",),
    "asset_params": ("asset", "name"),
}
CELL_KEY = ("asset", "capability")
STORY_FIELDS = ("rally_oid", "rally_id", "rally_url")
DEFINITIONS_STAMP = "definitions_imported_at"
TABLE_ORDER = ("meta", "assets", "flows", "capabilities", "questions", "cells", "assessments",
               "items", "checks", "asset_params", "evidence", "overrides")

Row = dict[str, Any]
Rows = dict[tuple, Row]


# ---------------------------------------------------------------------------- merge-db
@dataclass(frozen=True)
class DriverOptions(CommandOptions):
    """The three file names git hands a merge driver (``%O %A %B``)."""

    base: str
    ours: str
    theirs: str


def run_merge_db(opts: DriverOptions, ctx: Context) -> int:
    """``merge-db %O %A %B``: merge the three versions into OURS; exit 0 when merged."""
    summary = merge_db(Path(opts.base), Path(opts.ours), Path(opts.theirs))
    # Git runs a driver at the top of the work tree. The matrix file is merged on its own
    # (rows both sides changed by their Assessed At): the next writing command rewrites it
    # from the merged database, should the two differ.
    from database import DB_FILE
    from sre_maturity.support.writelock import mark_matrix_stale

    if (Path.cwd() / DB_FILE).is_file():
        mark_matrix_stale(Path.cwd())
    ctx.notice(f"merged sre_data.db row by row: {summary}")
    return EXIT_OK


def merge_db(base: Path, ours: Path, theirs: Path) -> str:
    """Three-way merge of ``sre_data.db`` versions, written atomically into ``ours``.

    An empty or missing ``base`` means the sides share no ancestor. Older schemas are migrated
    (on copies); a newer, foreign or damaged side raises DatabaseError and leaves ``ours`` as it
    was. Returns a one-line summary of what came from theirs.
    """
    with tempfile.TemporaryDirectory(prefix="sre-merge-") as tmp:
        work = Path(tmp)
        with _open_side(theirs, "theirs", work) as db:
            other = _snapshot(db.conn)
        ancestor: dict[str, Rows] = {}
        if base.is_file() and base.stat().st_size > 0:
            with _open_side(base, "base", work) as db:
                ancestor = _snapshot(db.conn)
        with _open_side(ours, "ours", work) as db:
            summary = _merge_into(db, ancestor, other)
        target = ours.with_name(f".{ours.name}.merge.tmp")
        shutil.copyfile(work / "ours.db", target)
        os.replace(target, ours)
    return summary


def _open_side(path: Path, label: str, work: Path):
    """Open a copy of one side in ``work``: ``Database`` refuses a foreign, damaged or newer
    file and migrates an older one (on the copy, so the work tree stays clean)."""
    from database import Database

    what = f"cannot merge sre_data.db: the {label} version"
    if not path.is_file() or path.stat().st_size == 0:
        raise DatabaseError(f"{what} is missing or empty; resolve the conflict by hand "
                            "(git checkout --ours/--theirs sre_data.db)")
    copy = work / f"{label}.db"
    shutil.copyfile(path, copy)
    try:
        return Database(copy)
    except DatabaseError as exc:
        # Keep what is wrong, not where (a temporary copy) nor the advice meant for a command.
        problem = str(exc).replace(str(copy), "").split(";")[0].strip()
        advice = ("upgrade sre-tracker and merge again" if isinstance(exc, NewerSchema) else
                  "resolve the conflict by hand (git checkout --ours sre_data.db)")
        raise DatabaseError(f"{what} {problem}; {advice}") from None


def _snapshot(conn: sqlite3.Connection) -> dict[str, Rows]:
    """Every merged table as {primary key: row dict}."""
    from sre_maturity.store.schema import rows_by_key

    return {table: rows_by_key(conn, table) for table in TABLE_ORDER}


def _merge_into(db, base: dict[str, Rows], theirs: dict[str, Rows]) -> str:
    """Merge ``theirs`` (with common ancestor ``base``) into the open database ``db``."""
    conn = db.conn
    ours = _snapshot(conn)
    stamp_ours = _stamp(ours)
    stamp_theirs = _stamp(theirs)

    merged: dict[str, Rows] = {}
    merged["meta"] = _merge_meta(ours["meta"], theirs["meta"])
    newer = (stamp_theirs > stamp_ours) - (stamp_theirs < stamp_ours)  # 1: theirs, -1: ours
    for table in DEFINITION_TABLES:
        merged[table] = _merge_rows(base.get(table, {}), ours[table], theirs[table],
                                    lambda o, t: _newer_definition(o, t, newer))
    merged["evidence"] = {
        key: _merge_evidence(ours["evidence"].get(key), theirs["evidence"].get(key))
        for key in _keys(ours["evidence"], theirs["evidence"])}
    merged["overrides"] = {
        key: _newest(ours["overrides"].get(key), theirs["overrides"].get(key),
                     lambda r: max(r["set_at"], r["cleared_at"]))
        for key in _keys(ours["overrides"], theirs["overrides"])}
    merged["assessments"] = {**theirs["assessments"], **ours["assessments"]}
    # A cell both sides assessed takes the newer assessment; in the same second, the one the
    # history lists last (assessed_at, seq, id: Database.history's order), so the cell and the
    # newest history entry agree, on both sides of the merge.
    seq_of = {row["id"]: row["seq"] for row in merged["assessments"].values()}
    merged["cells"] = _merge_rows(base.get("cells", {}), ours["cells"], theirs["cells"],
                                  lambda o, t: max(o, t, key=lambda r: _history_order(r, seq_of)))
    merged["items"] = {
        key: row for key in _keys(ours["items"], theirs["items"])
        if (row := _merge_item(base.get("items", {}).get(key), ours["items"].get(key),
                               theirs["items"].get(key))) is not None
    }
    changed_cells = {key for key, row in merged["cells"].items()
                     if row != ours["cells"].get(key) or row != theirs["cells"].get(key)}
    reassessed = _reassessed(changed_cells, merged["cells"], merged["items"])

    from sre_maturity.store.schema import rewrite_rows

    with db.transaction():
        for table in TABLE_ORDER:
            rewrite_rows(conn, table, ours[table], merged[table])
        db.refresh_items(reassessed=reassessed)

    new_history = len(set(theirs["assessments"]) - set(ours["assessments"]))
    taken = sum(1 for key, row in merged["cells"].items() if row != ours["cells"].get(key))
    extra = [f"{n} {what} from theirs" for what, n in (
        ("definition rows", _taken(merged, ours, *DEFINITION_TABLES)),
        ("evidence", _taken(merged, ours, "evidence")),
        ("overrides", _taken(merged, ours, "overrides"))) if n]
    return ", ".join([f"{new_history} assessments from theirs", f"{taken} cells from theirs",
                      *extra])


def _taken(merged: dict[str, Rows], ours: dict[str, Rows], *tables: str) -> int:
    """How many rows of ``tables`` the merge took from theirs (new or changed)."""
    return sum(1 for table in tables for key, row in merged[table].items()
               if row != ours[table].get(key))


def _stamp(side: dict[str, Rows]) -> str:
    """When the side last imported its CSVs (the definitions' time)."""
    return str(side["meta"].get((DEFINITIONS_STAMP,), {}).get("value") or "")


def _merge_rows(base: Rows, ours: Rows, theirs: Rows,
                both_changed: Callable[[Row, Row], Row]) -> Rows:
    """Three-way, row by row, for tables whose rows are never deleted: a row only one side
    has or changed takes that side; a row both changed is ``both_changed(ours_row, theirs_row)``."""
    merged: Rows = {}
    for key in _keys(ours, theirs):
        mine, other = ours.get(key), theirs.get(key)
        if mine is None or other is None:
            # Nothing is ever deleted (rows are archived): a side without the row never had it.
            merged[key] = ours[key] if other is None else other
            continue
        row = _one_sided(base.get(key), mine, other)
        merged[key] = both_changed(mine, other) if row is _BOTH_CHANGED else row
    return merged


def _newer_definition(ours: Row, theirs: Row, newer: int) -> Row:
    """A definition both sides changed: the side that imported last; the same second: the
    larger row text (any fixed rule will do, as long as both sides of a merge pick alike)."""
    if newer:
        return theirs if newer > 0 else ours
    return max(ours, theirs, key=_order)


def _history_order(cell: Row, seq_of: Mapping[Any, Any]) -> tuple:
    """Where a cell's assessment stands in the history: (assessed_at, seq, id)."""
    return (cell["assessed_at"], seq_of.get(cell["assessment_id"], 0), cell["assessment_id"])


def _keys(*tables: Rows) -> list[tuple]:
    seen: dict[tuple, None] = {}
    for t in tables:
        seen.update(dict.fromkeys(t))
    return list(seen)


def _merge_meta(ours: Rows, theirs: Rows) -> Rows:
    merged = {**theirs, **ours}
    for key, pick in (("created_at", min), (DEFINITIONS_STAMP, max)):
        values = [r["value"] for r in (ours.get((key,)), theirs.get((key,))) if r]
        if values:
            merged[(key,)] = {"key": key, "value": pick(values)}
    return merged


_BOTH_CHANGED = object()


def _one_sided(base: Row | None, ours: Row | None, theirs: Row | None) -> Any:
    """The row when at most one side changed it (or only one side has it), else
    ``_BOTH_CHANGED``: then the caller decides."""
    if ours == theirs or theirs == base:
        return ours
    if ours == base:
        return theirs
    if ours is None or theirs is None:
        return ours or theirs
    return _BOTH_CHANGED


def _newest(ours: Row | None, theirs: Row | None, when) -> Row:
    """The row with the later ``when(row)``; a tie (or equal times) goes to the larger row,
    the same on both sides of a merge whichever side pulls."""
    if ours is None or theirs is None:
        row = ours or theirs
        assert row is not None
        return row
    return max(ours, theirs, key=lambda r: (when(r), _order(r)))


def _order(row: Row) -> list[tuple[int, Any]]:
    return [_sort_value(row[name]) for name in sorted(row)]


_LAST_RUN = ("last_verdict", "last_detail", "last_checked_at")


def _merge_evidence(ours: Row | None, theirs: Row | None) -> Row:
    """One asset × check: the newer definitive verdict and, apart, the newer run that told
    nothing; a run older than the merged definitive verdict is dropped (it is past news)."""
    definitive = _newest(ours, theirs, lambda r: r["checked_at"])
    last = _newest(ours, theirs, lambda r: r["last_checked_at"])
    merged = dict(definitive)
    if last["last_checked_at"] > definitive["checked_at"]:
        merged.update({name: last[name] for name in _LAST_RUN})
    else:
        merged.update(dict.fromkeys(_LAST_RUN, ""))
    return merged


def _merge_item(base: Row | None, ours: Row | None, theirs: Row | None) -> Row | None:
    """Field by field: one-sided changes win, else the side updated last; a story id is kept."""
    row = _one_sided(base, ours, theirs)
    if row is not _BOTH_CHANGED:
        return row
    assert ours is not None and theirs is not None
    newer_theirs = (theirs.get("updated_at") or "") > (ours.get("updated_at") or "")
    merged = dict(ours)
    for name in ours:
        if name in STORY_FIELDS:
            continue
        b = base.get(name) if base else None
        if ours[name] == theirs.get(name) or theirs.get(name) == b:
            continue
        if ours[name] == b or newer_theirs:
            merged[name] = theirs.get(name)
    story_ours = tuple(ours.get(f) or "" for f in STORY_FIELDS)
    story_theirs = tuple(theirs.get(f) or "" for f in STORY_FIELDS)
    if story_theirs[0] and (not story_ours[0] or newer_theirs):
        merged.update(zip(STORY_FIELDS, story_theirs, strict=True))
    return merged


def _reassessed(changed: set[tuple], cells: Rows, items: Rows) -> set[tuple]:
    """Cells whose merged assessment is newer than the completion of their done items.

    Those reopen done items still below the level, as a fresh re-assessment would.
    """
    done_at: dict[tuple, str] = {}
    for row in items.values():
        if row.get("state") == "done":
            key = (row["asset"], row["capability"])
            done_at[key] = max(done_at.get(key, ""), row.get("done_at") or "")
    return {key for key in changed
            if key in done_at and cells[key]["assessed_at"] > done_at[key]}


# ---------------------------------------------------------------------------- merge-matrix
def run_merge_matrix(opts: DriverOptions, ctx: Context) -> int:
    """``merge-matrix %O %A %B``: merge the three sre_matrix.csv versions into OURS."""
    base, ours, theirs = Path(opts.base), Path(opts.ours), Path(opts.theirs)
    rows = matrix_of_merged_db(Path.cwd(), base, ours, theirs)
    if rows is not None:
        ctx.notice(f"merged sre_matrix.csv: written from the merged database ({rows} rows)")
        return EXIT_OK
    rows = merge_matrix(base, ours, theirs)
    ctx.notice(f"merged sre_matrix.csv row by row ({rows} rows)")
    return EXIT_OK


def matrix_of_merged_db(folder: Path, base: Path, ours: Path, theirs: Path) -> int | None:
    """Write into ``ours`` the matrix of the database this merge makes; returns its rows.

    The file is an export of the database, so the merged file is the export of the merged
    database: its levels, RAG, open items and go-live levels agree with the database even where
    one side changed the model and the other a cell. Git hands a driver only the three matrix
    files; the commits they come from are found (:func:`gitops.merge_commits`), and their
    databases merged as ``merge-db`` merges them. None when the commits cannot be told or
    their databases not merged (then the rows are merged one by one, :func:`merge_matrix`).
    """
    from database import DB_FILE, MATRIX_FILE, Database
    from sre_maturity.git import gitops
    from sre_maturity.render.reports import write_matrix_rows_csv
    from sre_maturity.rules.views import matrix_rows
    from sre_maturity.support.errors import GitError

    try:
        found = gitops.merge_commits(folder, MATRIX_FILE, base, ours, theirs)
        if found is None:
            return None
        with tempfile.TemporaryDirectory(prefix="sre-merge-matrix-") as tmp:
            sides = []
            for label, commit in zip(("base", "ours", "theirs"), found, strict=True):
                path = Path(tmp) / f"{label}.db"
                path.write_bytes(gitops.show_file(folder, commit, DB_FILE) if commit else b"")
                sides.append(path)
            merge_db(*sides)
            with Database(sides[1]) as db:
                rows, _flows = matrix_rows(db)
            buf = io.StringIO(newline="")
            write_matrix_rows_csv(buf, rows)
    except (GitError, DatabaseError, OSError):
        return None
    target = ours.with_name(f".{ours.name}.merge.tmp")
    target.write_text(buf.getvalue(), encoding="utf-8", newline="")
    os.replace(target, ours)
    return len(rows)


def merge_matrix(base: Path, ours: Path, theirs: Path) -> int:
    """Merge ``sre_matrix.csv`` row by row, keyed on (Asset Name, Capability); returns rows.

    Why it exists: the matrix file is an export of the database, committed beside it. Without
    this driver git would merge it line by line and could leave conflict markers or a file that
    disagrees with the merged ``sre_data.db``. Merging under the database's rule (one-sided
    changes win; both changed: the newer ``Assessed At``, ties broken by the row's text) makes the
    committed file agree with the merged database; any later command rewrites it from the
    database anyway. Rows keep ours' order, theirs' new rows go after their predecessor there.
    """
    b_cols, b_rows = _read_matrix(base, "base", missing_ok=True)
    o_cols, o_rows = _read_matrix(ours, "ours")
    t_cols, t_rows = _read_matrix(theirs, "theirs")
    columns = o_cols + [c for c in t_cols if c not in o_cols] if o_cols else t_cols
    if not columns:
        columns = b_cols
    merged: dict[tuple[str, str], dict[str, str]] = {}
    for key in _keys(o_rows, t_rows):
        row = _pick_matrix_row(b_rows.get(key), o_rows.get(key), t_rows.get(key), columns)
        if row is not None:
            merged[key] = row
    order = _ordered(list(o_rows), list(t_rows), merged)
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, columns, lineterminator="\n", extrasaction="ignore",
                            restval="")
    writer.writeheader()
    for key in order:
        writer.writerow(merged[key])
    target = ours.with_name(f".{ours.name}.merge.tmp")
    target.write_text(buf.getvalue(), encoding="utf-8", newline="")
    os.replace(target, ours)
    return len(order)


def _read_matrix(path: Path, label: str, *, missing_ok: bool = False
                 ) -> tuple[list[str], dict[tuple[str, str], dict[str, str]]]:
    """Columns and rows keyed by (Asset Name, Capability); an empty file has none."""
    what = f"cannot merge sre_matrix.csv: the {label} version"
    if not path.is_file():
        if missing_ok:
            return [], {}
        raise InputError(f"{what} is missing; resolve the conflict by hand")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} cannot be read ({exc}); resolve by hand") from None
    if not text.strip():
        return [], {}
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
        columns = list(reader.fieldnames or [])
        rows: dict[tuple[str, str], dict[str, str]] = {}
        for row in reader:
            if None in row or None in row.values():
                raise InputError(f"{what}, line {reader.line_num}: wrong number of columns; "
                                 "resolve by hand")
            rows[(row.get("Asset Name", ""), row.get("Capability", ""))] = row
    except csv.Error as exc:
        raise InputError(f"{what} is not valid CSV ({exc}); resolve by hand") from None
    missing = [c for c in ("Asset Name", "Capability", "Assessed At") if c not in columns]
    if missing:
        raise InputError(f"{what} has no column {', '.join(missing)}; it is not a matrix "
                         "export; resolve by hand")
    return columns, rows


def _pick_matrix_row(base: dict | None, ours: dict | None, theirs: dict | None,
                     columns: list[str]) -> dict | None:
    row = _one_sided(base, ours, theirs)
    if row is not _BOTH_CHANGED:
        return row
    return max(ours, theirs,
               key=lambda r: (r.get("Assessed At") or "", [r.get(c) or "" for c in columns]))


def _ordered(ours: list, theirs: list, merged: Mapping) -> list:
    """Ours' order; a row new from theirs follows the row it follows in theirs."""
    in_ours = set(ours)
    attached: dict[Any, list] = {}
    anchor = None
    for key in theirs:
        if key in in_ours:
            anchor = key
        elif key in merged:
            attached.setdefault(anchor, []).append(key)
    order = list(attached.get(None, []))
    for key in ours:
        if key in merged:
            order.append(key)
        order.extend(attached.get(key, []))
    return order


# ---------------------------------------------------------------------------- dump
def dump(path: Path) -> str:
    """The whole database as sorted, readable lines (git's diff text-conversion).

    One section per table, one line per row, rows in primary-key order (the history in time
    order). Never raises for a bad file: it says what the file is in one line instead.
    """
    from sre_maturity.store.schema import APPLICATION_ID, file_identity, open_read_only

    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        return f"{path.name}: cannot be read ({exc.strerror})\n"
    if not head:
        return f"{path.name}: empty file\n"
    if head != b"SQLite format 3\x00":
        return f"{path.name}: not an SQLite database ({path.stat().st_size} bytes)\n"
    try:
        conn = open_read_only(path)
    except sqlite3.Error as exc:
        return f"{path.name}: cannot be opened ({exc})\n"
    try:
        app_id, version, tables = file_identity(conn)
        if app_id not in (0, APPLICATION_ID):
            return f"{path.name}: an SQLite file of another application (not sre-tracker)\n"
        order = [t for t in TABLE_ORDER if t in tables] + sorted(set(tables) - set(TABLE_ORDER))
        lines = [f"# sre-tracker database, schema {version}"]
        for table in order:
            rows = _dump_rows(conn, table)
            lines.append("")
            lines.append(f"## {table}")
            lines.extend(f"{table}: {_line(table, row)}" for row in rows)
        return "\n".join(lines) + "\n"
    except sqlite3.Error as exc:
        return f"{path.name}: damaged SQLite database ({exc})\n"
    finally:
        conn.close()


def _dump_rows(conn: sqlite3.Connection, table: str) -> list[Row]:
    from sre_maturity.store.schema import primary_key, table_rows

    rows = table_rows(conn, table, rowid_order=False)
    names = list(rows[0]) if rows else []
    if table == "assessments" and {"assessed_at", "id"} <= set(names):
        sort_cols: Iterable[str] = ("assessed_at", "id")
    else:
        sort_cols = primary_key(conn, table) or tuple(names)
    return sorted(rows, key=lambda r: [_sort_value(r.get(c)) for c in sort_cols])


def _sort_value(value: object) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    if isinstance(value, int | float):
        return (1, value)
    return (2, str(value))


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value).replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


def _line(table: str, row: Row) -> str:
    """One row as text; the known tables in words, anything else as name=value pairs."""
    try:
        parts = _FORMATS[table](row) if table in _FORMATS else None
    except (KeyError, ValueError):  # a column missing, or applies_to that is not JSON
        parts = None
    if parts is None:
        parts = [f"{k}={_text(v)}" for k, v in row.items()]
    return " | ".join(p for p in parts if p)


def _opt(label: str, value: object) -> str:
    return f"{label} {_text(value)}" if value not in (None, "") else ""


def _level(state: str, level: object) -> str:
    if state == "Assessed":
        return f"Assessed L{level}"
    return _text(state)


def _archived(row: Row) -> str:
    return _opt("archived", row.get("archived_at"))


_FORMATS = {
    "meta": lambda r: [f"{_text(r['key'])} = {_text(r['value'])}"],
    "assets": lambda r: [_text(r["asset"]), _opt("team", r["team"]), _archived(r)],
    "flows": lambda r: [_text(r["flow"]), _text(r["asset"]), _opt("team", r["team"]),
                        f"target {r['target_level']}", f"position {r['position']}",
                        _archived(r)],
    "capabilities": lambda r: [_text(r["capability"]), _opt("category", r["category"]),
                               f"position {r['position']}", _archived(r)],
    "questions": lambda r: [_text(r["capability"]), f"L{r['level']}.{r['seq']}",
                            _text(r["question"]), _opt("criteria", r["criteria"]),
                            _opt("owner", r["owner"]), _opt("priority", r["priority"]),
                            "go-live" if r["go_live"] else "", _opt("milestone", r["milestone"]),
                            _archived(r)],
    "cells": lambda r: [_text(r["asset"]), _text(r["capability"]),
                        _level(r["state"], r["level"]),
                        f"by {_text(r['assessed_by']) or '?'} {_text(r['assessed_at'])}",
                        _opt("not applicable:", r["na_reason"]), _opt("until", r["na_until"]),
                        _opt("answered no:", r["failed_question"]), _opt("notes", r["notes"]),
                        _opt("id", r["assessment_id"])],
    "assessments": lambda r: [_text(r["assessed_at"]), _text(r["asset"]),
                              _text(r["capability"]),
                              f"{_level(r['old_state'], r['old_level'])} -> "
                              f"{_level(r['new_state'], r['new_level'])}",
                              f"by {_text(r['assessed_by']) or '?'}", _opt("source", r["source"]),
                              _opt("answered no:", r["failed_question"]),
                              _opt("not applicable:", r["na_reason"]),
                              _opt("until", r["na_until"]), _opt("notes", r["notes"]),
                              _opt("answers", r["answers"] if r["answers"] != "[]" else ""),
                              _opt("id", r["id"])],
    "checks": lambda r: [_text(r["name"]), f"{_text(r['capability'])} L{r['level']}."
                         f"{r['question']}", _text(r["kind"]), _text(r["target"]),
                         _opt("expect", r["expect"]), f"valid {r['valid_days']} days",
                         _opt("applies to", ", ".join(json.loads(r["applies_to"]))),
                         _text(r["mode"]), _opt("fingerprint", r["fingerprint"]),
                         _archived(r)],
    "asset_params": lambda r: [_text(r["asset"]), f"{_text(r['name'])} = {_text(r['value'])}",
                               _archived(r)],
    "evidence": lambda r: [_text(r["asset"]), _text(r["check_name"]), _text(r["verdict"]),
                           _opt("at", r["checked_at"]), _opt("until", r["valid_until"]),
                           _opt("saw", r["detail"]), _opt("link", r["link"]),
                           _opt("fingerprint", r["fingerprint"]),
                           _opt("last run", " ".join(_text(r[f]) for f in _LAST_RUN
                                                     if r[f]))],
    "overrides": lambda r: [_text(r["asset"]), _text(r["check_name"]),
                            f"answer {_text(r['answer'])}", _opt("reason", r["reason"]),
                            f"by {_text(r['set_by']) or '?'} {_text(r['set_at'])}",
                            _opt("until", r["until"]), _opt("cleared", r["cleared_at"])],
    "items": lambda r: [_text(r.get("key") or f"{r['asset']} / {r['capability']} / "
                                                 f"{r['level']}"),
                        _text(r["state"]), _text(r["work_status"]),
                        _opt("priority", r.get("priority")), "go-live" if r.get("go_live") else "",
                        _opt("story", " ".join(_text(r[f]) for f in STORY_FIELDS if r[f])),
                        _opt("rally state", r["rally_state"]), _opt("opened", r["opened_at"]),
                        _opt("done", r.get("done_at")), _opt("closed", r["closed_at"]),
                        _opt("updated", r.get("updated_at")), _opt("owner", r.get("owner")),
                        _opt("milestone", r.get("milestone")),
                        _opt("criteria", r.get("criteria")), _opt("why", r["why"])],
}

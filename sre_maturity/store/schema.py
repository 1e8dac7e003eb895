"""The shape of ``sre_data.db``: the schema versions, the migrations between them, and the
checks that refuse a file that is not ours (foreign, damaged, or from a newer version).

Schema upgrades are keyed on ``PRAGMA user_version``; a copy of the old file is made first.
Queries live in ``database.py``; this module only creates, checks and upgrades, and reads and
rewrites whole tables by primary key, whatever their schema (the merge driver and ``dump``).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from sre_maturity.support.errors import DatabaseError, NewerSchema

APPLICATION_ID = 0x53524554  # "SRET": marks the file as ours
SCHEMA_VERSION = 5
# A migration that frees more pages than this is followed by VACUUM, so the file git commits
# shrinks with it (VACUUM rewrites the whole file: not worth it for a few pages).
VACUUM_FREE_PAGES = 256

_SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE assets (
    asset TEXT PRIMARY KEY,
    team TEXT NOT NULL DEFAULT '',
    archived_at TEXT
);
CREATE TABLE flows (
    flow TEXT NOT NULL,
    asset TEXT NOT NULL REFERENCES assets(asset),
    team TEXT NOT NULL DEFAULT '',
    target_level INTEGER NOT NULL DEFAULT 3,
    position INTEGER NOT NULL DEFAULT 0,
    archived_at TEXT,
    PRIMARY KEY (flow, asset)
);
CREATE TABLE capabilities (
    capability TEXT PRIMARY KEY,
    category TEXT NOT NULL,
    position INTEGER NOT NULL DEFAULT 0,
    archived_at TEXT
);
CREATE TABLE questions (
    capability TEXT NOT NULL REFERENCES capabilities(capability),
    level INTEGER NOT NULL CHECK (level BETWEEN 1 AND 5),
    seq INTEGER NOT NULL,
    criteria TEXT NOT NULL,
    question TEXT NOT NULL,
    owner TEXT NOT NULL DEFAULT 'Asset',
    priority TEXT NOT NULL DEFAULT '',
    go_live INTEGER NOT NULL DEFAULT 0,
    milestone TEXT NOT NULL DEFAULT '',
    archived_at TEXT,
    PRIMARY KEY (capability, level, seq)
);
CREATE TABLE cells (
    asset TEXT NOT NULL REFERENCES assets(asset),
    capability TEXT NOT NULL REFERENCES capabilities(capability),
    state TEXT NOT NULL CHECK (state IN ('Assessed', 'Not Applicable')),
    level INTEGER CHECK (level BETWEEN 0 AND 5),
    na_reason TEXT NOT NULL DEFAULT '',
    na_until TEXT NOT NULL DEFAULT '',
    failed_question TEXT NOT NULL DEFAULT '',
    notes TEXT NOT NULL DEFAULT '',
    assessed_by TEXT NOT NULL DEFAULT '',
    assessed_at TEXT NOT NULL DEFAULT '',
    assessment_id TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (asset, capability)
);
CREATE TABLE assessments (
    id TEXT PRIMARY KEY,
    asset TEXT NOT NULL,
    capability TEXT NOT NULL,
    old_state TEXT NOT NULL,
    old_level INTEGER,
    new_state TEXT NOT NULL,
    new_level INTEGER,
    answers TEXT NOT NULL DEFAULT '[]',
    failed_question TEXT NOT NULL DEFAULT '',
    notes TEXT NOT NULL DEFAULT '',
    na_reason TEXT NOT NULL DEFAULT '',
    na_until TEXT NOT NULL DEFAULT '',
    assessed_by TEXT NOT NULL DEFAULT '',
    assessed_at TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT 'assess'
);
CREATE TABLE items (
    key TEXT PRIMARY KEY,
    asset TEXT NOT NULL REFERENCES assets(asset),
    capability TEXT NOT NULL REFERENCES capabilities(capability),
    level INTEGER NOT NULL,
    category TEXT NOT NULL DEFAULT '',
    criteria TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL DEFAULT 'Asset',
    priority TEXT NOT NULL DEFAULT 'P3',
    go_live INTEGER NOT NULL DEFAULT 0,
    milestone TEXT NOT NULL DEFAULT '',
    why TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL DEFAULT 'open',
    work_status TEXT NOT NULL DEFAULT 'Not Started',
    rally_state TEXT NOT NULL DEFAULT '',
    rally_oid TEXT NOT NULL DEFAULT '',
    rally_id TEXT NOT NULL DEFAULT '',
    rally_url TEXT NOT NULL DEFAULT '',
    opened_at TEXT NOT NULL,
    closed_at TEXT NOT NULL DEFAULT ''
);
CREATE INDEX assessments_cell ON assessments (asset, capability, assessed_at);
"""

_SCHEMA_V2 = """
ALTER TABLE items ADD COLUMN done_at TEXT NOT NULL DEFAULT '';
ALTER TABLE items ADD COLUMN updated_at TEXT NOT NULL DEFAULT '';
CREATE INDEX items_state ON items (state);
"""


# Version 3, compact: an item no longer copies its level's words (category, criteria, owner,
# priority, go-live, milestone: read from the model's questions) nor the key (asset / capability
# / level is its primary key); the reason of an open item is derived from its cell when read and
# kept only once the item closes. Cells, items and the history are WITHOUT ROWID tables keyed by
# their natural keys, so each key is stored once (no second index holding it again). Text keys
# stay (not integer ids): the merge driver unions rows of two clones by primary key, and ids
# given out independently in two clones would collide.
_SCHEMA_V3 = """
CREATE TABLE cells_v3 (
    asset TEXT NOT NULL REFERENCES assets(asset),
    capability TEXT NOT NULL REFERENCES capabilities(capability),
    state TEXT NOT NULL CHECK (state IN ('Assessed', 'Not Applicable')),
    level INTEGER CHECK (level BETWEEN 0 AND 5),
    na_reason TEXT NOT NULL DEFAULT '',
    na_until TEXT NOT NULL DEFAULT '',
    failed_question TEXT NOT NULL DEFAULT '',
    notes TEXT NOT NULL DEFAULT '',
    assessed_by TEXT NOT NULL DEFAULT '',
    assessed_at TEXT NOT NULL DEFAULT '',
    assessment_id TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (asset, capability)
) WITHOUT ROWID;
INSERT INTO cells_v3 SELECT asset, capability, state, level, na_reason, na_until,
    failed_question, notes, assessed_by, assessed_at, assessment_id FROM cells;
DROP TABLE cells;
ALTER TABLE cells_v3 RENAME TO cells;
CREATE TABLE assessments_v3 (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    asset TEXT NOT NULL,
    capability TEXT NOT NULL,
    old_state TEXT NOT NULL,
    old_level INTEGER,
    new_state TEXT NOT NULL,
    new_level INTEGER,
    answers TEXT NOT NULL DEFAULT '[]',
    failed_question TEXT NOT NULL DEFAULT '',
    notes TEXT NOT NULL DEFAULT '',
    na_reason TEXT NOT NULL DEFAULT '',
    na_until TEXT NOT NULL DEFAULT '',
    assessed_by TEXT NOT NULL DEFAULT '',
    assessed_at TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT 'assess'
) WITHOUT ROWID;
INSERT INTO assessments_v3 SELECT id, rowid, asset, capability, old_state, old_level, new_state,
    new_level, answers, failed_question, notes, na_reason, na_until, assessed_by, assessed_at,
    source FROM assessments;
DROP TABLE assessments;
ALTER TABLE assessments_v3 RENAME TO assessments;
CREATE TABLE items_v3 (
    asset TEXT NOT NULL REFERENCES assets(asset),
    capability TEXT NOT NULL REFERENCES capabilities(capability),
    level INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'open',
    work_status TEXT NOT NULL DEFAULT 'Not Started',
    rally_state TEXT NOT NULL DEFAULT '',
    rally_oid TEXT NOT NULL DEFAULT '',
    rally_id TEXT NOT NULL DEFAULT '',
    rally_url TEXT NOT NULL DEFAULT '',
    why TEXT NOT NULL DEFAULT '',
    opened_at TEXT NOT NULL,
    done_at TEXT NOT NULL DEFAULT '',
    closed_at TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (asset, capability, level)
) WITHOUT ROWID;
INSERT INTO items_v3 SELECT asset, capability, level, state, work_status, rally_state, rally_oid,
    rally_id, rally_url, CASE WHEN state IN ('open', 'done') THEN '' ELSE why END, opened_at,
    done_at, closed_at, updated_at FROM items;
DROP TABLE items;
ALTER TABLE items_v3 RENAME TO items
"""

# Version 4, automated evidence (SPEC §12): the checks of checks.csv and the parameters of
# assets.csv (definitions: archived, never deleted, like the model's rows), the latest evidence
# per asset × check (the latest definitive verdict, and the latest run when it told nothing)
# and the overrides people record. Keys are names, not ids, so two clones' rows merge by key.
_SCHEMA_V4 = """
CREATE TABLE checks (
    name TEXT PRIMARY KEY,
    capability TEXT NOT NULL,
    level INTEGER NOT NULL CHECK (level BETWEEN 1 AND 5),
    question INTEGER NOT NULL DEFAULT 1,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    expect TEXT NOT NULL DEFAULT '',
    valid_days INTEGER NOT NULL DEFAULT 7,
    applies_to TEXT NOT NULL DEFAULT '[]',
    mode TEXT NOT NULL DEFAULT 'gate' CHECK (mode IN ('gate', 'advisory')),
    fingerprint TEXT NOT NULL,
    position INTEGER NOT NULL DEFAULT 0,
    archived_at TEXT
) WITHOUT ROWID;
CREATE TABLE asset_params (
    asset TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL DEFAULT '',
    archived_at TEXT,
    PRIMARY KEY (asset, name)
) WITHOUT ROWID;
CREATE TABLE evidence (
    asset TEXT NOT NULL,
    check_name TEXT NOT NULL,
    verdict TEXT NOT NULL DEFAULT '' CHECK (verdict IN ('', 'pass', 'fail')),
    detail TEXT NOT NULL DEFAULT '',
    link TEXT NOT NULL DEFAULT '',
    checked_at TEXT NOT NULL DEFAULT '',
    valid_until TEXT NOT NULL DEFAULT '',
    fingerprint TEXT NOT NULL DEFAULT '',
    last_verdict TEXT NOT NULL DEFAULT '',
    last_detail TEXT NOT NULL DEFAULT '',
    last_checked_at TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (asset, check_name)
) WITHOUT ROWID;
CREATE TABLE overrides (
    asset TEXT NOT NULL,
    check_name TEXT NOT NULL,
    answer TEXT NOT NULL CHECK (answer IN ('yes', 'no')),
    reason TEXT NOT NULL,
    set_by TEXT NOT NULL DEFAULT '',
    set_at TEXT NOT NULL,
    until TEXT NOT NULL DEFAULT '',
    cleared_at TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (asset, check_name)
) WITHOUT ROWID
"""

# Version 5, untouched items are not stored (issue 27): an open item with no story, no Rally
# state and no past (never done, closed or reopened) is all rules and cell, bar the time it
# opened. Such items are the cell's ``open_levels`` (their levels as digits, e.g. ``"45"``),
# opened at ``open_since`` (one time per cell; an untouched item that opened at another time
# keeps its row). At 2,000 assets × 60 capabilities with every cell assessed that is 200,000
# rows fewer, a third of the file. ``all_items`` shows stored and derived items alike, as the
# rows the items table held before; every read goes through it, every write to a derived item
# first gives it its row again (:func:`materialise_items`), and :func:`fold_items` takes rows
# that became untouched back into their cell.
_SCHEMA_V5 = """
ALTER TABLE cells ADD COLUMN open_levels TEXT NOT NULL DEFAULT '';
ALTER TABLE cells ADD COLUMN open_since TEXT NOT NULL DEFAULT '';
CREATE VIEW all_items AS
SELECT asset, capability, level, state, work_status, rally_state, rally_oid, rally_id, rally_url,
    why, opened_at, done_at, closed_at, updated_at FROM items
UNION ALL
SELECT c.asset, c.capability, lv.level, 'open', 'Not Started', '', '', '', '', '',
    c.open_since, '', '', c.open_since
FROM cells AS c JOIN (SELECT 1 AS level UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL
    SELECT 4 UNION ALL SELECT 5) AS lv ON instr(c.open_levels, lv.level) > 0
WHERE c.open_levels != ''
"""

MIGRATIONS = {1: _SCHEMA_V1, 2: _SCHEMA_V2, 3: _SCHEMA_V3, 4: _SCHEMA_V4, 5: _SCHEMA_V5}
# What a migration does beyond its SQL, in the same transaction, after it.
MIGRATION_STEPS: dict[int, Callable[[sqlite3.Connection], object]] = {}

# The table and view behind each name the merge driver and ``dump`` read: the items are the
# stored and the derived ones; the cell's derived items are shown as items, not as the cell's.
READ_AS = {"items": "all_items"}
HIDDEN_COLUMNS = {"cells": ("open_levels", "open_since")}
# An item row that holds nothing its cell and the rules do not (see _SCHEMA_V5).
UNTOUCHED_SQL = ("state = 'open' AND work_status = 'Not Started' AND rally_state = '' AND "
                 "rally_oid = '' AND rally_id = '' AND rally_url = '' AND why = '' AND "
                 "done_at = '' AND closed_at = '' AND updated_at = opened_at")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def check_regular(path: Path) -> None:
    """Refuse a database path that is there but is not a regular file: a symbolic link (git
    would commit the link, not the data, and teammates would get a dangling link), a FIFO (it
    would hang the reader), a device or a socket. Nothing is touched."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return  # a folder in its place is check_header's message
    what = "a symbolic link" if stat.S_ISLNK(mode) else \
        "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "not a regular file"
    raise DatabaseError(f"{path} is {what}, not the database file itself; git must commit the "
                        "data, so put the real file there (move the link or pipe away first)")


def inode_of(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path`` now, None when there is none: a git checkout or
    pull that replaces the database gives the path a new inode."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def signature(path: Path) -> tuple[int, int, int, int] | None:
    """(device, inode, size, modification time in ns) of the file at ``path`` now, None when
    there is none. Once no connection holds the file, git may replace it by a new file that
    gets the freed inode number back: the size and time still tell the two apart."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def in_use(exc: sqlite3.Error) -> bool:
    """True when SQLite failed because another program holds a lock on the file."""
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc).lower()


def in_use_text(path: Path) -> str:
    return (f"{path} is in use by another program (a sqlite3 session or a database browser "
            "has it open and locked); close it there and run the command again")


JOURNAL_MAGIC = bytes.fromhex("d9d505f920a163d7")  # a hot rollback journal's first bytes


def journal_counter(journal: Path) -> int | None:
    """The file change counter that page 1 had when ``journal`` (a hot rollback journal) was
    begun, or None when it holds no page 1 (or is not a hot journal at all).

    The journal is a header (one sector) and records of page number, original page, checksum;
    page 1 keeps the counter at offset 24 (sqlite.org/fileformat.html)."""
    try:
        data = journal.read_bytes()
    except OSError:
        return None
    if len(data) < 28 or data[:8] != JOURNAL_MAGIC:
        return None
    sector = int.from_bytes(data[20:24], "big")
    page_size = int.from_bytes(data[24:28], "big")
    if not (512 <= sector <= 65536 and 512 <= page_size <= 65536):
        return None
    at = sector
    while at + 8 + page_size <= len(data):
        if int.from_bytes(data[at:at + 4], "big") == 1:
            return int.from_bytes(data[at + 4 + 24:at + 4 + 28], "big")
        at += 8 + page_size
    return None


def foreign_journal(path: Path) -> Path | None:
    """The rollback journal beside ``path`` when it was begun on another file than the one
    there now (a run killed mid-write, then ``git checkout``/``pull`` replaced the file):
    SQLite would replay it onto the new file and damage it. None when there is no journal,
    or it may be this file's own (its page 1 counter is the file's, or one behind)."""
    journal = path.with_name(path.name + "-journal")
    if not journal.is_file():
        return None
    began = journal_counter(journal)
    if began is None:
        return None
    try:
        with path.open("rb") as f:
            f.seek(24)
            now = int.from_bytes(f.read(4), "big")
    except OSError:
        return None
    return None if now in (began, (began + 1) % 2**32) else journal


def check_header(path: Path) -> None:
    """Refuse a file that is not SQLite at all (before SQLite sees it), an empty one (SQLite
    would quietly make a new database in it) and a folder in its place; none is touched."""
    check_regular(path)
    if path.is_dir():
        raise DatabaseError(f"{path} is a folder, not the database file; move it away (or "
                            "restore the file from git)")
    with open(path, "rb") as fh:
        head = fh.read(16)
    if not head:
        raise DatabaseError(
            f"{path} is empty (0 bytes), not a database; restore it from git "
            f"(git checkout -- {path.name}), or delete it and run setup to start afresh")
    if head and head != b"SQLite format 3\x00":
        raise DatabaseError(
            f"{path} is not an SQLite database (corrupt or foreign file); restore it from git "
            f"(git checkout -- {path.name}) or move it away"
        )


def prepare(conn: sqlite3.Connection, path: Path) -> tuple[int | None, Path | None]:
    """Check that the open file is ours and sound, and upgrade an older schema.

    Returns (the version migrated from, the backup made) — (None, None) when nothing was
    upgraded. Raises DatabaseError for a foreign or damaged file, NewerSchema for a newer one.
    """
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if app_id != APPLICATION_ID and (app_id != 0 or tables):
        raise DatabaseError(
            f"{path} is not an sre-tracker database (another application's file); "
            "move it away or pass --data-dir"
        )
    if version > SCHEMA_VERSION:
        raise NewerSchema(
            f"{path} was written by a newer sre-tracker (schema {version}, this one "
            f"knows {SCHEMA_VERSION}); upgrade sre-tracker"
        )
    if tables and not verified(path):
        integrity(conn, path)
    if version == SCHEMA_VERSION:
        return None, None
    backup = None
    if version > 0:
        backup = path.with_name(f"{path.name}.bak-v{version}")
        shutil.copy2(path, backup)
    conn.execute("BEGIN IMMEDIATE")
    try:
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[target].split(";"):
                if statement.strip():
                    conn.execute(statement)
            if target in MIGRATION_STEPS:
                MIGRATION_STEPS[target](conn)
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('created_at', ?)", (now_iso(),)
        )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    if version > 0:
        compact(conn, 0)  # the upgrade copied tables and dropped the old ones: repack
    return (version or None), backup


def integrity(conn: sqlite3.Connection, path: Path) -> None:
    """``PRAGMA quick_check``: refuse a damaged file with the way out."""
    problem = conn.execute("PRAGMA quick_check").fetchone()[0]
    if problem != "ok":
        raise DatabaseError(
            f"{path} is damaged ({problem}); restore it from git "
            f"(git checkout -- {path.name})"
        )


def compact(conn: sqlite3.Connection, min_free_pages: int = VACUUM_FREE_PAGES) -> bool:
    """VACUUM when many pages are free (after a migration or a big import); True if it ran."""
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    if free < min_free_pages:
        return False
    conn.execute("VACUUM")
    return True


# ---------------------------------------------------------------------------- the check stamp
# ``quick_check`` reads every page (130 ms at 2,000 assets). It runs on the first open of a file
# this user has not seen in its current form: the stamp (size, mtime, SQLite's file change
# counter) of a file that passed, or that the tool itself wrote and closed, is remembered
# outside the data folder. A file changed by anything else (git checkout, a copy, a disk fault
# that changes its size or time) is checked again.
def _stamp_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sre-tracker" / "verified.json"


def _stamp(path: Path) -> list[int] | None:
    try:
        st = path.stat()
        with open(path, "rb") as fh:
            fh.seek(24)
            counter = int.from_bytes(fh.read(4), "big")
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, counter]


def _load_stamps() -> dict[str, list[int]]:
    try:
        data = json.loads(_stamp_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def verified(path: Path) -> bool:
    """True when this file, as it is now, passed the check before (or the tool wrote it)."""
    stamp = _stamp(path)
    return stamp is not None and _load_stamps().get(str(Path(path).resolve())) == stamp


def remember(path: Path) -> None:
    """Record the file as sound in its current form (best effort: a cache, never an error)."""
    stamp = _stamp(path)
    if stamp is None:
        return
    stamps = _load_stamps()
    key = str(Path(path).resolve())
    if stamps.get(key) == stamp:
        return
    stamps[key] = stamp
    # Keep the cache small: forget files that no longer exist.
    stamps = {k: v for k, v in stamps.items() if os.path.exists(k)}
    target = _stamp_file()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(stamps), encoding="utf-8")
        os.replace(tmp, target)
    except OSError:
        pass


# ---------------------------------------------------------------------------- derived items
Cell = tuple[str, str]


def _in_cells(sql: str, params: list, cells: Iterable[Cell] | None) -> tuple[str, list]:
    """``sql`` (ending in a WHERE clause) limited to ``cells`` (None: all) in one parameter."""
    if cells is None:
        return sql, params
    return (sql + " AND (asset, capability) IN (SELECT json_extract(value, "
            "'$[0]'), json_extract(value, '$[1]') FROM json_each(?))",
            [*params, json.dumps(sorted(set(cells)))])


def fold_items(conn: sqlite3.Connection, cells: Iterable[Cell] | None = None, *,
               opened: Iterable[tuple[str, str, int]] = (), now: str = "") -> int:
    """Take the stored rows of untouched items (of ``cells``; None: all) into their cells
    (see _SCHEMA_V5): into a cell without derived items, those that opened last; into one
    with, those that opened at the same time as they did. ``opened``: items (asset,
    capability, level) opening ``now``, not stored yet: each goes into its cell by the same
    rule, or gets its row. Returns how many items the cells took."""
    found: dict[Cell, dict[str, list[tuple[int, bool]]]] = defaultdict(lambda: defaultdict(list))
    for asset, capability, level in opened:
        found[(asset, capability)][now].append((level, False))
    sql, params = _in_cells(f"SELECT asset, capability, level, opened_at FROM items WHERE "
                            f"{UNTOUCHED_SQL}", [], cells)
    for asset, capability, level, at in conn.execute(sql, params):
        found[(asset, capability)][at].append((level, True))
    if not found:
        return 0
    cell_sql, cell_params = _in_cells("SELECT asset, capability, open_levels, open_since "
                                      "FROM cells WHERE 1=1", [], found)
    derived = {(a, c): (levels, since) for a, c, levels, since in
               conn.execute(cell_sql, cell_params)}
    updates: list[tuple[str, str, str, str]] = []
    deletes: list[tuple[str, str, int]] = []
    inserts: list[tuple[str, str, int, str, str]] = []
    count = 0
    for cell, by_time in found.items():
        levels, since = derived.get(cell, ("", ""))
        if cell in derived and not levels:
            since = max(by_time)
        taken = by_time.get(since, []) if cell in derived else []
        if taken:
            merged = "".join(sorted(set(levels) | {str(lv) for lv, _row in taken}))
            updates.append((merged, since, *cell))
            deletes.extend((*cell, lv) for lv, row in taken if row)
            count += len(taken)
        inserts.extend((*cell, lv, now, now) for lv, row in by_time.get(now, [])
                       if not row and (lv, row) not in taken)
    conn.executemany("UPDATE cells SET open_levels = ?, open_since = ? "
                     "WHERE asset = ? AND capability = ?", updates)
    conn.executemany("DELETE FROM items WHERE asset = ? AND capability = ? AND level = ?",
                     deletes)
    conn.executemany("INSERT INTO items (asset, capability, level, opened_at, updated_at) "
                     "VALUES (?, ?, ?, ?, ?)", inserts)
    return count


def materialise_items(conn: sqlite3.Connection, keys: Iterable[tuple[str, str, int]]) -> int:
    """Give the derived items among ``keys`` (asset, capability, level) their rows again, so
    they can be changed as stored rows; returns how many were derived."""
    wanted: dict[Cell, set[int]] = defaultdict(set)
    for asset, capability, level in keys:
        wanted[(asset, capability)].add(int(level))
    if not wanted:
        return 0
    sql, params = _in_cells("SELECT asset, capability, open_levels, open_since FROM cells "
                            "WHERE open_levels != ''", [], wanted)
    inserts: list[tuple[str, str, int, str, str]] = []
    updates: list[tuple[str, str, str, str]] = []
    for asset, capability, levels, since in conn.execute(sql, params).fetchall():
        derived = {int(d) for d in levels}
        moved = derived & wanted[(asset, capability)]
        if not moved:
            continue
        inserts.extend((asset, capability, lv, since, since) for lv in sorted(moved))
        left = "".join(str(lv) for lv in sorted(derived - moved))
        updates.append((left, since if left else "", asset, capability))
    conn.executemany("INSERT INTO items (asset, capability, level, opened_at, updated_at) "
                     "VALUES (?, ?, ?, ?, ?)", inserts)
    conn.executemany("UPDATE cells SET open_levels = ?, open_since = ? "
                     "WHERE asset = ? AND capability = ?", updates)
    return len(inserts)


MIGRATION_STEPS[5] = fold_items


# ---------------------------------------------------------------------------- whole tables
# The merge driver and git's diff text-conversion see the tables as plain rows keyed by their
# primary key, whatever the schema version; these read and rewrite a file's tables as such.
def primary_key(conn: sqlite3.Connection, table: str) -> tuple[str, ...]:
    """The primary-key columns of ``table``, in key order (empty when it has none)."""
    info = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
    return tuple(name for _pos, name in sorted((r[5], r[1]) for r in info if r[5]))


def table_rows(conn: sqlite3.Connection, table: str, *,
               rowid_order: bool = True) -> list[dict[str, object]]:
    """Every row of ``table`` as a column → value dict, in rowid (insertion) order unless
    ``rowid_order`` is false (then in no particular order: any table, of any schema). A
    WITHOUT ROWID table comes in primary-key order."""
    source = READ_AS.get(table, table)
    if source != table and not _exists(conn, source):
        source = table  # a file from before the view (dump reads any version)
    order = " ORDER BY rowid" if rowid_order and _has_rowid(conn, source) else ""
    cur = conn.execute(f'SELECT * FROM "{source}"{order}')
    names = [d[0] for d in cur.description]
    hidden = HIDDEN_COLUMNS.get(table, ())
    keep = [i for i, name in enumerate(names) if name not in hidden]
    names = [names[i] for i in keep]
    return [dict(zip(names, (values[i] for i in keep), strict=True)) for values in cur]


def _exists(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() \
        is not None


def rows_by_key(conn: sqlite3.Connection, table: str) -> dict[tuple, dict[str, object]]:
    """Every row of ``table`` keyed by its primary-key values."""
    pk = primary_key(conn, table)
    return {tuple(row[k] for k in pk): row for row in table_rows(conn, table)}


def rewrite_rows(conn: sqlite3.Connection, table: str, current: dict[tuple, dict[str, object]],
                 wanted: dict[tuple, dict[str, object]]) -> None:
    """Turn ``table`` from ``current`` into ``wanted`` (both keyed as :func:`rows_by_key`):
    delete, insert and update only what differs, so kept rows keep their rowids.

    Call inside a transaction; foreign keys are checked at its commit, not per statement.
    """
    conn.execute("PRAGMA defer_foreign_keys=ON")
    pk = primary_key(conn, table)
    where = " AND ".join(f'"{k}" = ?' for k in pk)
    if table in READ_AS:  # the items: what changes is stored first, and folded back after
        changing = [key for key in current.keys() | wanted.keys()
                    if current.get(key) != wanted.get(key)]
        materialise_items(conn, changing)
        _rewrite(conn, table, where, current, wanted)
        fold_items(conn, {(key[0], key[1]) for key in changing})
        return
    _rewrite(conn, table, where, current, wanted)


def _rewrite(conn: sqlite3.Connection, table: str, where: str,
             current: dict[tuple, dict[str, object]], wanted: dict[tuple, dict[str, object]]
             ) -> None:
    for key in current.keys() - wanted.keys():
        conn.execute(f'DELETE FROM "{table}" WHERE {where}', key)
    for key, row in wanted.items():
        old = current.get(key)
        if old == row:
            continue
        names = list(row)
        if old is None:
            cols = ",".join(f'"{n}"' for n in names)
            marks = ",".join("?" * len(names))
            conn.execute(f'INSERT INTO "{table}" ({cols}) VALUES ({marks})',
                         [row[n] for n in names])
        else:
            sets = ",".join(f'"{n}" = ?' for n in names)
            conn.execute(f'UPDATE "{table}" SET {sets} WHERE {where}',
                         [*(row[n] for n in names), *key])


def open_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection that never writes (no journal, no lock): for a file git hands
    over, which may be a temporary copy or a blob of another commit."""
    return sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro&immutable=1", uri=True)


def file_identity(conn: sqlite3.Connection) -> tuple[int, int, list[str]]:
    """``(application_id, user_version, table names)`` of an open file, without checking it."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    )]
    return app_id, version, tables


def _has_rowid(conn: sqlite3.Connection, table: str) -> bool:
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                       (table,)).fetchone()
    return not (sql and sql[0] and "WITHOUT ROWID" in sql[0].upper())


# ---------------------------------------------------------------------------- definitions
# The tables setup keeps in step with flows.csv and maturity_model.csv (imports.py holds the
# rules of what is added, updated or archived).
def definition_rows(conn: sqlite3.Connection, table: str,
                    key: tuple[str, ...]) -> dict[tuple, sqlite3.Row]:
    """Every row of a definitions table (archived too), by its key columns."""
    _definitions_table(table)
    return {tuple(r[k] for k in key): r for r in conn.execute(f"SELECT * FROM {table}")}


def upsert_definitions(conn: sqlite3.Connection, table: str, key: tuple[str, ...],
                       columns: tuple[str, ...], rows: dict[tuple, tuple]) -> None:
    """Insert or update ``rows`` ({key: values of ``columns``}), un-archiving them."""
    _definitions_table(table)
    names = (*key, *columns)
    conn.executemany(
        f"INSERT INTO {table} ({', '.join(names)}) "
        f"VALUES ({', '.join('?' * len(names))}) ON CONFLICT({', '.join(key)}) "
        "DO UPDATE SET " + "".join(f"{col} = excluded.{col}, " for col in columns)
        + "archived_at = NULL",
        [(*k, *values) for k, values in rows.items()],
    )


def archive_definitions(conn: sqlite3.Connection, table: str, key: tuple[str, ...],
                        keys: list[tuple], when: str) -> None:
    """Mark the rows with these keys archived (kept, with their history, never deleted)."""
    _definitions_table(table)
    conn.executemany(
        f"UPDATE {table} SET archived_at = ? WHERE " + " AND ".join(f"{k} = ?" for k in key),
        [(when, *k) for k in keys],
    )


def active_names(conn: sqlite3.Connection, table: str, column: str) -> list[str]:
    """The names in ``column`` of a definitions table's rows that are not archived."""
    _definitions_table(table)
    return [r[0] for r in conn.execute(f"SELECT {column} FROM {table} WHERE archived_at IS NULL")]


_DEFINITION_TABLES = frozenset({"assets", "flows", "capabilities", "questions", "checks",
                                "asset_params"})


def _definitions_table(table: str) -> None:
    # Table and column names cannot be bound as parameters; only these tables are formatted in.
    if table not in _DEFINITION_TABLES:
        raise ValueError(f"not a definitions table: {table}")

"""The SQLite store (``sre_data.db``): schema, migrations, transactions and every SQL statement.

One connection per command, explicit transactions, parameterised SQL only, schema upgrades keyed
on ``PRAGMA user_version`` (a backup copy is made first). The rollback journal (not WAL) keeps the
committed file complete once the connection is closed, which git needs.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import maturity as mt
from csvfiles import AssessmentRow, FlowRow, ModelRow
from errors import DatabaseError, InputError, NewerSchema
from names import unknown_message

if TYPE_CHECKING:
    import pandas as pd

DB_FILE = "sre_data.db"
MATRIX_FILE = "sre_matrix.csv"
APPLICATION_ID = 0x53524554  # "SRET": marks the file as ours
SCHEMA_VERSION = 2

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

MIGRATIONS = {1: _SCHEMA_V1, 2: _SCHEMA_V2}


class Rollback(Exception):
    """Raised inside :meth:`Database.transaction` to undo it without an error."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Database:
    """One connection to ``sre_data.db``; use as a context manager.

    :param path: the database file.
    :param create: create the file when missing (``setup`` only).
    :raises DatabaseError: the file is missing, corrupt, foreign or from a newer version.
    """

    def __init__(self, path: Path, *, create: bool = False) -> None:
        self.path = Path(path)
        self.migrated_from: int | None = None
        self.backup: Path | None = None
        if not self.path.exists() and not create:
            raise DatabaseError(
                f"no {self.path.name} in {self.path.parent}; run 'sre_tracker.py setup' "
                "(or setup --from-csv) there first, or pass --data-dir"
            )
        if self.path.exists():
            _check_header(self.path)
        try:
            self.conn = sqlite3.connect(self.path, isolation_level=None)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA journal_mode=DELETE")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self._check_and_migrate()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise DatabaseError(
                f"{self.path} is damaged ({exc}); restore it from git "
                f"(git checkout -- {self.path.name}) or move it away"
            ) from None

    def close(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.close()
            self.conn = None  # type: ignore[assignment]

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All statements inside commit together, or none does (Ctrl-C included).

        Raise :class:`Rollback` inside to undo everything quietly (a dry run, or a refresh
        that changed nothing and must leave the file byte-identical).
        """
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except Rollback:
            self.conn.execute("ROLLBACK")
            return
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def _check_and_migrate(self) -> None:
        app_id = self.conn.execute("PRAGMA application_id").fetchone()[0]
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        tables = self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id != APPLICATION_ID and (app_id != 0 or tables):
            raise DatabaseError(
                f"{self.path} is not an sre-tracker database (another application's file); "
                "move it away or pass --data-dir"
            )
        if version > SCHEMA_VERSION:
            raise NewerSchema(
                f"{self.path} was written by a newer sre-tracker (schema {version}, this one "
                f"knows {SCHEMA_VERSION}); upgrade sre-tracker"
            )
        problem = self.conn.execute("PRAGMA quick_check").fetchone()[0]
        if problem != "ok":
            raise DatabaseError(
                f"{self.path} is damaged ({problem}); restore it from git "
                f"(git checkout -- {self.path.name})"
            )
        if version == SCHEMA_VERSION:
            return
        if version > 0:
            self.backup = self.path.with_name(f"{self.path.name}.bak-v{version}")
            shutil.copy2(self.path, self.backup)
            self.migrated_from = version
        with self.transaction() as conn:
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[target].split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('created_at', ?)", (now_iso(),)
            )

    # ------------------------------------------------------------------ reading
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def is_empty(self) -> bool:
        return not self.conn.execute("SELECT 1 FROM capabilities LIMIT 1").fetchone()

    def load_model(self) -> dict[str, mt.Capability]:
        """Active capabilities in model order, each with its levels."""
        caps = self.conn.execute(
            "SELECT capability, category FROM capabilities WHERE archived_at IS NULL "
            "ORDER BY position, capability"
        ).fetchall()
        rows: dict[str, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
        for r in self.conn.execute(
            "SELECT * FROM questions WHERE archived_at IS NULL ORDER BY capability, level, seq"
        ):
            rows[r["capability"]][r["level"]].append(dict(r))
        model = {}
        for c in caps:
            levels = {lv: mt.merge_level_rows(qs) for lv, qs in rows[c["capability"]].items()}
            model[c["capability"]] = mt.Capability(c["capability"], c["category"], levels)
        return model

    def load_assets(self) -> dict[str, AssetInfo]:
        """Active assets with their flows, team and target (highest Target Level of its flows)."""
        assets: dict[str, AssetInfo] = {}
        for r in self.conn.execute(
            "SELECT flow, asset, team, target_level FROM flows WHERE archived_at IS NULL "
            "ORDER BY position, flow, asset"
        ):
            info = assets.setdefault(r["asset"], AssetInfo(r["asset"]))
            info.flows.append(r["flow"])
            info.targets.append(r["target_level"])
            if r["team"] and not info.team:
                info.team = r["team"]
        return assets

    def load_cells(self, scope: Iterable[tuple[str, str]] | None = None) -> dict:
        """Recorded cells keyed by (asset, capability)."""
        sql = "SELECT * FROM cells"
        cells = {}
        wanted = set(scope) if scope is not None else None
        for r in self.conn.execute(sql):
            key = (r["asset"], r["capability"])
            if wanted is not None and key not in wanted:
                continue
            cells[key] = mt.Cell(
                asset=r["asset"], capability=r["capability"], state=r["state"], level=r["level"],
                na_reason=r["na_reason"], na_until=r["na_until"], assessed_by=r["assessed_by"],
                assessed_at=r["assessed_at"], failed_question=r["failed_question"],
            )
        return cells

    def load_items(self, states: Iterable[str] | None = None) -> list[dict]:
        """Items as dicts (every column), optionally only those in ``states``."""
        if states is None:
            cur = self.conn.execute("SELECT * FROM items ORDER BY key")
        else:
            st = list(states)
            marks = ",".join("?" * len(st))
            cur = self.conn.execute(
                f"SELECT * FROM items WHERE state IN ({marks}) ORDER BY key", st
            )
        return [dict(r) for r in cur]

    def open_item_cells(self) -> list[sqlite3.Row]:
        """(asset, capability, go_live) of every item still counted as a gap: all the matrix
        needs, without building a dict per item."""
        return self.conn.execute(
            "SELECT asset, capability, go_live FROM items WHERE state IN (?, ?)",
            (mt.OPEN, mt.DONE),
        ).fetchall()

    def history(
        self, asset: str | None = None, capability: str | None = None, since: str | None = None
    ) -> list[dict]:
        """Assessment history, newest first."""
        sql = "SELECT * FROM assessments WHERE 1=1"
        params: list[str] = []
        if asset:
            sql += " AND asset = ?"
            params.append(asset)
        if capability:
            sql += " AND capability = ?"
            params.append(capability)
        if since:
            sql += " AND assessed_at >= ?"
            params.append(since)
        sql += " ORDER BY assessed_at DESC, rowid DESC"
        return [dict(r, answers=json.loads(r["answers"])) for r in self.conn.execute(sql, params)]

    def history_names(self, column: str) -> set[str]:
        """Every asset (``column="asset"``) or capability ever assessed, archived ones too."""
        if column not in ("asset", "capability"):
            raise ValueError(column)
        return {r[0] for r in self.conn.execute(f"SELECT DISTINCT {column} FROM assessments")}

    def level_history(self) -> sqlite3.Cursor:
        """Every recorded level change, oldest first, as rows with ``asset``, ``capability``,
        ``new_state``, ``new_level``, ``na_until``, ``assessed_at`` (a cursor: read it once,
        row by row)."""
        return self.conn.execute(
            "SELECT asset, capability, new_state, new_level, na_until, assessed_at "
            "FROM assessments ORDER BY assessed_at, rowid"
        )

    def frame(self, sql: str, params: Iterable[object] = ()) -> pd.DataFrame:
        """A query as a pandas DataFrame."""
        import pandas as pd

        return pd.read_sql_query(sql, self.conn, params=list(params))

    # ------------------------------------------------------------------ setup import
    def import_definitions(
        self, flows: list[FlowRow], model: list[ModelRow], now: str
    ) -> ImportReport:
        """Bring flows and model in line with the CSVs: add, update text, archive what left.

        Runs inside the caller's transaction. Assessments are never touched.
        """
        report = ImportReport()
        c = self.conn
        # Assets and flows.
        old_assets = {r["asset"]: r["archived_at"] for r in c.execute("SELECT * FROM assets")}
        new_assets: dict[str, str] = {}
        for f in flows:
            new_assets.setdefault(f.asset, f.team)
            if f.team and not new_assets[f.asset]:
                new_assets[f.asset] = f.team
        for asset in new_assets:
            if asset not in old_assets:
                report.added.append(f"asset {asset}")
            elif old_assets[asset] is not None:
                report.added.append(f"asset {asset} (restored)")
        c.executemany(
            "INSERT INTO assets (asset, team) VALUES (?, ?) ON CONFLICT(asset) DO UPDATE SET "
            "team = excluded.team, archived_at = NULL",
            list(new_assets.items()),
        )
        for asset, archived in old_assets.items():
            if asset not in new_assets and archived is None:
                report.archived.append(f"asset {asset}")
                c.execute("UPDATE assets SET archived_at = ? WHERE asset = ?", (now, asset))

        old_flows = {
            (r["flow"], r["asset"]): dict(r) for r in c.execute("SELECT * FROM flows")
        }
        new_keys = set()
        for f in flows:
            key = (f.flow, f.asset)
            new_keys.add(key)
            old = old_flows.get(key)
            if old is None:
                report.added.append(f"{f.flow}/{f.asset}")
            elif old["archived_at"] is not None:
                report.added.append(f"{f.flow}/{f.asset} (restored)")
            elif (old["team"], old["target_level"]) != (f.team, f.target_level):
                report.updated.append(f"{f.flow}/{f.asset}")
        c.executemany(
            "INSERT INTO flows (flow, asset, team, target_level, position) VALUES (?,?,?,?,?) "
            "ON CONFLICT(flow, asset) DO UPDATE SET team = excluded.team, "
            "target_level = excluded.target_level, position = excluded.position, "
            "archived_at = NULL",
            [(f.flow, f.asset, f.team, f.target_level, pos) for pos, f in enumerate(flows)],
        )
        for key, old in old_flows.items():
            if key not in new_keys and old["archived_at"] is None:
                report.archived.append(f"{key[0]}/{key[1]}")
                c.execute(
                    "UPDATE flows SET archived_at = ? WHERE flow = ? AND asset = ?", (now, *key)
                )

        # Capabilities and questions.
        old_caps = {r["capability"]: dict(r) for r in c.execute("SELECT * FROM capabilities")}
        new_caps: dict[str, str] = {}
        for m in model:
            new_caps.setdefault(m.capability, m.category)
        for cap, category in new_caps.items():
            old = old_caps.get(cap)
            if old is None:
                report.added.append(f"capability {cap}")
            elif old["archived_at"] is not None:
                report.added.append(f"capability {cap} (restored)")
            elif old["category"] != category:
                report.updated.append(f"capability {cap}")
        c.executemany(
            "INSERT INTO capabilities (capability, category, position) VALUES (?,?,?) "
            "ON CONFLICT(capability) DO UPDATE SET category = excluded.category, "
            "position = excluded.position, archived_at = NULL",
            [(cap, cat, pos) for pos, (cap, cat) in enumerate(new_caps.items())],
        )
        for cap, old in old_caps.items():
            if cap not in new_caps and old["archived_at"] is None:
                report.archived.append(f"capability {cap}")
                c.execute(
                    "UPDATE capabilities SET archived_at = ? WHERE capability = ?", (now, cap)
                )

        old_q = {
            (r["capability"], r["level"], r["seq"]): dict(r) for r in c.execute(
                "SELECT * FROM questions"
            )
        }
        seqs: dict[tuple[str, int], int] = defaultdict(int)
        new_q = {}
        for m in model:
            seqs[(m.capability, m.level)] += 1
            key = (m.capability, m.level, seqs[(m.capability, m.level)])
            new_q[key] = (m.criteria, m.question, m.owner, m.priority, int(m.go_live),
                          m.milestone)
        changed_text = 0
        for key, values in new_q.items():
            old = old_q.get(key)
            fields = ("criteria", "question", "owner", "priority", "go_live", "milestone")
            if old is not None and old["archived_at"] is None and tuple(
                old[f] for f in fields
            ) != values:
                changed_text += 1
        if changed_text:
            report.updated.append(f"{changed_text} question rows")
        c.executemany(
            "INSERT INTO questions (capability, level, seq, criteria, question, owner, priority, "
            "go_live, milestone) VALUES (?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(capability, level, seq) DO UPDATE SET criteria = excluded.criteria, "
            "question = excluded.question, owner = excluded.owner, priority = excluded.priority, "
            "go_live = excluded.go_live, milestone = excluded.milestone, archived_at = NULL",
            [(*k, *v) for k, v in new_q.items()],
        )
        gone = [k for k, old in old_q.items() if k not in new_q and old["archived_at"] is None]
        caps_gone = {cap for cap in old_caps if cap not in new_caps}
        q_gone = [k for k in gone if k[0] not in caps_gone]
        if q_gone:
            report.archived.append(f"{len(q_gone)} question rows")
        c.executemany(
            "UPDATE questions SET archived_at = ? WHERE capability = ? AND level = ? AND seq = ?",
            [(now, *k) for k in gone],
        )
        if report.changed:
            # The merge driver follows the side whose definitions were imported last.
            c.execute(
                "INSERT INTO meta (key, value) VALUES ('definitions_imported_at', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (now,),
            )
        return report

    def import_assessments(
        self, rows: list[AssessmentRow], assessor: str, now: str, source_name: str
    ) -> tuple[set[tuple[str, str]], list[str]]:
        """Apply bulk levels (SPEC §2, §11); returns (cells changed, skipped descriptions).

        The caller refreshes the items, passing the changed cells as re-assessed.
        """
        assets = {
            r["asset"].casefold(): r["asset"]
            for r in self.conn.execute("SELECT asset FROM assets WHERE archived_at IS NULL")
        }
        caps = {
            r["capability"].casefold(): r["capability"] for r in self.conn.execute(
                "SELECT capability FROM capabilities WHERE archived_at IS NULL"
            )
        }
        for row in rows:
            where = f"{source_name}:{row.line}, column"
            if row.asset.casefold() not in assets:
                raise InputError(f"{where} 'Asset Name': " + unknown_message(
                    "asset", row.asset, assets.values(), "add it to flows.csv or fix the name"))
            if row.capability.casefold() not in caps:
                raise InputError(f"{where} 'Capability': " + unknown_message(
                    "capability", row.capability, caps.values(),
                    "add it to maturity_model.csv or fix the name"))
        cells = self.load_cells()
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
            entries.append(_entry(
                asset, cap, cell.state, cell.level, state, row.level, [], "", row.notes,
                row.na_reason if row.level is None else "", "", row.assessed_by or assessor, at,
                "import",
            ))
        self._store(entries)
        return {(e[1], e[2]) for e in entries}, skipped

    # ------------------------------------------------------------------ assessments
    def record_assessment(
        self,
        asset: str,
        capability: str,
        state: str,
        level: int | None,
        *,
        answers: list[dict],
        failed_question: str,
        notes: str,
        na_reason: str,
        na_until: str,
        assessed_by: str,
        assessed_at: str,
        source: str = "assess",
        refresh: bool = True,
    ) -> list[mt.ItemChange]:
        """Append to the history, set the cell, and (with refresh) update its items.

        Runs inside the caller's transaction.
        """
        old = self.conn.execute(
            "SELECT state, level FROM cells WHERE asset = ? AND capability = ?",
            (asset, capability),
        ).fetchone()
        self._store([_entry(
            asset, capability, old["state"] if old else mt.NOT_ASSESSED,
            old["level"] if old else None, state, level, answers, failed_question, notes,
            na_reason, na_until, assessed_by, assessed_at, source,
        )])
        if not refresh:
            return []
        return self.refresh_items({(asset, capability)}, reassessed={(asset, capability)})

    def _store(self, entries: list[tuple]) -> None:
        """Append history entries and set their cells (set-based, inside a transaction)."""
        self.conn.executemany(
            "INSERT INTO assessments (id, asset, capability, old_state, old_level, new_state, "
            "new_level, answers, failed_question, notes, na_reason, na_until, assessed_by, "
            "assessed_at, source) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            entries,
        )
        self.conn.executemany(
            "INSERT INTO cells (asset, capability, state, level, na_reason, na_until, "
            "failed_question, notes, assessed_by, assessed_at, assessment_id) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(asset, capability) DO UPDATE SET "
            "state = excluded.state, level = excluded.level, na_reason = excluded.na_reason, "
            "na_until = excluded.na_until, failed_question = excluded.failed_question, "
            "notes = excluded.notes, assessed_by = excluded.assessed_by, "
            "assessed_at = excluded.assessed_at, assessment_id = excluded.assessment_id",
            [(e[1], e[2], e[5], e[6], e[10], e[11], e[8], e[9], e[12], e[13], e[0])
             for e in entries],
        )

    # ------------------------------------------------------------------ items
    def desired_items(
        self, today: str, scope: set[tuple[str, str]] | None = None
    ) -> tuple[dict[str, mt.ItemSpec], dict[tuple[str, str], int | None]]:
        """What the rules ask for now: items by key, and assessed levels by cell."""
        model = self.load_model()
        assets = self.load_assets()
        cells = self.load_cells(scope)
        desired: dict[str, mt.ItemSpec] = {}
        levels: dict[tuple[str, str], int | None] = {}
        for key, raw in cells.items():
            cell = mt.effective_cell(raw, today)
            levels[key] = cell.level if cell.state == mt.ASSESSED else None
            cap, info = model.get(key[1]), assets.get(key[0])
            if cap is None or info is None:
                continue
            for spec in mt.items_for_cell(cap, cell, mt.asset_target(info.targets)):
                desired[spec.key] = spec
        return desired, levels

    def refresh_items(
        self,
        scope: set[tuple[str, str]] | None = None,
        reassessed: set[tuple[str, str]] | frozenset = frozenset(),
        now: str | None = None,
    ) -> list[mt.ItemChange]:
        """Bring the items table in line with the rules (inside the caller's transaction)."""
        now = now or now_iso()
        desired, levels = self.desired_items(now[:10], scope)
        existing: dict[str, mt.ItemRecord] = {}
        for r in self.conn.execute(
            "SELECT key, asset, capability, state, work_status, rally_state, rally_oid FROM items"
        ):
            if scope is not None and (r["asset"], r["capability"]) not in scope:
                continue
            existing[r["key"]] = mt.ItemRecord(
                r["key"], r["state"], r["work_status"], r["rally_state"], r["rally_oid"]
            )
        changes = mt.reconcile(existing, desired, levels, frozenset(reassessed), scope)
        by_key = {ch.key: ch for ch in changes}
        c = self.conn
        new_rows, updates = [], []
        for key, spec in desired.items():
            ch = by_key.get(key)
            values = (spec.category, spec.criteria, spec.owner, spec.priority, int(spec.go_live),
                      spec.milestone, spec.why)
            if ch is not None and ch.old_state is None:
                new_rows.append((key, spec.asset, spec.capability, spec.level, *values,
                                 mt.OPEN, mt.NOT_STARTED, now, now))
            else:
                updates.append((*values, now, key, *values))
        c.executemany(
            "INSERT INTO items (key, asset, capability, level, category, criteria, owner, "
            "priority, go_live, milestone, why, state, work_status, opened_at, updated_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            new_rows,
        )
        # Keep the item's words in line with the model; touch only rows that differ.
        c.executemany(
            "UPDATE items SET category=?, criteria=?, owner=?, priority=?, go_live=?, "
            "milestone=?, why=?, updated_at=? WHERE key=? AND NOT (category=? AND criteria=? "
            "AND owner=? AND priority=? AND go_live=? AND milestone=? AND why=?)",
            updates,
        )
        for ch in changes:
            if ch.old_state is None:
                continue
            if ch.new_state == mt.OPEN:
                c.execute(
                    "UPDATE items SET state=?, work_status=?, closed_at='', done_at='', "
                    "opened_at=?, updated_at=? WHERE key=?",
                    (ch.new_state, ch.work_status, now, now, ch.key),
                )
            else:
                c.execute(
                    "UPDATE items SET state=?, closed_at=?, updated_at=? WHERE key=?",
                    (ch.new_state, now, now, ch.key),
                )
        return changes

    def set_item_story(
        self, key: str, oid: str, formatted_id: str, url: str, rally_state: str, now: str
    ) -> None:
        """Record the Rally story of an item (called as soon as Rally returns it)."""
        self.conn.execute(
            "UPDATE items SET rally_oid=?, rally_id=?, rally_url=?, updated_at=? WHERE key=?",
            (oid, formatted_id, url, now, key),
        )
        self.apply_story_states({key: rally_state}, now)

    def apply_story_states(self, states: dict[str, str | None], now: str) -> list[tuple]:
        """Apply Rally schedule states (None: story gone) to items; returns what changed.

        Each change is (key, old work status, new work status, old state, new state).
        """
        if not states:
            return []
        rows = {}
        keys = list(states)
        for i in range(0, len(keys), 900):  # stay under SQLite's bound-variable limit
            chunk = keys[i:i + 900]
            marks = ",".join("?" * len(chunk))
            rows.update((r["key"], r) for r in self.conn.execute(
                "SELECT key, state, work_status, rally_state, rally_oid, done_at FROM items "
                f"WHERE key IN ({marks})", chunk))
        changed, params = [], []
        for key, rally_state in states.items():
            r = rows.get(key)
            if r is None:
                continue
            rec = mt.ItemRecord(key, r["state"], r["work_status"], r["rally_state"], r["rally_oid"])
            new = mt.apply_story_state(rec, rally_state)
            if new == rec:
                continue
            done_at = r["done_at"]
            if new.state == mt.DONE and rec.state != mt.DONE:
                done_at = now
            changed.append((key, rec.work_status, new.work_status, rec.state, new.state))
            params.append((new.state, new.work_status, new.rally_state, done_at, now, key))
        self.conn.executemany(
            "UPDATE items SET state=?, work_status=?, rally_state=?, done_at=?, updated_at=? "
            "WHERE key=?",
            params,
        )
        return changed


def _entry(asset: str, capability: str, old_state: str, old_level: int | None, state: str,
           level: int | None, answers: list[dict], failed_question: str, notes: str,
           na_reason: str, na_until: str, assessed_by: str, assessed_at: str,
           source: str) -> tuple:
    """One history row, in the column order of the assessments table."""
    return (uuid.uuid4().hex, asset, capability, old_state, old_level, state, level,
            json.dumps(answers), failed_question, notes, na_reason, na_until, assessed_by,
            assessed_at, source)


def _check_header(path: Path) -> None:
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head and head != b"SQLite format 3\x00":
        raise DatabaseError(
            f"{path} is not an SQLite database (corrupt or foreign file); restore it from git "
            f"(git checkout -- {path.name}) or move it away"
        )


@dataclass
class AssetInfo:
    """An active asset: its flows, Target Levels per flow, and team."""

    asset: str
    flows: list[str] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)
    team: str = ""

    @property
    def target(self) -> int:
        return mt.asset_target(self.targets)

    @property
    def flow_label(self) -> str:
        return ", ".join(sorted(set(self.flows)))


@dataclass
class ImportReport:
    """What an import of the CSVs added, updated and archived."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    archived: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.archived)


# ---------------------------------------------------------------------------- whole tables
# The merge driver and git's diff text-conversion see the tables as plain rows keyed by their
# primary key; the statements for that live here with the others.
def primary_key(conn: sqlite3.Connection, table: str) -> tuple[str, ...]:
    """The primary-key columns of ``table``, in key order (empty when it has none)."""
    info = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
    return tuple(name for _pos, name in sorted((r[5], r[1]) for r in info if r[5]))


def table_rows(conn: sqlite3.Connection, table: str, *,
               rowid_order: bool = True) -> list[dict[str, object]]:
    """Every row of ``table`` as a column → value dict, in rowid (insertion) order unless
    ``rowid_order`` is false (then in no particular order: any table, of any schema)."""
    order = " ORDER BY rowid" if rowid_order else ""
    cur = conn.execute(f'SELECT * FROM "{table}"{order}')
    names = [d[0] for d in cur.description]
    return [dict(zip(names, values, strict=True)) for values in cur]


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

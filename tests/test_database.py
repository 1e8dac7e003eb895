"""The SQLite store: migrations with backup, refusing bad files, transactions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import database
from database import Database
from sre_maturity.rules import maturity as mt
from sre_maturity.store import schema
from sre_maturity.support.errors import DatabaseError


def make_v1_file(path: Path) -> None:
    """A database as version 1 of the schema wrote it, with some data."""
    conn = sqlite3.connect(path)
    conn.executescript(schema._SCHEMA_V1)
    conn.execute(f"PRAGMA application_id={database.APPLICATION_ID}")
    conn.execute("PRAGMA user_version=1")
    conn.execute("INSERT INTO assets (asset) VALUES ('api')")
    conn.execute("INSERT INTO capabilities (capability, category) VALUES ('Alerts', 'Alerting')")
    conn.execute("INSERT INTO cells (asset, capability, state, level, assessed_at) "
                 "VALUES ('api', 'Alerts', 'Assessed', 2, '2026-01-01')")
    conn.execute("INSERT INTO items (key, asset, capability, level, opened_at, rally_id) "
                 "VALUES ('api / Alerts / 3', 'api', 'Alerts', 3, '2026-01-01', 'US7')")
    conn.commit()
    conn.close()


def test_new_database_has_current_schema(tmp_path):
    with Database(tmp_path / "sre_data.db", create=True) as db:
        assert (db.schema_version(), db.is_empty()) == (database.SCHEMA_VERSION, True)


def test_missing_database_says_run_setup(tmp_path):
    with pytest.raises(DatabaseError, match="run 'sre_tracker.py setup'"):
        Database(tmp_path / "sre_data.db")


def test_old_schema_is_migrated_keeping_data(tmp_path):
    path = tmp_path / "sre_data.db"
    make_v1_file(path)
    with Database(path) as db:
        item = db.load_items()[0]
        assert (db.schema_version(), item["rally_id"], item["done_at"],
                db.load_cells()[("api", "Alerts")].level) == (database.SCHEMA_VERSION, "US7", "", 2)


def test_migration_makes_a_backup_of_the_old_file_first(tmp_path):
    path = tmp_path / "sre_data.db"
    make_v1_file(path)
    original = path.read_bytes()
    with Database(path) as db:
        backup = db.backup
    assert backup == tmp_path / "sre_data.db.bak-v1" and backup.read_bytes() == original


def test_foreign_sqlite_file_is_refused_untouched(tmp_path):
    path = tmp_path / "sre_data.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE other (x)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(DatabaseError, match="not an sre-tracker database"):
        Database(path)
    assert path.read_bytes() == before


def test_non_sqlite_file_is_refused_untouched(tmp_path):
    path = tmp_path / "sre_data.db"
    path.write_bytes(b"PK\x03\x04 definitely a zip file" * 100)
    with pytest.raises(DatabaseError, match="not an SQLite database"):
        Database(path)
    assert path.read_bytes().startswith(b"PK")


def test_damaged_database_is_refused(tmp_path):
    path = tmp_path / "sre_data.db"
    with Database(path, create=True):
        pass
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)
    path.write_bytes(bytes(data))
    with pytest.raises(DatabaseError, match="damaged|not an"):
        Database(path)


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "sre_data.db"
    with Database(path, create=True) as db:
        db.conn.execute("PRAGMA user_version=99")
    with pytest.raises(DatabaseError, match="newer sre-tracker"):
        Database(path)


def test_transaction_rolls_back_on_interrupt(tmp_path):
    path = tmp_path / "sre_data.db"
    with Database(path, create=True) as db:
        with pytest.raises(KeyboardInterrupt), db.transaction() as conn:
            conn.execute("INSERT INTO assets (asset) VALUES ('x')")
            raise KeyboardInterrupt
        assert db.conn.execute("SELECT count(*) FROM assets").fetchone()[0] == 0


def test_rollback_undoes_the_transaction_quietly_and_leaves_the_file_as_it_was(tmp_path):
    path = tmp_path / "x.db"
    Database(path, create=True).close()
    before = path.read_bytes()
    with Database(path) as db:
        with db.transaction() as conn:
            conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
            raise database.Rollback
        assert db.conn.execute("SELECT count(*) FROM meta WHERE key = 'k'").fetchone()[0] == 0
        with db.transaction() as conn:  # the connection is usable again afterwards
            conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
    assert path.read_bytes() != before


def test_journal_mode_is_delete_so_the_file_is_complete(tmp_path):
    with Database(tmp_path / "sre_data.db", create=True) as db:
        assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_history_is_append_only_and_newest_first(ready):
    with Database(ready / "sre_data.db") as db:
        for level, at in ((1, "2026-10-01"), (3, "2026-11-01")):
            with db.transaction():
                db.record_assessment("web", "Alerts", mt.ASSESSED, level, answers=[],
                                     failed_question="", notes="", na_reason="", na_until="",
                                     assessed_by="x", assessed_at=at)
        history = db.history(asset="web")
    assert [(h["old_level"], h["new_level"]) for h in history] == [(1, 3), (None, 1)]


def test_import_definitions_adds_updates_archives_and_restores_each_kind(tmp_path):
    from sre_maturity.store.csvfiles import FlowRow, ModelRow
    from sre_maturity.store.imports import import_definitions

    def flow(name, asset, team="t", target=3):
        return FlowRow(0, name, asset, team, target)

    def q(cap, level, criteria="c", category="Cat"):
        return ModelRow(0, category, cap, level, criteria, "q?", "Asset", "P1", True, "Go-Live")

    with Database(tmp_path / "x.db", create=True) as db, db.transaction():
        first = import_definitions(db, [flow("F", "a"), flow("F", "b")],
                                      [q("Alerts", 1), q("Alerts", 2), q("Logs", 1)], "t1")
        assert first.added == ["asset a", "asset b", "F/a", "F/b", "capability Alerts",
                               "capability Logs"]
        second = import_definitions(db, [flow("F", "a", target=4)],
                                       [q("Alerts", 1, criteria="new", category="Other"), q("Alerts", 2,
                                                                         category="Other")],
                                       "t2")
        assert (second.added, second.updated, second.archived) == (
            [], ["F/a", "capability Alerts", "1 question rows"],
            ["asset b", "F/b", "capability Logs"])  # Logs' question goes with Logs
        third = import_definitions(db, [flow("F", "a", target=4), flow("F", "b")],
                                      [q("Alerts", 1, criteria="new", category="Other"),
                                       q("Alerts", 2, category="Other")], "t3")
        assert (third.added, third.updated, third.archived) == (
            ["asset b (restored)", "F/b (restored)"], [], [])
        assert not import_definitions(db, [flow("F", "a", target=4), flow("F", "b")],
                                         [q("Alerts", 1, criteria="new", category="Other"),
                                          q("Alerts", 2, category="Other")], "t4").changed

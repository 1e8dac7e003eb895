"""Merging the data folder in git: the database and matrix drivers, and the readable dump."""

from __future__ import annotations

import csv
import io
import shutil
import sqlite3
from pathlib import Path

import pytest

import database
from conftest import at, git, pull, push
from database import Database
from sre_maturity.git import merge
from sre_maturity.store import schema
from sre_maturity.support.errors import DatabaseError, InputError

T1, T2, T3 = "2026-11-01T10:00:00+00:00", "2026-11-01T11:00:00+00:00", "2026-11-01T12:00:00+00:00"


def assess(run, monkeypatch, folder: Path, when: str, asset: str, capability: str,
           level: str) -> None:
    at(monkeypatch, when)
    code, _out, err = run(folder, "assess", "--asset", asset, "--capability", capability,
                          "--level", level, "--assessor", folder.name)
    assert code == 0, err


def cell_of(folder: Path, asset: str, capability: str) -> tuple:
    with Database(folder / "sre_data.db") as db:
        c = db.load_cells()[(asset, capability)]
        return c.state, c.level, c.assessed_by


def item_of(folder: Path, key: str) -> dict:
    with Database(folder / "sre_data.db") as db:
        return next(it for it in db.load_items() if it["key"] == key)


# ---------------------------------------------------------------- real git merges
def test_pull_merges_assessments_newest_wins(clones, run, monkeypatch):
    a, b = clones
    assess(run, monkeypatch, a, T1, "web", "Alerts", "1")
    assess(run, monkeypatch, a, T1, "auth", "Dashboards", "2")
    push(a)
    assess(run, monkeypatch, b, T2, "web", "Alerts", "4")
    assess(run, monkeypatch, b, T2, "payment-api", "On-call", "3")
    proc = pull(b)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "CONFLICT" not in proc.stdout + proc.stderr
    assert git(b, "status", "--porcelain").strip() == ""
    assert cell_of(b, "web", "Alerts") == ("Assessed", 4, "b")
    assert cell_of(b, "auth", "Dashboards") == ("Assessed", 2, "a")
    assert cell_of(b, "payment-api", "On-call") == ("Assessed", 3, "b")
    with Database(b / "sre_data.db") as db:
        history = db.history(asset="web", capability="Alerts")
        open_web = [it["key"] for it in db.load_items(["open"]) if it["asset"] == "web"
                    and it["capability"] == "Alerts"]
    assert [(h["new_level"], h["assessed_by"]) for h in history] == [(4, "b"), (1, "a")]
    assert open_web == []  # the items a's level 1 opened are closed by b's newer level 4
    code, out, _err = run(b, "status", "--format", "csv")
    assert code == 0 and (b / "sre_matrix.csv").read_text() == out
    # The other direction reaches the same cells.
    push(b)
    assert pull(a).returncode == 0
    assert cell_of(a, "web", "Alerts") == ("Assessed", 4, "b")


def test_older_assessment_from_theirs_loses_but_stays_in_history(clones, run, monkeypatch):
    a, b = clones
    assess(run, monkeypatch, a, T3, "web", "Alerts", "2")
    push(a)
    assess(run, monkeypatch, b, T1, "web", "Alerts", "5")
    assert pull(b).returncode == 0
    assert cell_of(b, "web", "Alerts") == ("Assessed", 2, "a")
    with Database(b / "sre_data.db") as db:
        assert len(db.history(asset="web", capability="Alerts")) == 2
        keys = {it["key"] for it in db.load_items(["open"]) if it["asset"] == "web"}
    assert "web / Alerts / 3" in keys  # b's level 5 had closed it; a's newer level 2 reopens


def test_story_id_and_status_change_both_survive(clones, run, monkeypatch):
    a, b = clones
    assess(run, monkeypatch, a, T1, "web", "Alerts", "1")
    push(a)
    assert pull(b).returncode == 0
    # a records the Rally story of the level-2 item.
    with Database(a / "sre_data.db") as db, db.transaction():
        db.set_item_story("web / Alerts / 2", "123", "US42", "https://rally/us42", "Defined", T2)
    git(a, "commit", "-q", "-am", "report --push: 1 story")
    push(a)
    # b re-assesses: level 2 reached, so the item is verified there.
    assess(run, monkeypatch, b, T3, "web", "Alerts", "2")
    assert pull(b).returncode == 0
    item = item_of(b, "web / Alerts / 2")
    assert (item["rally_id"], item["rally_oid"], item["work_status"], item["state"]) == (
        "US42", "123", "Defined", "verified")
    assert item_of(b, "web / Alerts / 3")["state"] == "open"


def setup_with(run, monkeypatch, folder: Path, when: str, text: str) -> None:
    (folder / "flows.csv").write_text(text, encoding="utf-8")
    at(monkeypatch, when)
    code, _out, err = run(folder, "setup", "--from-csv")
    assert code == 0, err


def test_git_log_and_diff_show_readable_dump(clones, run, monkeypatch):
    a, _b = clones
    assess(run, monkeypatch, a, T1, "web", "Alerts", "2")
    log = git(a, "log", "-p", "-1", "--", "sre_data.db")
    assert "Binary files" not in log
    assert "+cells: web | Alerts | Assessed L2 | by a 2026-11-01T10:00:00+00:00" in log
    assert "+assessments: 2026-11-01T10:00:00+00:00 | web | Alerts | Not Assessed -> " \
        "Assessed L2" in log
    with Database(a / "sre_data.db") as db, db.transaction():
        db.set_item_story("web / Alerts / 3", "9", "US9", "", "In-Progress", T2)
    diff = git(a, "diff", "--", "sre_data.db")
    assert "+items: web / Alerts / 3 | open | In-Progress" in diff


def test_matrix_driver_is_used_by_git(clones, run, monkeypatch):
    a, b = clones
    assess(run, monkeypatch, a, T1, "web", "Alerts", "1")
    push(a)
    assess(run, monkeypatch, b, T2, "web", "Alerts", "3")
    assess(run, monkeypatch, b, T2, "web", "Dashboards", "2")
    proc = pull(b)
    assert proc.returncode == 0 and "<<<<<<<" not in (b / "sre_matrix.csv").read_text()
    rows = {(r["Asset Name"], r["Capability"]): r
            for r in csv.DictReader(io.StringIO((b / "sre_matrix.csv").read_text()))}
    assert (rows[("web", "Alerts")]["Level"], rows[("web", "Dashboards")]["Level"]) == ("3", "2")


# ---------------------------------------------------------------- merge-db directly
def make_db(path: Path, ready: Path) -> Path:
    shutil.copyfile(ready / "sre_data.db", path)
    return path


def record(path: Path, asset: str, capability: str, level: int | None, when: str,
           by: str = "x") -> None:
    with Database(path) as db, db.transaction():
        db.record_assessment(asset, capability, "Assessed" if level is not None else
                             "Not Applicable", level, answers=[], failed_question="",
                             notes="", na_reason="" if level is not None else "batch job",
                             na_until="", assessed_by=by, assessed_at=when)


@pytest.fixture
def three(ready: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    d = tmp_path / "m"
    d.mkdir()
    return tuple(make_db(d / n, ready) for n in ("base.db", "ours.db", "theirs.db"))


def test_merge_db_unions_history_and_takes_one_sided_changes(three):
    base, ours, theirs = three
    record(ours, "web", "Alerts", 2, T1, "o")
    record(theirs, "auth", "Alerts", None, T2, "t")
    summary = merge.merge_db(base, ours, theirs)
    assert "1 assessments from theirs" in summary
    with Database(ours) as db:
        cells = db.load_cells()
        assert (cells[("web", "Alerts")].level, cells[("auth", "Alerts")].state) == (
            2, "Not Applicable")
        assert len(db.history()) == 2
        assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    before = ours.read_bytes()
    merge.merge_db(base, ours, theirs)  # merging again changes nothing
    with Database(ours) as db:
        assert len(db.history()) == 2
    assert merge.dump(ours) == merge.dump(ours) and len(before) == len(ours.read_bytes())


def test_merge_db_same_time_tie_is_deterministic(three, tmp_path):
    base, ours, theirs = three
    record(ours, "web", "Alerts", 1, T1)
    record(theirs, "web", "Alerts", 4, T1)
    ours2, theirs2 = tmp_path / "ours2.db", tmp_path / "theirs2.db"
    shutil.copyfile(theirs, ours2)
    shutil.copyfile(ours, theirs2)
    merge.merge_db(base, ours, theirs)
    merge.merge_db(base, ours2, theirs2)  # the same merge from the other side
    with Database(ours) as db, Database(ours2) as db2:
        one = db.load_cells()[("web", "Alerts")]
        two = db2.load_cells()[("web", "Alerts")]
        assert one == two and len(db.history()) == len(db2.history()) == 2
        # The cell is the newest history entry, on both sides (one order everywhere).
        for side in (db, db2):
            newest = side.history(asset="web", capability="Alerts")[0]
            assert (newest["new_level"], newest["id"]) == (one.level, side.conn.execute(
                "SELECT assessment_id FROM cells WHERE asset = 'web' AND capability = 'Alerts'"
            ).fetchone()[0])


def test_merge_db_without_base(three, tmp_path):
    _base, ours, theirs = three
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    record(ours, "web", "Alerts", 1, T1)
    record(theirs, "web", "Alerts", 3, T2)
    merge.merge_db(empty, ours, theirs)
    with Database(ours) as db:
        assert db.load_cells()[("web", "Alerts")].level == 3
        assert len(db.history()) == 2
    merge.merge_db(tmp_path / "absent", ours, theirs)


def test_merge_db_migrates_an_older_side(three, tmp_path):
    base, ours, _theirs = three
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old)
    conn.executescript(schema._SCHEMA_V1)
    conn.execute(f"PRAGMA application_id={database.APPLICATION_ID}")
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()
    record(ours, "web", "Alerts", 2, T1)
    merge.merge_db(base, ours, old)
    with Database(ours) as db:
        assert db.schema_version() == database.SCHEMA_VERSION
        assert db.load_cells()[("web", "Alerts")].level == 2
    assert not list(tmp_path.glob("*.bak-v*")) and not list(base.parent.glob("*.bak-v*"))


def test_merge_db_items_field_by_field(three):
    base, ours, theirs = three
    record(base, "web", "Alerts", 1, T1)
    shutil.copyfile(base, ours)
    shutil.copyfile(base, theirs)
    key = "web / Alerts / 3"
    with Database(ours) as db, db.transaction():
        db.set_item_story(key, "7", "US7", "u", "Defined", T2)
    with Database(theirs) as db, db.transaction():
        # Untouched items live in their cell (schema 5): give these two their rows to edit.
        schema.materialise_items(db.conn, [("web", "Alerts", 3), ("web", "Alerts", 2)])
        db.conn.execute("UPDATE items SET opened_at = ?, updated_at = ? WHERE asset = 'web' "
                        "AND capability = 'Alerts' AND level = 3", (T3, T3))
        db.conn.execute("UPDATE items SET rally_oid = '8', rally_id = 'US8', updated_at = ? "
                        "WHERE asset = 'web' AND capability = 'Alerts' AND level = 2", (T3,))
    merge.merge_db(base, ours, theirs)
    with Database(ours) as db:
        items = {it["key"]: it for it in db.load_items()}
    item = items[key]
    assert (item["rally_id"], item["work_status"], item["opened_at"], item["updated_at"]) == (
        "US7", "Defined", T3, T3)
    assert items["web / Alerts / 2"]["rally_id"] == "US8"


def test_merge_db_refuses_a_newer_schema_and_leaves_ours(three, run):
    base, ours, theirs = three
    conn = sqlite3.connect(theirs)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    before = ours.read_bytes()
    code, _out, err = run(ours.parent, "merge-db", str(base), str(ours), str(theirs))
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert "theirs version was written by a newer sre-tracker (schema 99" in err
    assert ours.read_bytes() == before


@pytest.mark.parametrize("content", [b"not a database at all", b"",
                                     b"SQLite format 3\x00" + b"\x01" * 300])
def test_merge_db_refuses_garbage(three, content):
    base, ours, theirs = three
    theirs.write_bytes(content)
    before = ours.read_bytes()
    with pytest.raises(DatabaseError, match="cannot merge sre_data.db: the theirs version"):
        merge.merge_db(base, ours, theirs)
    assert ours.read_bytes() == before


def test_merge_db_refuses_foreign_sqlite(three):
    base, ours, theirs = three
    theirs.unlink()
    conn = sqlite3.connect(theirs)
    conn.execute("CREATE TABLE x (a)")
    conn.execute("PRAGMA application_id=42")
    conn.commit()
    conn.close()
    with pytest.raises(DatabaseError, match="not an sre-tracker database"):
        merge.merge_db(base, ours, theirs)


# ---------------------------------------------------------------- merge-matrix
HEADER = "Asset Name,Capability,Level,Assessed At\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_merge_matrix_row_by_row(tmp_path, run):
    base = write(tmp_path / "b", HEADER + "web,A,1,T1\nweb,B,,\nauth,A,,\n")
    ours = write(tmp_path / "o", HEADER + "web,A,2,T2\nweb,B,,\nauth,A,3,T3\n")
    theirs = write(tmp_path / "t", HEADER + "new,A,1,T1\nweb,A,4,T3\nweb,B,5,T1\nweb,C,1,T1\n"
                   "auth,A,,\n")
    code, _out, err = run(tmp_path, "merge-matrix", str(base), str(ours), str(theirs))
    assert code == 0, err
    assert ours.read_text() == (HEADER + "new,A,1,T1\nweb,A,4,T3\nweb,B,5,T1\nweb,C,1,T1\n"
                                "auth,A,3,T3\n")


def test_merge_matrix_tie_and_no_base(tmp_path):
    ours = write(tmp_path / "o", HEADER + "web,A,2,T1\n")
    theirs = write(tmp_path / "t", HEADER + "web,A,3,T1\n")
    assert merge.merge_matrix(tmp_path / "none", ours, theirs) == 1
    ours2 = write(tmp_path / "o2", HEADER + "web,A,3,T1\n")
    merge.merge_matrix(write(tmp_path / "e", ""), ours2, write(tmp_path / "t2",
                                                               HEADER + "web,A,2,T1\n"))
    assert ours.read_text() == ours2.read_text() == HEADER + "web,A,3,T1\n"


@pytest.mark.parametrize("bad", ["Foo,Bar\n1,2\n", HEADER + "web,A,1,T1,extra\n",
                                 HEADER + 'web,"A\n'])
def test_merge_matrix_refuses_unparsable(tmp_path, run, bad):
    ours = write(tmp_path / "o", HEADER + "web,A,2,T2\n")
    theirs = write(tmp_path / "t", bad)
    code, _out, err = run(tmp_path, "merge-matrix", str(ours), str(ours), str(theirs))
    assert code == 1 and "cannot merge sre_matrix.csv: the theirs version" in err
    assert ours.read_text() == HEADER + "web,A,2,T2\n"
    with pytest.raises(InputError):
        merge.merge_matrix(ours, ours, tmp_path / "missing")


# ---------------------------------------------------------------- dump
def test_dump_is_sorted_and_deterministic(ready, run):
    code, out, _err = run(ready, "dump", str(ready / "sre_data.db"))
    assert code == 0 and out == merge.dump(ready / "sre_data.db")
    lines = out.splitlines()
    assert lines[0] == f"# sre-tracker database, schema {database.SCHEMA_VERSION}"
    for table in merge.TABLE_ORDER:
        assert f"## {table}" in lines
    flows = [line for line in lines if line.startswith("flows: ")]
    assert flows == sorted(flows) and "flows: Checkout | web | team Storefront | target 3" \
        in "\n".join(flows)
    assert any(line.startswith("questions: Alerts | L1.1 | Do any alerts exist?") for line in lines)


def test_dump_of_an_old_schema_and_odd_values(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(schema._SCHEMA_V1)
    conn.execute("PRAGMA user_version=1")
    conn.execute("INSERT INTO assets (asset, team) VALUES ('a', 'multi\nline')")
    conn.execute("CREATE TABLE extra (k INTEGER PRIMARY KEY, v BLOB)")
    conn.execute("INSERT INTO extra VALUES (1, x'00ff')")
    conn.execute("INSERT INTO items (key, asset, capability, level, opened_at) "
                 "VALUES ('a / C / 1', 'a', 'C', 1, 'T1')")
    conn.commit()
    conn.close()
    out = merge.dump(path)
    assert "schema 1" in out and "assets: a | team multi\\nline" in out
    assert "extra: k=1 | v=<2 bytes>" in out and "items: a / C / 1 | open | Not Started" in out


@pytest.mark.parametrize("content, message", [
    (b"hello, not a database\n", "not an SQLite database"),
    (b"", "empty file"),
    (b"SQLite format 3\x00" + b"\x01" * 200, "damaged SQLite database"),
])
def test_dump_of_a_bad_file_prints_one_line(tmp_path, run, content, message):
    path = tmp_path / "sre_data.db"
    path.write_bytes(content)
    code, out, err = run(tmp_path, "dump", str(path))
    assert (code, out.count("\n"), err) == (0, 1, "")
    assert message in out or "cannot be opened" in out


def test_dump_of_foreign_and_missing_files(tmp_path):
    path = tmp_path / "f.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id=42")
    conn.execute("CREATE TABLE t (a)")
    conn.commit()
    conn.close()
    assert "another application" in merge.dump(path)
    assert "cannot be read" in merge.dump(tmp_path / "nope.db")

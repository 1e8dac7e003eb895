"""How items are kept (schema 5): an untouched open item lives in its cell, every other item
has its row, and every reader sees the same items either way."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import database
from conftest import at, old_schema_file
from database import Database
from sre_maturity.git import merge
from sre_maturity.rules import maturity as mt

T1, T2, T3 = "2026-11-01T10:00:00+00:00", "2026-11-01T11:00:00+00:00", "2026-11-01T12:00:00+00:00"


def stored(path: Path) -> dict[str, dict]:
    """The item rows the file holds, by key (untouched items are not among them)."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    rows = {mt.item_key(r["asset"], r["capability"], r["level"]): dict(r)
            for r in conn.execute("SELECT * FROM items")}
    conn.close()
    return rows


def items(path: Path) -> dict[str, dict]:
    with Database(path) as db:
        return {it["key"]: it for it in db.load_items()}


def derived_and_stored(path: Path) -> set[tuple[str, str, int]]:
    """Keys that are both a row and in their cell's open_levels (there must be none)."""
    conn = sqlite3.connect(path)
    cells = conn.execute("SELECT asset, capability, open_levels FROM cells").fetchall()
    rows = {(a, c, lv) for a, c, lv in conn.execute("SELECT asset, capability, level FROM items")}
    conn.close()
    return {(a, c, int(d)) for a, c, levels in cells for d in levels} & rows


def test_untouched_items_are_kept_in_their_cell_not_as_rows(ready, run, monkeypatch):
    at(monkeypatch, T1)
    assert run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "1")[0] == 0
    path = ready / "sre_data.db"
    assert stored(path) == {}
    got = items(path)
    assert sorted(got) == ["web / Alerts / 2", "web / Alerts / 3"]
    assert all((it["state"], it["work_status"], it["opened_at"], it["updated_at"]) ==
               ("open", "Not Started", T1, T1) for it in got.values())
    assert "L2 means: Alerts page the on-call" in got["web / Alerts / 2"]["why"]  # from the cell


def test_a_story_gives_its_item_a_row_that_keeps_the_opening_time(ready, run, monkeypatch):
    at(monkeypatch, T1)
    run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "1")
    path = ready / "sre_data.db"
    with Database(path) as db, db.transaction():
        db.set_item_story("web / Alerts / 2", "7", "US7", "https://r/7", "Defined", T2)
    rows = stored(path)
    assert list(rows) == ["web / Alerts / 2"]
    assert (rows["web / Alerts / 2"]["opened_at"], rows["web / Alerts / 2"]["rally_id"],
            rows["web / Alerts / 2"]["work_status"]) == (T1, "US7", "Defined")
    assert items(path)["web / Alerts / 3"]["opened_at"] == T1  # still derived
    assert derived_and_stored(path) == set()


def test_items_read_with_the_reports_fields_are_the_items_read_whole(ready, run, monkeypatch):
    # payment-api and auth (targets 4, 3) have the same gaps on Alerts: items made from one
    # shape; web's L2 has a story, web's L3 is done: each its own.
    from sre_maturity.rules import views
    at(monkeypatch, T1)
    for asset in ("payment-api", "auth", "web"):
        run(ready, "assess", "--asset", asset, "--capability", "Alerts", "--level", "1")
    path = ready / "sre_data.db"
    with Database(path) as db, db.transaction():
        db.set_item_story("web / Alerts / 2", "7", "US7", "https://r/7", "Defined", T2)
        db.set_item_story("web / Alerts / 3", "8", "US8", "https://r/8", "Completed", T2)
        db.apply_story_states({"web / Alerts / 3": "Completed"}, T3)
    fields = views.REPORT_ITEM_FIELDS
    with Database(path) as db:
        few = list(map(db.item_words(fields), db.item_rows(fields=fields)))
        whole = list(map(db.item_words(), db.item_rows()))
    assert [it["key"] for it in few] == [it["key"] for it in whole] and len(few) == 7
    assert [{k: it[k] for k in few[n]} for n, it in enumerate(whole)] == few
    web = {it["key"]: it for it in few if it["asset"] == "web"}
    assert (web["web / Alerts / 2"]["rally_id"], web["web / Alerts / 3"]["state"]) == (
        "US7", mt.DONE)


def test_closing_and_reopening_items_go_through_rows(ready, run, monkeypatch):
    path = ready / "sre_data.db"
    at(monkeypatch, T1)
    run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "1")
    at(monkeypatch, T2)  # L2 reached: its item is verified, with the reason it was open for
    run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "2")
    closed = stored(path)["web / Alerts / 2"]
    assert (closed["state"], closed["closed_at"], closed["opened_at"]) == ("verified", T2, T1)
    assert "L2 means: Alerts page the on-call" in closed["why"]
    assert items(path)["web / Alerts / 3"]["opened_at"] == T1  # untouched, still in the cell
    at(monkeypatch, T3)  # down again: L2 reopens, untouched, and goes back into the cell
    run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "1")
    got = items(path)
    assert (got["web / Alerts / 2"]["state"], got["web / Alerts / 2"]["opened_at"]) == (
        "open", T3)
    assert got["web / Alerts / 3"]["opened_at"] == T1
    # One opening time per cell: the reopened item keeps a row, the older one stays derived.
    assert list(stored(path)) == ["web / Alerts / 2"]
    assert derived_and_stored(path) == set()


def test_an_item_opened_later_by_a_higher_target_keeps_its_own_time(ready, run, monkeypatch):
    path = ready / "sre_data.db"
    at(monkeypatch, T1)
    run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "1")
    flows = (ready / "flows.csv").read_text(encoding="utf-8")
    (ready / "flows.csv").write_text(flows.replace("Checkout,web,Storefront,3",
                                                   "Checkout,web,Storefront,5"), "utf-8")
    at(monkeypatch, T2)
    assert run(ready, "setup", "--from-csv")[0] == 0
    got = items(path)
    assert [got[f"web / Alerts / {lv}"]["opened_at"] for lv in (2, 3, 4, 5)] == [T1, T1, T2, T2]
    assert derived_and_stored(path) == set()


def make_v4(path: Path) -> None:
    """A database as schema 4 left it: every item a row."""
    conn = old_schema_file(path, 4)
    conn.execute("INSERT INTO assets (asset) VALUES ('api')")
    conn.execute("INSERT INTO flows (flow, asset, target_level) VALUES ('Login', 'api', 5)")
    for cap in ("Alerts", "Paging"):
        conn.execute("INSERT INTO capabilities (capability, category) VALUES (?, 'Alerting')",
                     (cap,))
        for level in range(1, 6):
            conn.execute("INSERT INTO questions (capability, level, seq, criteria, question) "
                         "VALUES (?, ?, 1, ?, ?)", (cap, level, f"c{level}", f"q{level}?"))
        conn.execute("INSERT INTO cells (asset, capability, state, level, assessed_at) "
                     "VALUES ('api', ?, 'Assessed', 1, ?)", (cap, T1))
    rows = [("Alerts", 2, "open", "Not Started", "", T1, T1),   # untouched
            ("Alerts", 3, "open", "Not Started", "", T1, T1),   # untouched
            ("Alerts", 4, "open", "Not Started", "", T2, T2),   # untouched, opened later
            ("Alerts", 5, "open", "Defined", "US5", T1, T2),    # has a story
            ("Paging", 2, "open", "Not Started", "", T1, T1),
            ("Paging", 3, "verified", "Not Started", "", T1, T3),
            ("Paging", 4, "open", "Not Started", "", T3, T3),
            ("Paging", 5, "open", "Not Started", "", T3, T3)]
    for cap, level, state, status, rid, opened, updated in rows:
        conn.execute("INSERT INTO items (asset, capability, level, state, work_status, rally_id, "
                     "opened_at, updated_at, closed_at) VALUES ('api', ?, ?, ?, ?, ?, ?, ?, ?)",
                     (cap, level, state, status, rid, opened, updated,
                      T3 if state == "verified" else ""))
    conn.commit()
    conn.close()


def test_schema_4_is_upgraded_keeping_every_item(tmp_path):
    path = tmp_path / "sre_data.db"
    make_v4(path)
    before = stored(path)
    with Database(path) as db:
        assert (db.migrated_from, db.schema_version()) == (4, database.SCHEMA_VERSION)
        after = {mt.item_key(*r[:3]): dict(zip(database.ITEM_FIELDS, r, strict=False))
                 for r in db.item_rows()}
    assert (tmp_path / "sre_data.db.bak-v4").exists()
    assert after == {k: {f: r[f] for f in database.ITEM_FIELDS} for k, r in before.items()}
    # Per cell, the untouched items that opened last live in it; the rest keep their rows.
    assert sorted(stored(path)) == ["api / Alerts / 2", "api / Alerts / 3", "api / Alerts / 5",
                                    "api / Paging / 2", "api / Paging / 3"]
    assert derived_and_stored(path) == set()


def test_merge_keeps_items_each_side_touched_or_derived(ready, tmp_path):
    """Ours gives an item a story; theirs re-assesses the same cell and adds another: the
    merged file holds each item once, as the full rows merge says."""
    d = tmp_path / "m"
    d.mkdir()
    base, ours, theirs = (d / n for n in ("base.db", "ours.db", "theirs.db"))
    with Database(ready / "sre_data.db") as db, db.transaction():
        db.record_assessment("web", "Alerts", "Assessed", 1, answers=[], failed_question="",
                             notes="", na_reason="", na_until="", assessed_by="x",
                             assessed_at=T1)
    for p in (base, ours, theirs):
        shutil.copyfile(ready / "sre_data.db", p)
    with Database(ours) as db, db.transaction():
        db.set_item_story("web / Alerts / 3", "9", "US9", "https://r/9", "In-Progress", T2)
    with Database(theirs) as db, db.transaction():
        db.record_assessment("web", "Alerts", "Assessed", 2, answers=[], failed_question="",
                             notes="", na_reason="", na_until="", assessed_by="y",
                             assessed_at=T3)
        db.record_assessment("auth", "Dashboards", "Assessed", 0, answers=[],
                             failed_question="", notes="", na_reason="", na_until="",
                             assessed_by="y", assessed_at=T3)
    merge.merge_db(base, ours, theirs)
    got = items(ours)
    assert got["web / Alerts / 2"]["state"] == "verified"
    assert (got["web / Alerts / 3"]["rally_id"], got["web / Alerts / 3"]["state"]) == (
        "US9", "open")
    assert {k for k in got if k.startswith("auth / Dashboards")} == {
        "auth / Dashboards / 1", "auth / Dashboards / 2", "auth / Dashboards / 3"}
    assert derived_and_stored(ours) == set()
    assert "auth / Dashboards / 1" not in stored(ours)  # untouched: in its cell
    # The readable dump lists derived and stored items alike.
    text = merge.dump(ours)
    assert "items: auth / Dashboards / 1 | open | Not Started" in text
    assert "items: web / Alerts / 3 | open | In-Progress" in text

"""Issue 15: the compact schema and its migration, the lean read path giving the same answers
as the item-by-item one, sre_matrix.csv patched per touched cell, the database check stamp,
one transaction per Rally chunk, and a data repository that stays small."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
from pathlib import Path

import pytest

from conftest import git
from database import ITEM_FIELDS, SCHEMA_VERSION, Database
from fake_rally import FakeRally
from sre_maturity.clients.rally import RallyClient
from sre_maturity.git import gitops
from sre_maturity.render import reports, storage_format, stories
from sre_maturity.rules import maturity as mt
from sre_maturity.rules import views
from sre_maturity.store import schema

T1, T2, T3 = "2026-10-01T09:00:00+00:00", "2026-10-02T09:00:00+00:00", "2026-10-03T09:00:00+00:00"


def make_v2_file(path: Path) -> None:
    """A database as schema 2 (the version before the compact one) wrote it: items carrying
    their level's words, history in rowid order, one open, one done and one verified item."""
    conn = sqlite3.connect(path)
    conn.executescript(schema._SCHEMA_V1 + ";" + schema._SCHEMA_V2)
    conn.execute(f"PRAGMA application_id={schema.APPLICATION_ID}")
    conn.execute("PRAGMA user_version=2")
    conn.execute("INSERT INTO meta VALUES ('created_at', ?)", (T1,))
    conn.execute("INSERT INTO assets (asset, team) VALUES ('api', 'Payments')")
    conn.execute("INSERT INTO flows (flow, asset, team, target_level) "
                 "VALUES ('Checkout', 'api', 'Payments', 3)")
    conn.execute("INSERT INTO capabilities (capability, category) VALUES ('Alerts', 'Alerting')")
    for level, go_live in ((1, 1), (2, 1), (3, 0), (4, 0), (5, 0)):
        conn.execute("INSERT INTO questions (capability, level, seq, criteria, question, owner, "
                     "priority, go_live, milestone) VALUES ('Alerts', ?, 1, ?, ?, 'Asset', ?, "
                     "?, ?)", (level, f"criteria {level}", f"question {level}?",
                               "P1" if go_live else "P3", go_live, "Go-Live" if go_live else ""))
    conn.execute("INSERT INTO cells (asset, capability, state, level, failed_question, "
                 "assessed_by, assessed_at, assessment_id) VALUES ('api', 'Alerts', 'Assessed', "
                 "1, 'question 2?', 'jdoe', ?, 'b2')", (T2,))
    for ident, old, new, at in (("a1", None, 3, T1), ("b2", 3, 1, T2), ("c3", 1, 1, T2)):
        conn.execute("INSERT INTO assessments (id, asset, capability, old_state, old_level, "
                     "new_state, new_level, assessed_by, assessed_at) VALUES (?, 'api', "
                     "'Alerts', ?, ?, 'Assessed', ?, 'jdoe', ?)",
                     (ident, "Not Assessed" if old is None else "Assessed", old, new, at))
    rows = [("api / Alerts / 2", 2, "open", "Not Started", "", "", "stale words", T2, ""),
            ("api / Alerts / 3", 3, "done", "Completed", "Completed", "US3", "x", T2, T3),
            ("api / Alerts / 4", 4, "verified", "Accepted", "Accepted", "US4",
             "Answered no: question 4? — L4 means: criteria 4", T1, "")]
    for key, level, state, status, rstate, rid, why, opened, done in rows:
        conn.execute("INSERT INTO items (key, asset, capability, level, category, criteria, "
                     "owner, priority, go_live, milestone, why, state, work_status, rally_state, "
                     "rally_id, opened_at, done_at, updated_at) VALUES (?, 'api', 'Alerts', ?, "
                     "'Alerting', 'old copy', 'Asset', 'P3', 0, '', ?, ?, ?, ?, ?, ?, ?, ?)",
                     (key, level, why, state, status, rstate, rid, opened, done, opened))
    conn.commit()
    conn.close()


def test_schema_2_file_is_migrated_with_data_history_and_items_intact(tmp_path):
    path = tmp_path / "sre_data.db"
    make_v2_file(path)
    original = path.read_bytes()
    with Database(path) as db:
        assert (db.schema_version(), db.migrated_from) == (SCHEMA_VERSION, 2)
        assert db.backup == tmp_path / "sre_data.db.bak-v2"
        history = [(e["id"], e["new_level"]) for e in db.history()]
        cell = db.load_cells()[("api", "Alerts")]
        items = {it["key"]: it for it in db.load_items()}
        free = db.conn.execute("PRAGMA freelist_count").fetchone()[0]
    assert (tmp_path / "sre_data.db.bak-v2").read_bytes() == original
    # Newest first; two entries at the same time keep their recorded order.
    assert history == [("c3", 1), ("b2", 1), ("a1", 3)]
    assert (cell.level, cell.failed_question, cell.assessed_by) == (1, "question 2?", "jdoe")
    assert set(items) == {"api / Alerts / 2", "api / Alerts / 3", "api / Alerts / 4"}
    open_item = items["api / Alerts / 2"]
    # The words come from the model now (not the row's stale copy), the reason from the cell.
    assert (open_item["criteria"], open_item["priority"], open_item["go_live"],
            open_item["milestone"], open_item["category"]) == ("criteria 2", "P1", 1, "Go-Live",
                                                              "Alerting")
    assert open_item["why"] == "Answered no: question 2? — L2 means: criteria 2"
    done = items["api / Alerts / 3"]
    assert (done["state"], done["rally_id"], done["done_at"]) == ("done", "US3", T3)
    verified = items["api / Alerts / 4"]
    assert verified["why"] == "Answered no: question 4? — L4 means: criteria 4"
    assert free == 0  # the copy-and-drop migration is followed by VACUUM


def test_compact_schema_stores_no_model_words_per_item(ready, run):
    run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "0")
    conn = sqlite3.connect(ready / "sre_data.db")
    columns = {r[1] for r in conn.execute("PRAGMA table_info(items)")}
    whys = {r[0] for r in conn.execute("SELECT why FROM all_items WHERE state = 'open'")}
    conn.close()
    assert not columns & {"key", "criteria", "category", "owner", "priority", "go_live",
                          "milestone"}
    assert whys == {""}  # an open item's reason is derived from its cell when read


def test_closed_item_keeps_the_reason_it_was_open_for(ready, run):
    run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--answers", "yes,no")
    run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "5")
    with Database(ready / "sre_data.db") as db:
        item = {it["key"]: it for it in db.load_items()}["web / Alerts / 2"]
    assert item["state"] == mt.VERIFIED
    assert item["why"] == ("Answered no: Do alerts page the on-call engineer? — L2 means: "
                           "Alerts page the on-call")


def test_lean_summary_equals_counting_every_item(ready, run):
    run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "1")
    run(ready, "assess", "--asset", "auth", "--capability", "On-call", "--level", "0")
    with Database(ready / "sre_data.db") as db:
        matrix, _flows = views.matrix(db)
        rows, _flows = views.matrix_rows(db)
        every = views.items(db)
        lean = views.summary(db, rows)
        web = views.summary(db, [r for r in rows if r.asset == "web"])
    assert lean == reports.summarise(matrix, every)
    assert web == reports.summarise([e for e in matrix if e["asset"] == "web"],
                                    [it for it in every if it["asset"] == "web"])
    assert lean["open_items"] > 0


def test_lean_summary_counts_done_items_as_awaiting_reassessment(ready, run):
    run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "0")
    conn = sqlite3.connect(ready / "sre_data.db")
    with conn:  # a story completed in Rally: the item is done, still counted as a gap
        schema.materialise_items(conn, [("web", "Alerts", 2)])
        conn.execute("UPDATE items SET state = 'done', work_status = 'Completed' "
                     "WHERE asset = 'web' AND capability = 'Alerts' AND level = 2")
    conn.close()
    with Database(ready / "sre_data.db") as db:
        matrix, _flows = views.matrix(db)
        lean = views.summary(db, views.matrix_rows(db)[0])
        every = views.items(db)
    assert lean == reports.summarise(matrix, every)
    assert lean["awaiting_reassessment"] == 1 and lean["open_items"] > 1


def test_matrix_counts_equal_counting_every_item(ready, run):
    run(ready, "assess", "--asset", "payment-api", "--capability", "Dashboards", "--level", "1")
    with Database(ready / "sre_data.db") as db:
        lean, lean_flows = views.matrix(db)
        model, assets = db.load_model(), db.load_assets()
        cells = {(r[0], r[1]): r for r in db.matrix_cells()}
        open_items = views.items(db, (mt.OPEN, mt.DONE))
    full, full_flows = mt.matrix_view(model, assets, cells, open_items, "2026-12-01")
    assert (lean, lean_flows) == (full, full_flows)


def test_report_files_written_as_a_stream_equal_the_whole_renderers(ready, run):
    run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "1")
    run(ready, "assess", "--asset", "payment-api", "--capability", "On-call", "--level", "0")
    assert run(ready, "report", "--include-amber")[0] == 0
    with Database(ready / "sre_data.db") as db:
        items = views.items(db)
    rows = reports.todo_rows(items)
    wiki = (ready / "confluence_page.txt").read_text(encoding="utf-8")
    assert wiki.split("\n", 3)[3] == reports.wiki_page(rows, "t", "d").split("\n", 3)[3]
    assert (ready / "confluence_page.html").read_text(encoding="utf-8") == \
        storage_format.render_table(rows) + "\n"
    selected = stories.select_for_rally(items, True)
    assert (ready / "rally_import.csv").read_bytes() == \
        stories.rally_import_csv(selected, "SRE-Maturity").encode("utf-8")


def _export(run, folder: Path) -> str:
    code, out, err = run(folder, "export")
    assert code == 0, err
    return out


def test_assess_patches_the_matrix_file_to_what_a_rewrite_gives(ready, run):
    before = (ready / "sre_matrix.csv").read_text(encoding="utf-8")
    run(ready, "assess", "--asset", "web", "--capability", "On-call", "--level", "2")
    after = (ready / "sre_matrix.csv").read_text(encoding="utf-8")
    assert after == _export(run, ready) and after != before
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True)
               if a != b]
    assert len(changed) == 1 and changed[0][1].startswith("web,")


def test_a_patch_copies_records_of_several_lines_whole(ready, run):
    # A reason with a line break, a comma and quotes is one record over two lines.
    run(ready, "assess", "--asset", "auth", "--capability", "Alerts", "--not-applicable",
        'batch job, "no pager"\nsee the runbook')
    run(ready, "assess", "--asset", "web", "--capability", "On-call", "--level", "2")
    text = (ready / "sre_matrix.csv").read_text(encoding="utf-8")
    assert '"batch job, ""no pager""\nsee the runbook"' in text
    assert text == _export(run, ready)


def test_matrix_file_not_ours_is_rewritten_whole(ready, run):
    path = ready / "sre_matrix.csv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(line for line in lines if not line.startswith("web,")),
                    encoding="utf-8")
    run(ready, "assess", "--asset", "web", "--capability", "On-call", "--level", "2")
    assert path.read_text(encoding="utf-8") == _export(run, ready)
    path.write_text("something else\n", encoding="utf-8")
    run(ready, "assess", "--asset", "auth", "--capability", "Alerts", "--level", "1")
    assert path.read_text(encoding="utf-8") == _export(run, ready)


def test_expired_not_applicable_rows_are_refreshed_by_a_patch(ready, run):
    run(ready, "assess", "--asset", "auth", "--capability", "Alerts", "--not-applicable",
        "batch job", "--until", "2030-01-01")
    conn = sqlite3.connect(ready / "sre_data.db")
    conn.execute("UPDATE cells SET na_until = '2020-01-01' WHERE asset = 'auth'")
    conn.commit()
    conn.close()
    run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "2")
    rows = list(csv.DictReader(io.StringIO((ready / "sre_matrix.csv").read_text("utf-8"))))
    auth = next(r for r in rows if r["Asset Name"] == "auth" and r["Capability"] == "Alerts")
    assert auth["State"] == mt.NOT_ASSESSED
    assert (ready / "sre_matrix.csv").read_text(encoding="utf-8") == _export(run, ready)


def test_check_stamp_follows_the_file(ready, run):
    path = ready / "sre_data.db"
    assert run(ready, "status")[0] == 0
    assert schema.verified(path)
    run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "2")
    assert schema.verified(path)  # written and closed by the tool: known good
    os.utime(path, ns=(1, 1))
    assert not schema.verified(path)  # changed behind the tool's back: checked again


def test_damaged_file_is_refused_even_when_its_stamp_matches(ready, run):
    path = ready / "sre_data.db"
    assert run(ready, "status")[0] == 0
    stat = path.stat()
    data = bytearray(path.read_bytes())
    page = 4096
    for n in range(page, len(data), page):  # every page after the first: garbage
        data[n:n + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert schema.verified(path)  # same size, time and change counter: not checked again
    code, _out, err = run(ready, "status")
    assert code == 1 and "damaged" in err and "git checkout -- sre_data.db" in err
    assert len(err.strip().splitlines()) == 1


def test_damaged_file_with_a_new_stamp_is_refused_on_open(ready, run):
    path = ready / "sre_data.db"
    data = bytearray(path.read_bytes())
    data[4096 + 8:4096 + 40] = b"\x00" * 32
    path.write_bytes(bytes(data))
    code, _out, err = run(ready, "status")
    assert code == 1 and "damaged" in err


def test_setup_sets_the_repository_housekeeping(ready):
    config = git(ready, "config", "--local", "--get-regexp", r"^gc\.")
    assert "gc.autopacklimit 4" in config and "gc.autodetach false" in config
    assert gitops.drivers_registered(ready)


def test_commits_leave_no_pile_of_loose_objects(ready, run):
    for level in (1, 2, 3, 4):
        run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", str(level))
        assert gitops.tidy(ready, 0) in (True, False)
    stats = dict(line.split(": ") for line in git(ready, "count-objects", "-v").splitlines())
    assert stats["count"] == "0" and int(stats["packs"]) <= 4
    assert git(ready, "log", "--oneline").count("\n") == 5


def test_tidy_packs_once_loose_objects_outgrow_the_budget(ready):
    loose = int(dict(line.split(": ") for line in git(ready, "count-objects", "-v")
                     .splitlines())["size"]) * 1024
    assert gitops.tidy(ready, loose + 1) is False
    assert gitops.tidy(ready, 0) is True
    assert git(ready, "count-objects", "-v").startswith("count: 0\n")


def test_push_stores_each_chunk_in_one_transaction():
    with FakeRally() as fake:
        client = RallyClient(fake.url, fake.api_key, fake.workspace_id, fake.project_id)
        try:
            tag = client.ensure_tag("SRE-Maturity")
            chunks: list[list[int]] = []
            stories_in = [{"Name": f"s{n}", "Notes": f"sre-tracker item: a / C / {n}",
                           "Project": fake.project_ref, "PortfolioItem": fake.feature_ref,
                           "Tags": [{"_ref": tag}]} for n in range(5)]
            results = client.create_stories(stories_in, chunk_size=2,
                                            on_chunk=lambda done: chunks.append(
                                                [i for i, _obj in done]))
        finally:
            client.close()
    assert [r["ok"] for r in results] == [True] * 5
    assert chunks == [[0, 1], [2, 3], [4]]


def test_status_json_is_unchanged_by_the_lean_path(ready, run):
    run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "1")
    code, out, _err = run(ready, "status", "--format", "json")
    data = json.loads(out)
    web = next(e for e in data["matrix"] if e["asset"] == "web" and e["capability"] == "Alerts")
    assert (web["level"], web["rag"], web["open_items"]) == (1, "Amber", 2)
    assert set(web) >= {"asset", "flows", "category", "capability", "state", "level",
                        "target_level", "go_live_level", "rag", "open_items", "assessed_by",
                        "assessed_at", "not_applicable_reason"}


@pytest.mark.parametrize("size", [0, 1])
def test_open_counts_memo_counts_red_per_capability(ready, run, size):
    run(ready, "assess", "--asset", "web", "--capability", "On-call", "--level", str(size))
    with Database(ready / "sre_data.db") as db:
        counts = views.open_counts(db, db.load_model())
    n, red = counts[("web", "On-call")]
    assert (n, red) == (3 - size, 3 - size)  # levels up to 3 are go-live in this model


def test_items_read_with_fewer_fields_are_the_full_items_without_them(ready, run):
    run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "1")
    fields = views.REPORT_ITEM_FIELDS
    with Database(ready / "sre_data.db") as db:
        full = views.items(db, (mt.OPEN, mt.DONE))
        lean = list(views.item_dicts(db, views.item_rows(db, (mt.OPEN, mt.DONE),
                                                         fields=fields), fields))
        with pytest.raises(ValueError, match="the key's three first"):
            db.item_rows(fields=("level", "asset", "capability"))
        with pytest.raises(ValueError):
            db.item_rows(fields=("asset", "capability", "level", "state; DROP TABLE items"))
    # An open item's reason is derived from its cell either way; the rest is left out.
    left_out = set(ITEM_FIELDS) - set(fields) - {"why"}
    assert lean == [{k: v for k, v in it.items() if k not in left_out} for it in full]
    assert lean and "why" in lean[0] and "opened_at" not in lean[0]

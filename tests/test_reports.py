"""report: rally_import.csv and the wiki-markup to-do table."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from conftest import git
from database import Database
from sre_maturity.render import reports
from sre_maturity.rules import maturity as mt
from sre_maturity.store import schema


def item(**kw) -> dict:
    base = {"key": "web / Alerts / 2", "asset": "web", "capability": "Alerts", "level": 2,
            "category": "Alerting", "criteria": "Alerts page", "owner": "Asset",
            "priority": "P1", "go_live": 1, "milestone": "Go-Live", "why": "Answered no: x",
            "state": "open", "work_status": "Not Started", "rally_oid": "", "rally_id": "",
            "rally_url": "", "flows": "Checkout, Login"}
    base.update(kw)
    return base


# ---------------------------------------------------------------- the Description
def test_description_is_the_criteria_once_then_why_the_item_is_open():
    capability = mt.Capability("Alerts", "Alerting", {
        1: mt.LevelSpec(1, "Some alerts exist", ("Are there alerts?",)),
        2: mt.LevelSpec(2, "Alerts page a person", ("Do alerts page a person?",))})
    cell = mt.Cell("web", "Alerts", mt.ASSESSED, 1, failed_question="Do alerts page a person?")
    why = mt.gap_reason(capability, cell, 2)
    assert why == "Answered no: Do alerts page a person? — L2 means: Alerts page a person"
    row = reports.todo_row(item(criteria="Alerts page a person", why=why))
    assert row["Description"] == "Alerts page a person (Answered no: Do alerts page a person?)"
    # A reason that does not end with the criteria is kept whole.
    assert reports.todo_row(item(why="Needs L1 first (currently L0)"))["Description"] == (
        "Alerts page (Needs L1 first (currently L0))")


# ---------------------------------------------------------------- selection and sorting
def test_todo_rows_sorted_by_priority_go_live_flow_asset():
    items = [item(key="1", priority="P3", go_live=0, asset="z"),
             item(key="2", priority="P1", go_live=0, asset="b"),
             item(key="3", priority="P1", go_live=1, asset="c"),
             item(key="4", priority="P1", go_live=1, asset="a", flows="Login")]
    rows = reports.todo_rows(items)
    assert [r["Asset Name"] for r in rows] == ["c", "a", "b", "z"]


def test_todo_rows_keep_done_items_awaiting_reassessment_and_drop_closed():
    rows = reports.todo_rows([item(state="done", work_status="Completed"),
                              item(key="x", state="verified"), item(key="y", state="archived")])
    assert [(r["Status"], r["_colour"]) for r in rows] == [
        ("Completed – awaiting re-assessment", "Green")]


def test_todo_row_columns_and_task():
    row = reports.todo_rows([item(rally_id="US12", rally_url="https://r/x")])[0]
    assert ([k for k in row if not k.startswith("_")], row["Task"], row["Flow"]) == (
        reports.PAGE_COLUMNS, "Alerts → L2", "Checkout, Login")


# ---------------------------------------------------------------- rally_import.csv
def parse_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


# ---------------------------------------------------------------- the command
def test_report_on_fresh_data_writes_three_files_and_no_commit(ready, run):
    run(ready, "assess", "--asset", "web", "--capability", "On-call", "--level", "1")
    commits_before = git(ready, "rev-list", "--count", "HEAD")
    code, out, _err = run(ready, "report")
    rows = parse_csv((ready / "rally_import.csv").read_text())
    page = (ready / "confluence_page.txt").read_text()
    assert code == 0 and "rally_import.csv: 2 Red items" in out
    assert [r[0] for r in rows[1:]] == ["[SRE] web - On-call L2", "[SRE] web - On-call L3"]
    # Only ASCII of the tool's own: Excel's re-save of a file without a BOM cannot garble it.
    assert (ready / "rally_import.csv").read_bytes().isascii()
    assert page.count("\n||") == 1 and page.count("\n|") == 1 + 2  # header + two rows
    assert (ready / "confluence_page.html").read_text().startswith("<table")
    assert git(ready, "rev-list", "--count", "HEAD") == commits_before


def test_report_output_dir(ready, run, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, _out, _err = run(ready, "report", "--output-dir", str(out_dir))
    assert code == 0 and (out_dir / "rally_import.csv").exists()
    assert not (ready / "rally_import.csv").exists()


def test_report_push_without_rally_settings_names_them(ready, run):
    code, _out, err = run(ready, "report", "--push")
    assert code == 1 and "RALLY_API_KEY" in err and "RALLY_PARENT_ID" in err


def test_cycle_time_report(ready, run):
    run(ready, "assess", "--asset", "web", "--capability", "On-call", "--level", "1")
    with Database(ready / "sre_data.db") as db, db.transaction() as conn:
        schema.materialise_items(conn, [("web", "On-call", 2)])
        conn.execute("UPDATE items SET opened_at='2026-01-01T00:00:00+00:00', "
                     "done_at='2026-01-11T00:00:00+00:00' WHERE asset='web' AND capability='On-call' "
                     "AND level=2")
    code, out, _err = run(ready, "report", "--cycle-time")
    assert code == 0 and re.search(r"category\s+Alerting\s+1\s+10\.0\s+10\.0", out)


def test_cycle_time_with_no_data(ready, run):
    assert "no item has reached" in run(ready, "report", "--cycle-time")[1]


def test_matrix_frame_is_the_asset_by_capability_matrix_and_export_writes_it(ready, run):
    from sre_maturity.rules import views
    code, _out, err = run(ready, "assess", "--asset", "web", "--capability", "Alerts",
                          "--not-applicable", "=batch only", "--yes")
    assert code == 0, err
    code, _out, err = run(ready, "assess", "--asset", "auth", "--capability", "Dashboards",
                          "--level", "3", "--assessor", "@ops", "--yes")
    assert code == 0, err
    with Database(ready / "sre_data.db") as db:
        frame = views.matrix_frame(db)
        entries, _flows = views.matrix(db)
    assert frame.index.names == ["asset", "capability"] and len(frame) == 3 * 3
    levels = frame["level"].unstack()
    assert sorted(levels.index) == ["auth", "payment-api", "web"]
    assert list(levels.columns) == sorted(["Alerts", "Dashboards", "On-call"])
    assert levels.loc["auth", "Dashboards"] == 3
    assert frame.loc[("web", "Alerts"), "state"] == "Not Applicable"
    assert frame["level"].isna().sum() == 8
    # export goes through the frame, byte for byte the csv module's matrix text
    code, out, err = run(ready, "export")
    assert code == 0, err
    assert out == reports.matrix_csv(entries) == reports.matrix_frame_csv(frame)
    assert "'=batch only" in out and "'@ops" in out


def test_cycle_times_by_flow_team_and_category():
    def done(key, flows, days_done, days_verified=None, category="Alerting", asset="web"):
        closed = f"2026-01-{1 + days_verified:02d}T00:00:00+00:00" if days_verified else ""
        return item(key=key, flows=flows, asset=asset, category=category,
                    opened_at="2026-01-01T00:00:00+00:00",
                    done_at=f"2026-01-{1 + days_done:02d}T00:00:00+00:00",
                    closed_at=closed, state="verified" if days_verified else "done")

    items = [done("a", "Checkout", 2, 4), done("b", "Checkout, Login", 4),
             done("c", "Login", 10, category="Monitoring", asset="auth"),
             item(key="open", opened_at="2026-01-01T00:00:00+00:00", done_at="", closed_at="")]
    rows = reports.cycle_times(items, {"web": "Storefront", "auth": ""})
    by = {(r["by"], r["group"]): r for r in rows}
    assert [(r["by"], r["group"]) for r in rows] == sorted(by)
    assert set(by) == {("category", "Alerting"), ("category", "Monitoring"),
                       ("flow", "Checkout"), ("flow", "Login"), ("team", "(no team)"),
                       ("team", "Storefront")}
    checkout = by[("flow", "Checkout")]
    assert (checkout["to_completion_n"], checkout["to_completion_median_days"],
            checkout["to_completion_p90_days"]) == (2, 3.0, 4.0)
    assert (checkout["to_verification_n"], checkout["to_verification_median_days"]) == (1, 4.0)
    login = by[("flow", "Login")]
    assert (login["to_completion_n"], login["to_completion_median_days"],
            login["to_verification_n"], login["to_verification_p90_days"]) == (2, 7.0, 0, None)
    assert reports.cycle_times([items[-1]], {}) == []
    assert "Checkout" in reports.cycle_table(rows)


def matrix_rows(n: int) -> list[tuple]:
    """``n`` matrix rows of every kind of value: names needing JSON escapes and spreadsheet
    neutralising, assets in several flows, unassessed and not applicable cells."""
    rows = []
    for i in range(n):
        asset = ["api", 'we"b\\x', "=cmd", "ünï — ∑", "tab\there", "two\nlines\r"][i // 700 % 6] \
            + str(i // 700)
        flows = [["Checkout"], ["Checkout", "Login"], []][i // 700 % 3]
        state = [mt.ASSESSED, mt.NOT_ASSESSED, mt.NOT_APPLICABLE][i % 3]
        assessed = state == mt.ASSESSED
        team = ["Payments", "", "Pay, ments", None][i % 4]
        rows.append((asset, flows, team, f"Cat {i % 4}", f"Cap {i % 60}",
                     state, i % 6 if assessed else None, 3, i % 4,
                     ["Red", "Amber", "Green"][i % 3] if assessed else None, i % 5 if assessed else 0,
                     "jdoe" if assessed else None, f"2026-11-{i % 28 + 1:02d}" if assessed else None,
                     ["+not ours", 'said "no"'][i % 2] if state == mt.NOT_APPLICABLE else None,
                     "2027-01-01" if i % 6 == 2 else None, "Answered no: x?" if assessed else None))
    return rows


@pytest.mark.parametrize("n", [0, 1, 2000, 4001])
def test_status_json_written_in_blocks_is_each_entry_encoded_as_a_dict(n):
    rows = matrix_rows(n)
    flows = [{"flow": "Checkout", "category": "Cat 0", "capability": "Cap 0", "level": 1,
              "rag": "Red", "not_assessed": 2}]
    summary = {"assets": 3, "by_owner": {"Asset": 2}}
    # Every third entry has checks (SPEC §12 evidence); the others' evidence is null.
    evidence = {(r[0], r[4]): {"checks": 2, "pass": 1, "fail": 0, "unknown": 1,
                               "conflict": i % 2 == 0, "overrides": 0}
                for i, r in enumerate(rows) if i % 3 == 0}
    out = io.StringIO()
    reports.write_status_json(out, rows, flows, summary, evidence)
    encode = json.JSONEncoder(ensure_ascii=False).encode
    entries = [{**{k: v for k, v in zip(mt.MATRIX_FIELDS, r, strict=True) if k != "why"},
                "evidence": evidence.get((r[0], r[4]))} for r in rows]
    assert out.getvalue() == (
        '{\n  "matrix": [\n    ' + ",\n    ".join(encode(e) for e in entries) + "\n  ],\n"
        '  "flows": [\n    ' + encode(flows[0]) + "\n  ],\n"
        '  "summary": {"assets": 3, "by_owner": {"Asset": 2}}\n}\n')
    assert json.loads(out.getvalue())["matrix"] == entries


def test_matrix_csv_from_rows_is_the_csv_of_the_entries():
    rows = matrix_rows(4500)
    out = io.StringIO(newline="")
    reports.write_matrix_rows_csv(out, rows)
    entries = [dict(zip(mt.MATRIX_FIELDS, r, strict=True)) for r in rows]
    assert out.getvalue() == reports.matrix_csv(entries)
    assert "'=cmd2" in out.getvalue() and "'+not ours" in out.getvalue()
    assert '"two\nlines\r5"' in out.getvalue() and '"said ""no"""' in out.getvalue()

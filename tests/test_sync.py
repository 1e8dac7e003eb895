"""report --push, sync, sync --from-csv and check against the fake Rally on 127.0.0.1."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from conftest import git
from database import Database
from fake_confluence import FakeConfluence
from fake_rally import FakeRally
from sre_maturity.render import storage_format


def items(folder: Path) -> dict[str, dict]:
    with Database(folder / "sre_data.db") as db:
        return {it["key"]: it for it in db.load_items()}


def sre_stories(fake: FakeRally) -> list[dict]:
    return fake.stories_tagged("SRE-Maturity")


def last_commit(folder: Path) -> str:
    return git(folder, "log", "-1", "--format=%s").strip()


# ------------------------------------------------------------------ report --push
def test_push_creates_one_story_per_red_item_and_commits_the_ids(gaps, run, rally):
    code, out, err = run(gaps, "report", "--push")
    stories = sre_stories(rally)
    stored = items(gaps)
    assert code == 0, err
    assert "2 stories created" in out
    assert sorted(s["Name"] for s in stories) == ["[SRE] web – On-call L2",
                                                  "[SRE] web – On-call L3"]
    assert all(s["PortfolioItem"] == rally.feature_ref for s in stories)
    assert {stored[k]["rally_id"] for k in ("web / On-call / 2", "web / On-call / 3")} == \
        {s["FormattedID"] for s in stories}
    assert last_commit(gaps) == "report --push: 2 stories created, 0 adopted"


def test_story_carries_key_description_and_web_url(gaps, run, rally):
    run(gaps, "report", "--push")
    story = next(s for s in sre_stories(rally) if s["Name"].endswith("L2"))
    item = items(gaps)["web / On-call / 2"]
    assert "web / On-call / 2" in story["Notes"]
    assert "A rota exists" in story["Description"]
    assert "<b>Current level:</b> 1<br />" in story["Description"]
    assert "Is someone reachable" not in story["Description"]
    assert item["rally_url"].endswith(f"/#/{rally.project_id}/detail/userstory/"
                                      f"{story['ObjectID']}")


def test_second_push_creates_nothing(gaps, run, rally):
    run(gaps, "report", "--push")
    code, out, _err = run(gaps, "report", "--push")
    assert code == 0 and "0 stories created" in out and len(sre_stories(rally)) == 2


def test_push_adopts_its_stories_when_the_database_lost_the_ids(gaps, run, rally):
    run(gaps, "report", "--push")
    with Database(gaps / "sre_data.db") as db, db.transaction() as conn:
        conn.execute("UPDATE items SET rally_oid='', rally_id='', rally_url=''")
    code, out, _err = run(gaps, "report", "--push")
    assert code == 0 and "0 stories created, 2 existing stories adopted" in out
    assert len(sre_stories(rally)) == 2 and items(gaps)["web / On-call / 2"]["rally_id"]


def test_push_adopts_a_story_imported_by_hand_from_the_csv(gaps, run, rally):
    rally.seed_stories(1, "SRE-Maturity", rally.feature_ref,
                       notes_fn=lambda i: "sre-tracker item: web / On-call / 3")
    code, out, _err = run(gaps, "report", "--push")
    assert code == 0 and "1 stories created, 1 existing stories adopted" in out
    assert len(sre_stories(rally)) == 2


def test_push_falls_back_to_single_creates_when_batch_is_refused(gaps, run, rally):
    rally.disable_batch = True
    code, _out, _err = run(gaps, "report", "--push")
    assert code == 0 and len(sre_stories(rally)) == 2
    assert rally.count("POST", "/hierarchicalrequirement/create") == 2


def test_push_waits_out_a_429(gaps, run, rally):
    rally.fail_next(1, status=429, retry_after="0.1", path_contains="batch")
    code, _out, err = run(gaps, "report", "--push")
    assert code == 0, err
    assert len(sre_stories(rally)) == 2


def test_push_that_fails_half_way_keeps_what_was_created_and_a_rerun_finishes(gaps, run,
                                                                              rally):
    rally.disable_batch = True
    rally.fail_after_creates(2, status=400)  # the tag, one story, then refusals
    code, _out, err = run(gaps, "report", "--push")
    kept = [k for k, it in items(gaps).items() if it["rally_id"]]
    assert code == 3 and "1 of 2 stories were not created" in err
    assert "not created: web / On-call / 3" in err
    assert len(kept) == 1 and git(gaps, "status", "--porcelain", "sre_data.db") == ""
    assert (gaps / "rally_import.csv").read_text().count("\n") == 2  # header + the missing one
    rally.fail_after_creates(None)
    code, out, _err = run(gaps, "report", "--push")
    assert code == 0 and "1 stories created" in out and len(sre_stories(rally)) == 2


def test_push_with_a_wrong_key_is_one_clear_line_without_the_key(gaps, run, rally,
                                                                 monkeypatch):
    monkeypatch.setenv("RALLY_API_KEY", "_wrongKey_abcdefghijklmnop")
    code, out, err = run(gaps, "report", "--push")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "RALLY_API_KEY" in err and "_wrongKey_abcdefghijklmnop" not in out + err


def test_push_with_an_unknown_parent_names_the_setting(gaps, run, rally, monkeypatch):
    monkeypatch.setenv("RALLY_PARENT_ID", "F999")
    code, _out, err = run(gaps, "report", "--push")
    assert code == 1 and "F999" in err and "RALLY_PARENT_ID" in err


def test_the_key_never_reaches_output_logs_or_files(gaps, run, rally, caplog):
    caplog.set_level(logging.DEBUG)
    code, out, err = run(gaps, "-v", "report", "--push")
    run(gaps, "-v", "sync", "--no-confluence")
    files = [p.read_bytes() for p in gaps.rglob("*") if p.is_file()]
    assert code == 0
    assert rally.api_key not in out + err + caplog.text
    assert not any(rally.api_key.encode() in data for data in files)


# ------------------------------------------------------------------------------ sync
def test_sync_marks_completed_stories_done_awaiting_reassessment(gaps, run, rally):
    run(gaps, "report", "--push")
    for s in sre_stories(rally):
        if s["Name"].endswith("L2"):
            s["ScheduleState"] = "Completed"
    code, out, _err = run(gaps, "sync", "--no-confluence")
    item = items(gaps)["web / On-call / 2"]
    assert code == 0 and "Defined → Completed (done, awaiting re-assessment)" in out
    assert item["state"] == "done"
    assert last_commit(gaps) == "sync: 1 status changed, 0 stories adopted (from Rally)"


def test_push_moves_a_reopened_items_completed_story_back_to_defined(gaps, run, rally):
    run(gaps, "report", "--push")
    story = next(s for s in sre_stories(rally) if s["Name"].endswith("L2"))
    story["ScheduleState"] = "Completed"
    run(gaps, "sync", "--no-confluence")
    code, out, _err = run(gaps, "assess", "--asset", "web", "--capability", "On-call",
                          "--level", "1", "--assessor", "alice")
    assert "  reopened On-call → L2: its Rally story is done; the next report --push moves it " \
        "back to Defined" in out.splitlines()
    assert items(gaps)["web / On-call / 2"]["work_status"] == "Reopened"
    when = items(gaps)["web / On-call / 2"]["updated_at"][:10]

    code, out, err = run(gaps, "report", "--push")
    item = items(gaps)["web / On-call / 2"]
    assert code == 0, err
    assert f"rally: {story['FormattedID']} (web / On-call / 2) moved back from Completed to " \
        "Defined: the item was reopened" in out
    assert len(sre_stories(rally)) == 2  # the same story, never a second one
    assert story["ScheduleState"] == "Defined"
    assert story["Notes"].endswith(
        f"<br />Reopened by sre-tracker: alice re-assessed on {when} and found L1, below L2; "
        "moved back to Defined.")
    assert "web / On-call / 2" in story["Notes"]
    assert (item["work_status"], item["state"], item["rally_id"]) == (
        "Defined", "open", story["FormattedID"])
    assert last_commit(gaps) == "report --push: 0 stories created, 0 adopted, 1 moved back to " \
        "Defined"
    notes = story["Notes"]
    code, out, _err = run(gaps, "report", "--push")
    assert code == 0 and "moved back" not in out and story["Notes"] == notes


def test_a_reopened_item_whose_story_the_team_already_moved_takes_its_state(gaps, run, rally):
    run(gaps, "report", "--push")
    story = next(s for s in sre_stories(rally) if s["Name"].endswith("L2"))
    story["ScheduleState"] = "Accepted"
    run(gaps, "sync", "--no-confluence")
    run(gaps, "assess", "--asset", "web", "--capability", "On-call", "--level", "1")
    story["ScheduleState"] = "In-Progress"
    notes = story["Notes"]
    code, out, _err = run(gaps, "report", "--push")
    assert code == 0 and "moved back" not in out and story["Notes"] == notes
    assert items(gaps)["web / On-call / 2"]["work_status"] == "In-Progress"


def test_sync_with_nothing_changed_makes_no_commit(gaps, run, rally):
    run(gaps, "report", "--push")
    before = git(gaps, "rev-parse", "HEAD")
    code, out, _err = run(gaps, "sync", "--no-confluence")
    assert code == 0 and "no status changed" in out and git(gaps, "rev-parse", "HEAD") == before


def test_sync_dry_run_shows_the_change_and_writes_nothing(gaps, run, rally):
    run(gaps, "report", "--push")
    for s in sre_stories(rally):
        s["ScheduleState"] = "In-Progress"
    before = (gaps / "sre_data.db").read_bytes()
    code, out, _err = run(gaps, "sync", "--dry-run")
    assert code == 0 and "would web / On-call / 2: Defined → In-Progress" in out
    assert (gaps / "sre_data.db").read_bytes() == before


def test_a_deleted_story_is_missing_in_rally_and_nothing_is_deleted(gaps, run, rally):
    run(gaps, "report", "--push")
    gone = next(oid for oid, s in rally.stories.items() if s["Name"].endswith("L3"))
    del rally.stories[gone]
    code, out, _err = run(gaps, "sync", "--no-confluence")
    assert code == 0 and "Defined → Missing in Rally" in out
    assert items(gaps)["web / On-call / 3"]["work_status"] == "Missing in Rally"


def test_sync_matches_through_the_items_with_stories_and_those_notes_name(gaps, run, rally):
    """What sync reads to match stories: the items holding a story id, plus those a story's
    Notes name (adopted); every other item can match nothing."""
    from sre_maturity.commands import sync
    from sre_maturity.render.stories import KEY_MARKER
    run(gaps, "report", "--push")
    run(gaps, "assess", "--asset", "payment-api", "--capability", "Alerts", "--level", "2")
    with Database(gaps / "sre_data.db") as db:
        with_story = {(r["asset"], r["capability"], r["level"])
                      for r in db.story_item_rows(sync.MATCH_FIELDS)}
        assert with_story == {("web", "On-call", 2), ("web", "On-call", 3)}
        assert len(db.item_rows(fields=sync.MATCH_FIELDS)) > len(with_story)
        with pytest.raises(ValueError, match="item fields"):
            db.story_item_rows(("asset", "password"))
        by_hand = {"FormattedID": "US9", "ObjectID": "9", "ScheduleState": "Completed",
                   "Notes": f"{KEY_MARKER} payment-api / Alerts / 3", "Name": "x"}
        keys = [it["key"] for it in sync.matchable_items(db, [by_hand])]
    assert sorted(keys) == ["payment-api / Alerts / 3", "payment-api / Alerts / 4",
                            "web / On-call / 2", "web / On-call / 3"]


def test_verified_after_reassessment_at_the_level(gaps, run, rally):
    run(gaps, "report", "--push")
    for s in sre_stories(rally):
        s["ScheduleState"] = "Accepted"
    run(gaps, "sync", "--no-confluence")
    run(gaps, "assess", "--asset", "web", "--capability", "On-call", "--level", "3")
    assert {it["state"] for it in items(gaps).values()} == {"verified"}


def test_sync_reads_every_page_in_the_fewest_requests(gaps, run, rally):
    rally.seed_stories(4100, "SRE-Maturity", rally.feature_ref)
    code, out, _err = run(gaps, "sync", "--no-confluence")
    queries = rally.count("GET", "/hierarchicalrequirement")
    assert code == 0 and "4100 stories read from Rally" in out and queries == 3


def test_sync_without_settings_points_at_from_csv(gaps, run):
    code, _out, err = run(gaps, "sync")
    assert code == 1 and "RALLY_API_KEY" in err and "--from-csv" in err


# -------------------------------------------------------------------- sync --from-csv
EXPORT = """Formatted ID,Name,Schedule State,Notes,Project
US11,[SRE] web – On-call L2,In-Progress,<p>sre-tracker item: web / On-call / 2</p>,SRE
US12,[SRE] web – On-call L3 (renamed),Completed,sre-tracker item: web / On-call / 3,SRE
US99,Unrelated story,Defined,,SRE
"""


def test_sync_from_csv_adopts_hand_imported_stories_and_takes_their_states(gaps, run,
                                                                           tmp_path):
    export = tmp_path / "export.csv"
    export.write_text(EXPORT, encoding="utf-8")
    code, out, _err = run(gaps, "sync", "--from-csv", str(export), "--no-confluence")
    stored = items(gaps)
    assert code == 0 and "3 stories read from export.csv" in out
    assert (stored["web / On-call / 2"]["rally_id"], stored["web / On-call / 2"]
            ["work_status"]) == ("US11", "In-Progress")
    assert stored["web / On-call / 3"]["state"] == "done"
    # The adopted stories' states are changes too: the commit counts them.
    assert "Not Started → Completed (done, awaiting re-assessment)" in out
    assert last_commit(gaps) == "sync: 2 statuses changed, 2 stories adopted (from export.csv)"


def test_sync_from_csv_never_marks_absent_stories_missing(gaps, run, rally, tmp_path):
    run(gaps, "report", "--push")
    export = tmp_path / "export.csv"
    export.write_text("Formatted ID,Schedule State\n", encoding="utf-8")
    code, out, _err = run(gaps, "sync", "--from-csv", str(export), "--no-confluence")
    assert code == 0 and "no status changed" in out


def test_sync_from_csv_warns_about_a_schedule_state_rally_does_not_have(gaps, run, tmp_path):
    export = tmp_path / "export.csv"
    export.write_text(EXPORT.replace(",In-Progress,", ",Complete,").replace(
        ",Defined,", ",Released,"), encoding="utf-8")
    code, out, err = run(gaps, "-q", "sync", "--from-csv", str(export), "--no-confluence")
    assert code == 0
    assert ("warning: export.csv line 2: Schedule State 'Complete' is not one of Rally's "
            "(Idea, Defined, In-Progress, Completed, Accepted, Released)") in err
    assert "Released" not in err.split("Rally's")[0]  # a common custom state is known
    stored = items(gaps)["web / On-call / 2"]
    assert (stored["work_status"], stored["state"]) == ("Complete", "open")  # not done


def test_sync_from_a_csv_without_schedule_state_names_file_and_column(gaps, run, tmp_path):
    export = tmp_path / "export.csv"
    export.write_text("Formatted ID,Name\nUS1,x\n", encoding="utf-8")
    code, _out, err = run(gaps, "sync", "--from-csv", str(export))
    assert code == 1 and "export.csv" in err and "Schedule State" in err


# ----------------------------------------------------------------------------- check
def test_check_against_rally_passes_every_line(gaps, run, rally):
    code, out, _err = run(gaps, "check")
    lines = [line for line in out.splitlines() if "rally:" in line]
    assert code == 0
    assert [line.split()[0] for line in lines] == ["ok"] * 5
    assert "tag SRE-Maturity will be created by the first push" in out


def test_check_with_a_wrong_workspace_fails_naming_the_setting(gaps, run, rally,
                                                               monkeypatch):
    monkeypatch.setenv("RALLY_WORKSPACE_ID", "424242")
    code, out, _err = run(gaps, "check")
    assert code == 1 and "FAIL  rally:" in out and "RALLY_WORKSPACE_ID" in out


def test_status_json_shows_the_story_state(gaps, run, rally):
    run(gaps, "report", "--push")
    code, out, _err = run(gaps, "status", "--format", "json")
    assert code == 0 and json.loads(out)["summary"]


# ------------------------------------------------------------------------ Confluence
PAGE = ('<h1>Checkout reliability</h1><p>Owner: <ac:link><ri:user ri:account-id="557058:1"/>'
        '</ac:link>&nbsp;see below.</p><ac:structured-macro ac:name="code"><ac:plain-text-body>'
        '<![CDATA[if a < b && c: pass]]></ac:plain-text-body></ac:structured-macro>'
        '<h2>SRE Action Items</h2><p>old table follows</p>'
        '<table><tbody><tr><th><p>Task</p></th><th><p>Asset Name</p></th></tr>'
        '<tr><td><p>nothing yet</p></td><td><p>-</p></td></tr></tbody></table>'
        '<p>Footer &copy; SRE</p>')


@pytest.fixture(params=["cloud", "datacenter"])
def wiki(request, monkeypatch: pytest.MonkeyPatch):
    """A fake Confluence (both flavours) holding the to-do page, with CONFLUENCE_* set."""
    with FakeConfluence() as fake:
        page_id = fake.add_page("SRE maturity", PAGE, version=7)
        settings = fake.settings(request.param)
        for name, value in {**settings, "CONFLUENCE_PAGE_ID": page_id}.items():
            monkeypatch.setenv(name, value)
        fake.page_id = page_id
        yield fake


def test_push_puts_the_stories_on_the_page_and_leaves_the_rest_alone(gaps, run, rally, wiki):
    code, out, err = run(gaps, "report", "--push")
    body = wiki.body(wiki.page_id)
    table = storage_format.table_rows(body, "SRE Action Items")
    assert code == 0, err
    assert "confluence: page updated to version 8" in out
    assert "&nbsp;see below.</p>" in body and '<ri:user ri:account-id="557058:1"' in body
    assert "<![CDATA[if a < b && c: pass]]>" in body and body.endswith("<p>Footer &copy; SRE</p>")
    assert [r["Task"] for r in table][:2] == ["On-call → L2", "On-call → L3"]
    assert table[0]["Rally Card"].startswith("US")


def test_sync_with_nothing_new_writes_no_page_version(gaps, run, rally, wiki):
    run(gaps, "report", "--push")
    puts = wiki.count("PUT")
    code, out, _err = run(gaps, "sync")
    assert code == 0 and "table already up to date (no new version)" in out
    assert wiki.count("PUT") == puts and wiki.version(wiki.page_id) == 8


def test_sync_shows_the_new_status_on_the_page(gaps, run, rally, wiki):
    run(gaps, "report", "--push")
    for s in sre_stories(rally):
        s["ScheduleState"] = "Completed"
    code, _out, _err = run(gaps, "sync")
    table = storage_format.table_rows(wiki.body(wiki.page_id), "SRE Action Items")
    assert code == 0
    assert {r["Status"] for r in table if r["Asset Name"] == "web"} == \
        {"Completed – awaiting re-assessment"}


def test_verified_rows_leave_the_page_and_a_persons_look_alike_row_stays(gaps, run, rally,
                                                                        wiki):
    run(gaps, "report", "--push")
    # Someone adds a row whose Task looks like the tool's, for an asset the tool does not know.
    def add_row(body: str) -> str:
        columns = [c for c in storage_format.table_rows(body, "SRE Action Items")[0]
                   if not c.startswith("_")]
        values = {"Asset Name": "legacy-db", "Task": "Backups → L2", "Owner": "DBA"}
        cells = "".join(f"<td><p>{values.get(c, 'x')}</p></td>" for c in columns)
        return body.replace("</tbody></table>", f"<tr>{cells}</tr></tbody></table>", 1)

    wiki.human_edit(wiki.page_id, add_row)
    for s in sre_stories(rally):
        s["ScheduleState"] = "Accepted"
    run(gaps, "sync", "--no-confluence")
    run(gaps, "assess", "--asset", "web", "--capability", "On-call", "--level", "3")
    code, out, err = run(gaps, "sync")
    table = storage_format.table_rows(wiki.body(wiki.page_id), "SRE Action Items")
    assert code == 0, err
    assert "(2 rows removed)" in out
    assert [(r["Asset Name"], r["Task"]) for r in table] == [
        ("-", "nothing yet"), ("legacy-db", "Backups → L2")]  # people's rows only


def test_sync_from_csv_also_updates_the_page(gaps, run, wiki, tmp_path):
    export = tmp_path / "export.csv"
    export.write_text(EXPORT, encoding="utf-8")
    code, _out, _err = run(gaps, "sync", "--from-csv", str(export))
    table = storage_format.table_rows(wiki.body(wiki.page_id), "SRE Action Items")
    assert code == 0 and {r["Rally Card"] for r in table if r["Asset Name"] == "web"} == \
        {"US11", "US12"}


def test_a_wrong_page_id_is_one_line_naming_the_setting(gaps, run, rally, wiki,
                                                        monkeypatch):
    monkeypatch.setenv("CONFLUENCE_PAGE_ID", "999")
    code, _out, err = run(gaps, "sync")
    assert code == 3 and "CONFLUENCE_PAGE_ID" in err and len(err.strip().splitlines()) == 1


def test_check_reads_the_page_and_its_table(gaps, run, rally, wiki):
    code, out, _err = run(gaps, "check")
    assert code == 0
    assert "ok    confluence: page 'SRE maturity' v7, table 'SRE Action Items' with 1 row" in out


def test_confluence_secrets_never_reach_output_or_files(gaps, run, rally, wiki, caplog):
    caplog.set_level(logging.DEBUG)
    code, out, err = run(gaps, "-v", "report", "--push")
    text = out + err + caplog.text
    files = b"".join(p.read_bytes() for p in gaps.rglob("*") if p.is_file())
    assert code == 0
    for secret in (wiki.api_token, wiki.pat):
        assert secret not in text and secret.encode() not in files

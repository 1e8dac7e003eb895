"""setup --from-csv with checks.csv and assets.csv (SPEC §12, §2): imported with the other CSVs,
added / updated / archived, previewed by --dry-run, committed; a bad file writes nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import git
from database import Database

ROOT = Path(__file__).resolve().parent.parent
CHECKS = """Check,Capability,Level,Question,Kind,Target,Expect,Valid Days,Applies To,Mode
paged,Alerts,2,,splunk_alert,{splunk_alert},,3,,gate
runbook,Dashboards,4,,http,{runbook_url},status=200,,team:Storefront,advisory
"""
ASSETS = """Asset Name,runbook_url,splunk_alert
web,https://wiki.example.com/web,web-5xx
auth,,auth-*
"""


def files(folder: Path, checks: str = CHECKS, assets: str | None = ASSETS) -> None:
    (folder / "checks.csv").write_text(checks, encoding="utf-8")
    if assets is not None:
        (folder / "assets.csv").write_text(assets, encoding="utf-8")


def stored(folder: Path) -> tuple[list[tuple], dict]:
    with Database(folder / "sre_data.db") as db:
        return ([(c.name, c.target, c.applies_to, c.mode) for c in db.load_checks()],
                db.load_asset_params())


def commits(folder: Path) -> int:
    return int(git(folder, "rev-list", "--count", "HEAD"))


def test_first_setup_imports_and_commits_both_files(folder, run):
    files(folder)
    code, out, err = run(folder, "setup", "--from-csv")
    assert code == 0, err
    assert ("added (checks.csv, assets.csv): check paged, check runbook, parameters of web, "
            "parameters of auth") in out
    assert stored(folder) == (
        [("paged", "{splunk_alert}", (), "gate"),
         ("runbook", "{runbook_url}", ("team:Storefront",), "advisory")],
        {"web": {"runbook_url": "https://wiki.example.com/web", "splunk_alert": "web-5xx"},
         "auth": {"runbook_url": "", "splunk_alert": "auth-*"}})
    tracked = git(folder, "ls-files").split()
    assert {"checks.csv", "assets.csv"} <= set(tracked)
    assert git(folder, "status", "--porcelain").strip() == ""
    assert "; added check paged, check runbook, parameters of web, parameters of auth" in git(
        folder, "log", "-1", "--format=%s")


def test_rerun_changes_nothing_then_updates_and_archives(ready, run):
    files(ready)
    assert run(ready, "setup", "--from-csv")[0] == 0
    before = commits(ready)
    code, out, _err = run(ready, "setup", "--from-csv")
    assert (code, out.strip(), commits(ready)) == (0, "setup: nothing changed", before)
    files(ready, CHECKS.replace("{splunk_alert},,3", "{splunk_alert} prod,,3").replace(
        "runbook,Dashboards", "Runbook-Page,Dashboards"),
        "Asset Name,runbook_url,splunk_alert\nweb,https://wiki.example.com/web2,web-5xx\n")
    code, out, err = run(ready, "setup", "--from-csv")
    assert code == 0, err
    assert "added (checks.csv, assets.csv): check Runbook-Page" in out
    assert "updated (checks.csv, assets.csv): check paged, parameters of web" in out
    assert "archived (checks.csv, assets.csv): check runbook, parameters of auth" in out
    assert commits(ready) == before + 1
    checks, params = stored(ready)
    assert [c[:2] for c in checks] == [("paged", "{splunk_alert} prod"),
                                      ("Runbook-Page", "{runbook_url}")]
    assert params == {"web": {"runbook_url": "https://wiki.example.com/web2",
                              "splunk_alert": "web-5xx"}}


def test_removing_the_files_archives_their_rows(ready, run):
    files(ready)
    assert run(ready, "setup", "--from-csv")[0] == 0
    (ready / "checks.csv").unlink()
    (ready / "assets.csv").unlink()
    code, out, err = run(ready, "setup", "--from-csv")
    assert code == 0, err
    assert "archived (checks.csv, assets.csv): check paged, check runbook" in out
    assert stored(ready) == ([], {})
    with Database(ready / "sre_data.db") as db:
        assert len(db.load_checks(archived=True)) == 2  # kept, archived


def test_dry_run_previews_and_writes_nothing(ready, run):
    before = (ready / "sre_data.db").read_bytes()
    files(ready)
    code, out, err = run(ready, "setup", "--from-csv", "--dry-run")
    assert code == 0, err
    assert "dry run: nothing was written" in out
    assert "added (checks.csv, assets.csv): check paged, check runbook" in out
    assert (ready / "sre_data.db").read_bytes() == before
    assert stored(ready) == ([], {})


@pytest.mark.parametrize(("checks", "assets", "message"), [
    (CHECKS.replace("Alerts,2", "Alerts,8"),
     ASSETS, "checks.csv:2, column 'Level': '8' is not a level of 'Alerts'"),
    (CHECKS.replace("{runbook_url}", "{runbok_url}"), ASSETS,
     "checks.csv:3, column 'Target': the placeholder {runbok_url} is not {asset} and names no "
     "column of assets.csv (did you mean runbook_url?)"),
    (CHECKS, ASSETS.replace("auth,", "oauth,"),
     "assets.csv:3, column 'Asset Name': unknown asset 'oauth'; did you mean auth?"),
    (CHECKS, None, "checks.csv:2, column 'Target': the placeholder {splunk_alert} is not "
     "{asset} and names no column of assets.csv; add the column there"),
])
def test_a_bad_file_is_one_line_and_a_first_setup_leaves_the_folder_as_it_was(
        folder, run, checks, assets, message):
    files(folder, checks, assets)
    before = sorted(p.name for p in folder.iterdir())
    code, out, err = run(folder, "setup", "--from-csv")
    assert (code, out) == (1, "")
    assert err.startswith(f"sre_tracker: error: {message}") and err.count("\n") == 1
    assert sorted(p.name for p in folder.iterdir()) == before


def test_an_asset_leaving_flows_csv_is_named_in_the_files_that_still_use_it(ready, run):
    files(ready)
    assert run(ready, "setup", "--from-csv")[0] == 0
    flows = (ready / "flows.csv").read_text().replace("Login,auth,Identity,3\n", "")
    (ready / "flows.csv").write_text(flows)
    code, _out, err = run(ready, "setup", "--from-csv")
    assert code == 1
    assert "assets.csv:3, column 'Asset Name': unknown asset 'auth'" in err


def test_the_shipped_examples_load(tmp_path, run):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("flows.csv", "assessments.csv", "checks.csv", "assets.csv"):
        shutil.copy(ROOT / "examples" / name, data / name)
    code, out, err = run(data, "setup", "--from-csv")
    assert code == 0, err
    with Database(data / "sre_data.db") as db:
        kinds = {c.kind for c in db.load_checks()}
        params = db.load_asset_params()
    assert {"http", "splunk_alert", "prometheus_rule", "pagerduty_oncall"} <= kinds
    assert set(params) == {line.split(",")[1] for line in
                           (ROOT / "examples" / "flows.csv").read_text().splitlines()[1:]}


# ---------------------------------------------------------------- check
def check_line(run, folder: Path) -> tuple[int, str]:
    code, out, _err = run(folder, "check")
    (line,) = [x for x in out.splitlines() if x[6:].startswith("checks:")]
    return code, line


def test_check_says_the_files_are_optional_when_there_are_none(ready, run):
    assert check_line(run, ready) == (0, "skip  checks: no checks.csv (optional: checks answer "
                                         "questions from Splunk, Prometheus, PagerDuty, HTTP, "
                                         "files and commands)")


def test_check_lists_valid_imported_files(ready, run):
    files(ready)
    assert run(ready, "setup", "--from-csv")[0] == 0
    assert check_line(run, ready) == (0, "ok    checks: checks.csv and assets.csv: 2 checks "
                                         "(1 gate, 1 advisory), parameters of 2 assets, valid")


def test_check_names_the_first_problem_by_file_line_and_column(ready, run):
    files(ready)
    assert run(ready, "setup", "--from-csv")[0] == 0
    files(ready, CHECKS.replace(",gate", ",gated"))
    assert check_line(run, ready) == (1, "FAIL  checks: checks.csv:2, column 'Mode': 'gated' "
                                         "is not gate or advisory (advisory: shown, never "
                                         "counted)")


@pytest.mark.parametrize("edit", [
    lambda folder: files(folder, CHECKS.replace("{splunk_alert},,3", "{splunk_alert},,4")),
    lambda folder: files(folder, assets=ASSETS.replace("auth-*", "auth-5xx")),
    lambda folder: (folder / "checks.csv").unlink(),
])
def test_check_fails_when_the_files_were_changed_but_not_imported(ready, run, edit):
    files(ready)
    assert run(ready, "setup", "--from-csv")[0] == 0
    edit(ready)
    code, line = check_line(run, ready)
    assert code == 1 and line.startswith("FAIL  checks: ")
    assert line.endswith("; the database holds others: run setup --from-csv to import them")
    assert run(ready, "setup", "--from-csv")[0] == 0
    assert check_line(run, ready)[1].startswith("ok    checks: ")


# ---------------------------------------------------------------- the stale-CSV notice
def notices(run, folder: Path) -> list[str]:
    code, _out, err = run(folder, "status")
    assert code == 0, err
    return [line for line in err.splitlines() if "differs from what the database" in line]


def test_no_notice_without_the_files_or_once_they_are_imported(ready, run):
    assert notices(run, ready) == []
    files(ready)
    assert run(ready, "setup", "--from-csv")[0] == 0
    assert notices(run, ready) == []


def test_an_edited_or_removed_file_is_said_in_one_line_until_imported(ready, run):
    files(ready)
    assert run(ready, "setup", "--from-csv")[0] == 0
    files(ready, CHECKS.replace("{splunk_alert},,3", "{splunk_alert},results>=1,3"),
          ASSETS.replace("auth-*", "auth-5xx"))
    err = run(ready, "status")[2]  # an edit that makes a row invalid is said as such
    assert ("checks.csv changed since the last setup and cannot be read: checks.csv:2, column "
            "'Expect': a splunk_alert check takes no Expect") in err
    files(ready, CHECKS.replace("{splunk_alert},,3", "{splunk_alert},,5"),
          ASSETS.replace("auth-*", "auth-5xx"))
    assert notices(run, ready) == [
        "sre_tracker: warning: checks.csv differs from what the database was built from "
        "(changed: check paged); run 'sre_tracker.py setup --from-csv' to apply it, or git "
        "checkout -- checks.csv to drop the edit",
        "sre_tracker: warning: assets.csv differs from what the database was built from "
        "(changed: parameter splunk_alert of auth); run 'sre_tracker.py setup --from-csv' to "
        "apply it, or git checkout -- assets.csv to drop the edit"]
    assert run(ready, "setup", "--from-csv")[0] == 0
    assert notices(run, ready) == []
    (ready / "checks.csv").unlink()
    (line,) = notices(run, ready)
    assert "checks.csv differs from what the database was built from (only in the database: " \
           "check paged, check runbook)" in line

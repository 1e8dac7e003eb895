"""The commands through ``main(argv)``: setup, assess, status, gate, history, export, git."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import config
import sre_tracker
from conftest import git
from database import Database

MODEL_HEADER = "Category,Capability,Level,Criteria,Question\n"


def commits(folder: Path) -> list[str]:
    return git(folder, "log", "--format=%s").splitlines()


def files_in_last_commit(folder: Path) -> set[str]:
    return set(git(folder, "show", "--name-only", "--format=", "HEAD").split())


def status_json(run, folder: Path, *args: str) -> dict:
    code, out, _err = run(folder, "status", "--format", "json", *args)
    assert code == 0
    return json.loads(out)


def cell(data: dict, asset: str, capability: str) -> dict:
    return next(e for e in data["matrix"] if (e["asset"], e["capability"]) == (asset, capability))


# ---------------------------------------------------------------- basics
def test_version(capsys):
    assert sre_tracker.main(["--version"]) == 0
    assert config.__version__ in capsys.readouterr().out


def test_no_command_prints_help_and_exits_2(capsys):
    assert sre_tracker.main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


def test_unknown_option_is_a_usage_error(capsys):
    assert sre_tracker.main(["status", "--bogus"]) == 2


@pytest.mark.parametrize("command", ["setup", "assess", "report", "sync", "status", "gate",
                                     "history", "export", "check"])
def test_every_command_has_help_with_examples(capsys, command):
    assert sre_tracker.main([command, "--help"]) == 0
    assert "examples:" in capsys.readouterr().out


def test_help_does_not_import_pandas():
    code = ("import sys, contextlib, io, sre_tracker\n"
            "with contextlib.redirect_stdout(io.StringIO()): sre_tracker.main(['--help'])\n"
            "print(sorted(m for m in ('pandas', 'requests', 'lxml', 'bs4') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).parents[1], check=True).stdout
    assert out.strip() == "[]"


def test_missing_database_is_one_line_error(tmp_path, run):
    code, out, err = run(tmp_path, "status")
    assert (code, err.count("\n"), "Traceback" in err) == (1, 1, False)
    assert "run 'sre_tracker.py setup'" in err


def test_a_missing_dependency_is_one_line_naming_the_package_and_the_fix(ready):
    # lxml is imported only when report renders: hide it, as a clone without the
    # requirements installed would.
    code = ("import sys; sys.modules['lxml'] = None\n"
            "import sre_tracker\n"
            f"sys.exit(sre_tracker.main(['--data-dir', {str(ready)!r}, 'report']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).parents[1])
    assert (done.returncode, done.stderr.count("\n"), "Traceback" in done.stderr) == (1, 1, False)
    assert "package lxml is not installed" in done.stderr
    assert "pip install -r requirements.txt" in done.stderr


def test_verbose_error_shows_the_traceback(tmp_path, run):
    code, _out, err = run(tmp_path, "-v", "status")
    assert code == 1 and "Traceback" in err


# ---------------------------------------------------------------- setup
def test_setup_builds_database_repo_and_one_commit(ready):
    log = commits(ready)
    assert (len(log), log[0].startswith("setup: "), files_in_last_commit(ready)) == (
        1, True,
        {".gitattributes", ".gitignore", "flows.csv", "maturity_model.csv", "sre_data.db",
         "sre_matrix.csv"})


def test_setup_registers_merge_driver_and_ignores_env(ready):
    attributes = (ready / ".gitattributes").read_text()
    assert "sre_data.db merge=sre-tracker diff=sre-tracker" in attributes
    assert ".env" in (ready / ".gitignore").read_text().split()
    assert "merge-db" in git(ready, "config", "--local", "merge.sre-tracker.driver")


def test_second_setup_changes_nothing_and_makes_no_commit(ready, run):
    before = (ready / "sre_data.db").read_bytes()
    code, out, _err = run(ready, "setup", "--from-csv")
    assert (code, "nothing changed" in out, len(commits(ready))) == (0, True, 1)
    assert (ready / "sre_data.db").read_bytes() == before


def test_removed_flow_row_is_archived_and_history_kept(ready, run):
    assert run(ready, "assess", "--asset", "auth", "--capability", "Alerts", "--level", "2")[0] \
        == 0
    flows = (ready / "flows.csv").read_text().replace("Login,auth,Identity,3\n", "")
    (ready / "flows.csv").write_text(flows)
    code, out, _err = run(ready, "setup", "--from-csv")
    assert code == 0 and "archived: asset auth, Login/auth" in out
    with Database(ready / "sre_data.db") as db:
        assert "auth" not in db.load_assets()
        assert [h["new_level"] for h in db.history(asset="auth")] == [2]
    assert "auth" not in {e["asset"] for e in status_json(run, ready)["matrix"]}


def test_restored_row_comes_back_with_its_assessment(ready, run):
    run(ready, "assess", "--asset", "auth", "--capability", "Alerts", "--level", "2")
    original = (ready / "flows.csv").read_text()
    (ready / "flows.csv").write_text(original.replace("Login,auth,Identity,3\n", ""))
    run(ready, "setup", "--from-csv")
    (ready / "flows.csv").write_text(original)
    run(ready, "setup", "--from-csv")
    assert cell(status_json(run, ready), "auth", "Alerts")["level"] == 2


def test_changed_model_text_is_updated(ready, run):
    model = (ready / "maturity_model.csv").read_text()
    (ready / "maturity_model.csv").write_text(model.replace("Is every alert actionable?",
                                                            "Does every alert have a runbook?"))
    code, out, _err = run(ready, "setup", "--from-csv")
    assert code == 0 and "updated: 1 question rows" in out
    with Database(ready / "sre_data.db") as db:
        assert db.load_model()["Alerts"].levels[3].questions == ("Does every alert have a "
                                                                  "runbook?",)


def test_bad_csv_writes_nothing(ready, run):
    before = (ready / "sre_data.db").read_bytes()
    (ready / "flows.csv").write_text("Flow,Asset Name,Target Level\nLogin,auth,7\n")
    code, _out, err = run(ready, "setup", "--from-csv")
    assert code == 1 and "flows.csv:2, column 'Target Level'" in err
    assert (ready / "sre_data.db").read_bytes() == before and len(commits(ready)) == 1


def test_a_comma_line_in_a_semicolon_flows_csv_is_named_as_such(folder, run):
    (folder / "flows.csv").write_text("Flow;Asset Name;Team\r\nLogin;auth;Identity\r\n"
                                      "Checkout,web,Storefront\r\n", encoding="utf-8")
    code, out, err = run(folder, "setup", "--from-csv")
    assert (code, out) == (1, "")
    assert err == ("sre_tracker: error: flows.csv:3: the row has one column, but the file "
                   "separates columns with ';' (its header does) and this line uses ','; "
                   "write it with ';'\n")
    assert sorted(p.name for p in folder.iterdir()) == ["flows.csv", "maturity_model.csv"]


def test_setup_without_flows_csv_says_what_to_do(tmp_path, run):
    code, _out, err = run(tmp_path, "setup", "--from-csv")
    assert code == 1 and "flows.csv not found" in err
    assert f"(examples: {Path(__file__).resolve().parents[1] / 'examples'})" in err


def test_setup_writes_default_model_when_missing(folder, run):
    (folder / "maturity_model.csv").unlink()
    code, out, _err = run(folder, "setup", "--from-csv")
    shipped = (Path(sre_tracker.__file__).parent / "maturity_model.csv").read_text()
    assert code == 0 and (folder / "maturity_model.csv").read_text() == shipped


def test_assessments_csv_is_imported_once(folder, run):
    (folder / "assessments.csv").write_text(
        "Asset Name,Capability,Level,Notes,Assessed By,Assessed At,Not Applicable Reason\n"
        "web,Alerts,2,grafana,jdoe,2026-10-01,\n"
        "auth,On-call,N/A,,jdoe,2026-10-02,batch job\n")
    run(folder, "setup", "--from-csv")
    code, out, _err = run(folder, "setup", "--from-csv")
    data = status_json(run, folder)
    assert (cell(data, "web", "Alerts")["level"], cell(data, "auth", "On-call")["state"],
            "nothing changed" in out, len(commits(folder))) == (2, "Not Applicable", True, 1)


def test_assessment_older_than_current_is_skipped(ready, run):
    run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "3")
    (ready / "assessments.csv").write_text(
        "Asset Name,Capability,Level,Assessed At\nweb,Alerts,1,2020-01-01\n")
    code, out, _err = run(ready, "setup", "--from-csv")
    assert code == 0 and "skipped 1 row of assessments.csv: older than the current " \
        "assessment of the cell (-v lists them)" in out.splitlines()
    assert cell(status_json(run, ready), "web", "Alerts")["level"] == 3
    # Said once per change of the file, not on every run; -v lists the rows.
    assert "skipped" not in run(ready, "setup", "--from-csv")[1]
    out = run(ready, "-v", "setup", "--from-csv")[1]
    assert "  skipped assessments.csv:2 web / Alerts: assessed 2020-01-01" in out
    (ready / "assessments.csv").write_text(
        "Asset Name,Capability,Level,Assessed At\nweb,Alerts,1,2020-01-01\nweb,Dashboards,1,"
        "2020-01-01\n")
    assert "skipped 1 row of assessments.csv" in run(ready, "setup", "--from-csv")[1]


def test_assessment_of_unknown_asset_writes_nothing(ready, run):
    (ready / "assessments.csv").write_text("Asset Name,Capability,Level\nwebb,Alerts,1\n")
    before = (ready / "sre_data.db").read_bytes()
    code, _out, err = run(ready, "setup", "--from-csv")
    assert code == 1 and "assessments.csv:2, column 'Asset Name': unknown asset 'webb'; " \
        "did you mean web?" in err
    assert (ready / "sre_data.db").read_bytes() == before


def test_dry_run_previews_and_writes_nothing(ready, run):
    run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "1")
    before = (ready / "sre_data.db").read_bytes()
    flows = (ready / "flows.csv").read_text().replace("Checkout,web,Storefront,3",
                                                      "Checkout,web,Storefront,5")
    (ready / "flows.csv").write_text(flows)
    code, out, _err = run(ready, "setup", "--from-csv", "--dry-run")
    assert code == 0 and "dry run: nothing was written" in out
    assert "item appears: web / Alerts / 4" in out and "item appears: web / Alerts / 5" in out
    assert (ready / "sre_data.db").read_bytes() == before


def test_dry_run_in_fresh_folder_creates_nothing(folder, run):
    code, out, _err = run(folder, "setup", "--from-csv", "--dry-run")
    assert code == 0 and not (folder / "sre_data.db").exists() and not (folder / ".git").exists()


# ---------------------------------------------------------------- assess (flags)
def test_assess_with_answers_records_level_and_commits(ready, run):
    code, out, _err = run(ready, "assess", "--flow", "Checkout", "--asset", "payment-api",
                          "--capability", "alerts", "--answers", "yes,yes,no", "--notes", "ok",
                          "--assessor", "jdoe")
    entry = cell(status_json(run, ready), "payment-api", "Alerts")
    assert (code, entry["level"], entry["assessed_by"], entry["rag"]) == (0, 2, "jdoe", "Amber")
    assert commits(ready)[0] == "assess: Checkout/payment-api Alerts none→2 (jdoe)"
    assert files_in_last_commit(ready) == {"sre_data.db", "sre_matrix.csv"}


def test_assess_commit_leaves_other_staged_files_alone(ready, run):
    (ready / "notes.txt").write_text("draft")
    git(ready, "add", "notes.txt")
    run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "1")
    assert "notes.txt" not in files_in_last_commit(ready)
    assert git(ready, "diff", "--cached", "--name-only").split() == ["notes.txt"]


def test_assess_not_applicable_with_expiry(ready, run):
    code, _o, _e = run(ready, "assess", "--asset", "web", "--capability", "On-call",
                       "--not-applicable", "static site", "--until", "2099-01-01")
    entry = cell(status_json(run, ready), "web", "On-call")
    assert (code, entry["state"], entry["not_applicable_reason"], entry["rag"]) == (
        0, "Not Applicable", "static site", None)


@pytest.mark.parametrize(("args", "message"), [
    (["--asset", "paymnt-api", "--capability", "Alerts", "--level", "1"],
     "unknown asset 'paymnt-api'; did you mean payment-api?"),
    (["--asset", "web", "--capability", "Alert", "--level", "1"],
     "unknown capability 'Alert'; did you mean Alerts"),
    (["--asset", "web", "--capability", "Alerts", "--level", "7"], "--level 7 is out of range"),
    (["--asset", "web", "--capability", "Alerts", "--answers", "yes,maybe"],
     "'maybe' (answer 2) is not yes or no"),
    (["--asset", "web", "--capability", "Alerts", "--answers", "yes,yes"],
     "needs an answer for every question"),
    (["--asset", "web", "--capability", "Alerts", "--answers", "no,yes"],
     "2 answers given but asking stops after 1 (the first 'no'); remove the extra ones"),
    (["--asset", "web", "--capability", "Alerts", "--answers", "yes,yes,yes,yes,yes,yes"],
     "6 answers given but Alerts has only 5 questions, all answered yes; remove the extra"),
    (["--asset", "web", "--capability", "Alerts"], "--answers, --level or --not-applicable"),
    (["--capability", "Alerts", "--level", "1"], "--asset is required"),
    (["--asset", "web", "--level", "1"], "--capability is required"),
    (["--asset", "web", "--capability", "Alerts", "--level", "1", "--until", "2030-01-01"],
     "--until goes with --not-applicable"),
    (["--asset", "web", "--capability", "Alerts", "--not-applicable", "x", "--until",
      "2001-01-01"], "is in the past"),
    (["--asset", "auth", "--flow", "Checkout", "--capability", "Alerts", "--level", "1"],
     "not in flow 'Checkout'"),
])
def test_assess_bad_input_is_one_line_and_writes_nothing(ready, run, args, message):
    before = (ready / "sre_data.db").read_bytes()
    code, _out, err = run(ready, "assess", *args)
    assert (code, message in err, err.count("\n")) == (1, True, 1)
    assert (ready / "sre_data.db").read_bytes() == before


def test_lower_reassessment_reopens_items(ready, run):
    run(ready, "assess", "--asset", "web", "--capability", "On-call", "--level", "3")
    run(ready, "assess", "--asset", "web", "--capability", "On-call", "--level", "1")
    with Database(ready / "sre_data.db") as db:
        states = {i["key"]: i["state"] for i in db.load_items()}
    assert states["web / On-call / 2"] == "open"


def test_reaching_the_level_verifies_items(ready, run):
    run(ready, "assess", "--asset", "web", "--capability", "On-call", "--level", "1")
    run(ready, "assess", "--asset", "web", "--capability", "On-call", "--level", "3")
    with Database(ready / "sre_data.db") as db:
        states = {i["key"]: i["state"] for i in db.load_items()}
    assert (states["web / On-call / 2"], states["web / On-call / 3"]) == ("verified", "verified")


# ---------------------------------------------------------------- git edge cases
def test_no_commit_flag_says_so_once_and_saves(ready, run):
    code, _out, err = run(ready, "--no-commit", "assess", "--asset", "web", "--capability",
                          "Alerts", "--level", "1")
    assert (code, err.count("not committing"), len(commits(ready))) == (0, 1, 1)
    assert cell(status_json(run, ready), "web", "Alerts")["level"] == 1


def test_folder_that_is_not_a_repo_still_works(ready, run):
    import shutil

    shutil.rmtree(ready / ".git")
    code, _out, err = run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level",
                          "1")
    assert code == 0 and "is not a git repository" in err


@pytest.fixture
def no_identity(monkeypatch, tmp_path):
    """git as on a fresh CI container: no user.name/user.email anywhere, no auto-detection."""
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME",
                "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n\tuseConfigOnly = true\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


def folder_state(folder: Path) -> dict[str, bytes | None]:
    """Every path under the folder with its bytes (None for folders); the writers' lock file
    in .git stays between runs by design."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*")) if p.name != "sre-tracker.lock"}


IDENTITY_ERROR = ("sre_tracker: error: git has no identity to commit with; run git config "
                  "user.name 'Your Name' and git config user.email you@example.com (add --global "
                  "for every repository), or pass --no-commit\n")


def test_without_git_identity_assess_refuses_before_writing(ready, run, no_identity):
    before = folder_state(ready)
    code, out, err = run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level",
                         "1", "--assessor", "x")
    assert (code, out, err) == (1, "", IDENTITY_ERROR)
    assert folder_state(ready) == before


def test_without_git_identity_no_commit_still_works(ready, run, no_identity):
    code, _out, err = run(ready, "--no-commit", "assess", "--asset", "web", "--capability",
                          "Alerts", "--level", "1", "--assessor", "x")
    assert code == 0 and "not committing" in err
    assert cell(status_json(run, ready), "web", "Alerts")["level"] == 1


def test_without_git_identity_first_setup_leaves_the_folder_as_it_was(folder, run,
                                                                       no_identity):
    before = folder_state(folder)
    code, out, err = run(folder, "setup", "--from-csv")
    assert (code, out, err) == (1, "", IDENTITY_ERROR)
    assert folder_state(folder) == before


@pytest.mark.parametrize("name, text, message", [
    ("assessments.csv", "Asset Name,Capability,Level\nweb,Alerts,1\nwebb,Alerts,2\n",
     "assessments.csv:3, column 'Asset Name': unknown asset 'webb'; did you mean web?"),
    ("assessments.csv", "Asset Name,Capability,Level\nweb,Alert,1\n",
     "assessments.csv:2, column 'Capability': unknown capability 'Alert'; did you mean Alerts?"),
    ("maturity_model.csv", MODEL_HEADER + "M,D,1,c,q?\nM,D,3,c,q3?\n",
     "maturity_model.csv:3, column 'Level': capability 'D' has levels 1 and 3"),
])
def test_a_refused_first_setup_leaves_the_folder_as_it_was(folder, run, name, text, message):
    (folder / name).write_text(text)
    (folder / ".gitignore").write_text("mine\n")
    before = folder_state(folder)
    code, out, err = run(folder, "setup", "--from-csv")
    assert (code, out) == (1, "") and message in err
    assert folder_state(folder) == before


def test_first_setup_commits_the_git_files_and_leaves_nothing_behind(folder, run):
    (folder / "assessments.csv").write_text("Asset Name,Capability,Level\nweb,Alerts,1\n")
    assert run(folder, "setup", "--from-csv")[0] == 0
    first = git(folder, "rev-list", "--max-parents=0", "HEAD").strip()
    in_first = set(git(folder, "show", "--name-only", "--format=", first).split())
    assert {".gitattributes", ".gitignore", "flows.csv", "maturity_model.csv",
            "assessments.csv", "sre_data.db", "sre_matrix.csv"} <= in_first
    for argv in (["assess", "--asset", "web", "--capability", "Alerts", "--level", "2"],
                 ["report"], ["export", "--items", "-o", str(folder / "items.csv")]):
        assert run(folder, *argv)[0] == 0
        left = [line for line in git(folder, "status", "--porcelain").splitlines()
                if not line.endswith("items.csv")]
        assert left == [], argv


def test_setup_commits_git_files_an_earlier_no_commit_run_left_untracked(folder, run):
    assert run(folder, "--no-commit", "setup", "--from-csv")[0] == 0
    assert run(folder, "setup", "--from-csv")[0] == 0
    assert git(folder, "status", "--porcelain") == ""
    assert {".gitattributes", ".gitignore"} <= set(git(folder, "ls-files").split())


def test_a_failed_commit_leaves_nothing_staged(ready, run):
    hook = ready / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'policy: no' >&2\nexit 1\n")
    hook.chmod(0o755)
    code, _out, err = run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level",
                          "1", "--assessor", "x")
    assert code == 1 and "the change is saved, but git commit failed" in err
    assert git(ready, "diff", "--cached", "--name-only") == ""
    assert cell(status_json(run, ready), "web", "Alerts")["level"] == 1


def test_tracked_env_file_is_warned_about(ready, run):
    (ready / ".env").write_text("RALLY_TAG=x\n")
    git(ready, "add", "-f", ".env")
    _code, _out, err = run(ready, "status")
    assert ".env is tracked by git" in err


# ---------------------------------------------------------------- status, gate, history
def test_status_json_shape(ready, run):
    run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "1")
    data = status_json(run, ready)
    entry = cell(data, "web", "Alerts")
    assert set(data) == {"matrix", "flows", "summary"}
    assert (entry["flows"], entry["target_level"], entry["go_live_level"], entry["open_items"],
            entry["state"]) == (["Checkout", "Login"], 3, 1, 2, "Assessed")
    assert cell(data, "auth", "Alerts")["level"] is None
    assert len(data["flows"]) == 2 * 3
    assert (entry["team"], entry["not_applicable_until"]) == ("Storefront", None)


def test_status_json_has_the_team_and_the_not_applicable_expiry(ready, run):
    run(ready, "assess", "--asset", "auth", "--capability", "On-call", "--not-applicable",
        "batch", "--until", "2999-01-31")
    entry = cell(status_json(run, ready), "auth", "On-call")
    assert (entry["team"], entry["not_applicable_reason"], entry["not_applicable_until"]) == (
        "Identity", "batch", "2999-01-31")


def test_flow_rollup_is_weakest_assessed_asset(ready, run):
    run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "1")
    run(ready, "assess", "--asset", "payment-api", "--capability", "Alerts", "--level", "4")
    flows = status_json(run, ready)["flows"]
    checkout = next(f for f in flows if (f["flow"], f["capability"]) == ("Checkout", "Alerts"))
    login = next(f for f in flows if (f["flow"], f["capability"]) == ("Login", "Alerts"))
    assert (checkout["level"], checkout["rag"], login["level"], login["not_assessed"]) == (
        1, "Amber", 1, 1)


def test_status_table_lists_assets_flows_and_counts(ready, run):
    run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "0")
    code, out, _err = run(ready, "status")
    assert code == 0 and "\x1b[" not in out
    assert "[Checkout]" in out and "payment-api" in out and "still to assess" in out


def test_a_flow_cell_with_an_asset_not_assessed_has_a_star_and_is_never_green(ready, run):
    # web at L3 on Dashboards (on target, Green); auth (Login) not assessed on it.
    run(ready, "assess", "--asset", "web", "--capability", "Dashboards", "--level", "3")
    run(ready, "assess", "--asset", "payment-api", "--capability", "Dashboards", "--level", "4")
    code, out, _err = run(ready, "status")
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert code == 0
    assert rows["web"][:2] == ["3", "3G"]  # the asset itself is on target: Green
    assert rows["[Login]"][0] == "3*"  # auth not assessed: a star and no G
    assert rows["[Checkout]"][0] == "3G"  # both assets assessed, both Green
    assert "never Green" in out
    flows = status_json(run, ready)["flows"]
    login = next(f for f in flows if (f["flow"], f["capability"]) == ("Login", "Dashboards"))
    assert (login["level"], login["rag"], login["not_assessed"]) == (3, "Green", 1)


def test_status_columns_line_up_with_wide_cjk_names(folder, run):
    (folder / "flows.csv").write_text("Flow,Asset Name,Team,Target Level\n"
                                      "結帳,支付服務,Payments,3\nCheckout,web,Storefront,3\n",
                                      encoding="utf-8")
    assert run(folder, "setup", "--from-csv")[0] == 0
    run(folder, "assess", "--asset", "支付服務", "--capability", "Dashboards", "--level", "2")
    run(folder, "assess", "--asset", "web", "--capability", "Dashboards", "--level", "1")
    code, out, _err = run(folder, "status")
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    from sre_maturity.render.reports import text_width

    def column_of(line: str, cell: str) -> int:  # terminal column where ``cell`` starts
        return text_width(line[:line.index(cell)])

    assert code == 0
    header = lines["asset"]
    assert (column_of(lines["支付服務"], "3"), column_of(lines["支付服務"], "2A")) == (
        column_of(header, "target"), column_of(header, "MON"))
    assert column_of(lines["web"], "1R") == column_of(header, "MON")
    assert column_of(lines["[結帳]"], "2A") == column_of(header, "MON")


def test_cycle_time_shows_long_category_names_whole(folder, run):
    model = folder / "maturity_model.csv"
    model.write_text(model.read_text(encoding="utf-8").replace(
        "Alerting,", "Change Management & Release Safety,"), encoding="utf-8")
    assert run(folder, "setup", "--from-csv")[0] == 0
    run(folder, "assess", "--asset", "web", "--capability", "On-call", "--level", "1")
    (folder / "rally.csv").write_text("Formatted ID,Schedule State,Notes\n"
                                      "US1,Completed,sre-tracker item: web / On-call / 2\n",
                                      encoding="utf-8")
    assert run(folder, "sync", "--from-csv", str(folder / "rally.csv"))[0] == 0
    code, out, _err = run(folder, "report", "--cycle-time")
    rows = {line.split()[0] + " " + line[9:].split("  ")[0]: line for line in out.splitlines()
            if line.startswith(("flow", "team", "category"))}
    assert code == 0
    assert set(rows) == {"category Change Management & Release Safety", "flow Checkout",
                         "flow Login", "team Storefront"}
    # Every figure column starts where its heading ends.
    head = out.splitlines()[0]
    for line in rows.values():
        assert len(line) == len(head)


def test_status_filters(ready, run):
    data = status_json(run, ready, "--flow", "Login")
    code, out, _err = run(ready, "status", "--asset", "web")
    assert {e["asset"] for e in data["matrix"]} == {"web", "auth"}
    assert code == 0 and "Alerts" in out and "not assessed" in out


def test_status_unknown_flow_suggests(ready, run):
    code, _out, err = run(ready, "status", "--flow", "Chekout")
    assert code == 1 and "did you mean Checkout" in err


def test_status_csv(ready, run):
    code, out, _err = run(ready, "status", "--format", "csv")
    assert code == 0 and out.splitlines()[0].startswith("Asset Name,Flows,Team,Category")


def test_gate_closed_lists_go_live_items_and_exits_4(ready, run):
    run(ready, "assess", "--asset", "web", "--capability", "On-call", "--level", "1")
    code, out, _err = run(ready, "gate", "--flow", "Login")
    assert code == 4 and "web  On-call → L2" in out and "Answered" not in out.split("\n")[0]


def test_gate_open_exits_0_when_every_go_live_capability_is_met(ready, run):
    for capability, level in (("Dashboards", "2"), ("Alerts", "1"), ("On-call", "3")):
        run(ready, "assess", "--asset", "payment-api", "--capability", capability,
            "--level", level)
    code, out, _err = run(ready, "gate", "--asset", "PAYMENT-API")
    assert (code, out) == (0, "gate open: asset payment-api has no open go-live item\n")


def test_gate_right_after_setup_is_closed_listing_what_nobody_assessed(ready, run):
    code, out, _err = run(ready, "gate", "--flow", "checkout")
    lines = out.splitlines()
    assert code == 4
    assert lines[0] == "gate closed: flow Checkout has 6 go-live capabilities not assessed"
    assert "  not assessed  payment-api  Dashboards (L2), Alerts (L1), On-call (L3)" in lines
    assert "  not assessed  web  Dashboards (L2), Alerts (L1), On-call (L3)" in lines


def test_gate_allow_unassessed_leaves_them_out(ready, run):
    run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "1")
    code, out, _err = run(ready, "gate", "--asset", "web", "--allow-unassessed")
    assert (code, out) == (0, "gate open: asset web has no open go-live item (2 go-live "
                              "capabilities not assessed, allowed by --allow-unassessed)\n")
    run(ready, "assess", "--asset", "web", "--capability", "On-call", "--level", "1")
    code, out, _err = run(ready, "gate", "--flow", "Login", "--allow-unassessed")
    assert code == 4 and "2 open go-live items (4 go-live capabilities not assessed, allowed" \
        in out.splitlines()[0]
    assert "not assessed  " not in out


def test_gate_counts_an_expired_not_applicable_mark_as_not_assessed(ready, run):
    for capability in ("Dashboards", "Alerts"):
        run(ready, "assess", "--asset", "auth", "--capability", capability, "--level", "2")
    run(ready, "assess", "--asset", "auth", "--capability", "On-call", "--not-applicable",
        "batch", "--until", "2999-01-01")
    assert run(ready, "gate", "--asset", "auth")[0] == 0
    with Database(ready / "sre_data.db") as db, db.transaction() as conn:
        conn.execute("UPDATE cells SET na_until = '2000-01-01' WHERE asset = 'auth'")
    code, out, _err = run(ready, "gate", "--asset", "auth")
    assert code == 4 and "  not assessed  auth  On-call (L3)" in out.splitlines()


def test_asset_in_two_flows_blocks_both(ready, run):
    run(ready, "assess", "--asset", "web", "--capability", "On-call", "--level", "1")
    assert (run(ready, "gate", "--flow", "Checkout")[0], run(ready, "gate", "--flow",
                                                               "Login")[0]) == (4, 4)


def test_gate_unknown_flow(ready, run):
    code, _out, err = run(ready, "gate", "--flow", "Nope")
    assert code == 1 and "unknown flow" in err


@pytest.mark.parametrize("argv, message", [
    (["status", "--flow", "login"], None),
    (["status", "--asset", "Web"], None),
    (["history", "--asset", "AUTH"], None),
    (["history", "--capability", "alerts"], None),
    (["gate", "--asset", "Auth"], None),
    (["status", "--flow", "Logn"], "unknown flow 'Logn'; did you mean Login?"),
    (["status", "--asset", "webb"], "unknown asset 'webb'; did you mean web?"),
    (["history", "--asset", "nope"], "unknown asset 'nope'; known: auth, payment-api, web"),
    (["history", "--capability", "alert"], "unknown capability 'alert'; did you mean Alerts?"),
    (["gate", "--asset", "paymentapi"], "unknown asset 'paymentapi'; did you mean payment-api?"),
    (["assess", "--asset", "wbe", "--capability", "Alerts", "--level", "1"],
     "unknown asset 'wbe'; did you mean web? (see flows.csv)"),
])
def test_names_match_in_any_case_and_unknown_ones_name_close_matches(ready, run, argv,
                                                                      message):
    code, _out, err = run(ready, *argv)
    if message is None:
        assert code in (0, 4) and err == ""
    else:
        assert (code, err) == (1, f"sre_tracker: error: {message}\n")


def test_history_newest_first_with_answers(ready, run):
    run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--answers", "yes,no",
        "--notes", "n1", "--assessor", "a1")
    run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "3",
        "--assessor", "a2")
    code, out, _err = run(ready, "history", "--asset", "web")
    lines = out.splitlines()
    assert code == 0 and "1 → 3" in lines[0] and "none → 1" in lines[1]
    assert "answered no: Do alerts page the on-call engineer?" in out and "notes: n1" in out


def test_history_since_and_bad_date(ready, run):
    run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "1")
    assert "no assessments" in run(ready, "history", "--since", "2999-01-01")[1]
    assert run(ready, "history", "--since", "soon")[0] == 1


def test_export_matrix_and_items(ready, run, tmp_path):
    run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "1")
    code, out, _err = run(ready, "export", "-o", str(tmp_path / "m.csv"))
    code2, items, _err = run(ready, "export", "--items")
    assert code == code2 == 0 and "wrote" in out
    assert (tmp_path / "m.csv").read_text().count("\n") == 1 + 3 * 3
    # One header convention for the CSVs a person opens: Title Case, as the matrix.
    assert (tmp_path / "m.csv").read_text().startswith("Asset Name,Flows,Team,Category,")
    assert items.splitlines()[0] == (
        "Item Key,Flows,Asset Name,Category,Capability,Level,Priority,Required for Go Live,"
        "Owner,Target Milestone,Criteria,Why,State,Work Status,Rally ID,Rally URL,Opened At,"
        "Done At,Closed At")
    assert "web / Alerts / 2" in items
    # Written a chunk at a time: the same text whatever the chunk, the header once.
    from database import Database
    from sre_maturity.render import reports
    from sre_maturity.rules import views

    run(ready, "assess", "--asset", "auth", "--capability", "On-call", "--level", "0")
    with Database(ready / "sre_data.db") as db:
        every = views.items(db)
    whole = "".join(text for text, _n in reports.items_csv(every))
    assert "".join(text for text, _n in reports.items_csv(every, chunk=2)) == whole
    assert sum(n for _text, n in reports.items_csv(every, chunk=2)) == len(every) > 2
    assert list(reports.items_csv([])) == [(items.splitlines()[0] + "\n", 0)]


def test_assess_names_match_in_any_case(ready, run):
    code, _out, err = run(ready, "assess", "--flow", "checkout", "--asset", "WEB",
                          "--capability", "alerts", "--level", "2")
    assert code == 0, err
    assert "assess: Checkout, Login/web Alerts none→2" in git(ready, "log", "-1", "--format=%s")


def test_assess_unknown_flow_suggests_one(ready, run):
    code, _out, err = run(ready, "assess", "--flow", "Chekout", "--asset", "web",
                          "--capability", "Alerts", "--level", "1")
    assert code == 1 and "did you mean Checkout?" in err


# ---------------------------------------------------------------- -q, the seeds' names
@pytest.mark.parametrize("argv", [
    ["setup", "--from-csv"],
    ["assess", "--asset", "web", "--capability", "Alerts", "--answers", "yes,no"],
    ["report"],
    ["generate-reports", "--include-amber"],
    ["gate", "--asset", "web", "--allow-unassessed"],
    ["export", "--items", "-o", "{folder}/items.csv"],
    ["sync", "--from-csv", "{folder}/rally.csv"],
])
def test_quiet_silences_progress_and_summaries(folder, run, argv):
    (folder / "rally.csv").write_text("Formatted ID,Schedule State,Name\nUS1,Defined,x\n")
    if argv[0] != "setup":
        assert run(folder, "setup", "--from-csv")[0] == 0
    code, out, err = run(folder, "-q", *(a.format(folder=folder) for a in argv))
    assert (code, out, err) == (0, "", "")


@pytest.mark.parametrize("argv", [
    ["status"],
    ["status", "--format", "json"],
    ["status", "--format", "csv"],
    ["status", "--asset", "web"],
    ["history"],
    ["history", "--limit", "1"],
    ["export"],
    ["export", "--items"],
    ["report", "--cycle-time"],
])
def test_quiet_never_silences_the_data_asked_for(ready, run, argv):
    run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "1")
    loud = run(ready, *argv)
    quiet = run(ready, "-q", *argv)
    assert loud[0] == quiet[0] == 0
    assert quiet[1] == loud[1] and quiet[1].strip()
    assert quiet[2] == ""


def test_quiet_dump_still_prints_the_text_git_diff_reads(ready, run):
    """dump is git's textconv for sre_data.db: its text is the data asked for, so a user who
    runs it with -q (or a textconv command line that carries -q) still gets it."""
    loud = run(ready, "dump", str(ready / "sre_data.db"))
    quiet = run(ready, "-q", "dump", str(ready / "sre_data.db"))
    assert loud[0] == quiet[0] == 0
    assert quiet[1] == loud[1] and "schema" in quiet[1]


def test_quiet_closed_gate_still_says_why_on_stderr(ready, run):
    code, out, err = run(ready, "-q", "gate", "--flow", "Checkout")
    assert (code, out) == (4, "")
    assert err.splitlines()[0] == ("gate closed: flow Checkout has 6 go-live capabilities not "
                                   "assessed")
    assert "not assessed  payment-api  Dashboards (L2), Alerts (L1), On-call (L3)" in err
    loud = run(ready, "gate", "--flow", "Checkout")
    assert (loud[0], loud[1]) == (4, err)


def test_quiet_failed_check_still_says_why_on_stderr(tmp_path, run):
    code, out, err = run(tmp_path, "-q", "check")
    assert (code, out) == (1, "")
    assert err.startswith(f"FAIL  database: no sre_data.db in {tmp_path}; run setup\n")
    assert "ok  " not in err and "skip" not in err


@pytest.mark.parametrize("limit", ["0", "-1", "x"])
def test_history_refuses_a_limit_below_1(ready, run, limit):
    code, out, err = run(ready, "history", f"--limit={limit}")
    assert (code, out) == (2, "")
    assert "argument --limit:" in err.splitlines()[-1]
    assert ("is less than 1" if limit != "x" else "is not a whole number") in err


def test_history_limit_keeps_the_newest(ready, run):
    for level in ("1", "2", "3"):
        run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", level)
    code, out, _err = run(ready, "history", "--limit", "2")
    entries = [line for line in out.splitlines() if not line.startswith(" ")]
    assert code == 0 and len(entries) == 2
    assert "2 → 3" in entries[0] and "1 → 2" in entries[1]


def test_the_program_names_itself_as_invoked(tmp_path, run, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/home/me/.local/bin/sre-tracker"])
    assert sre_tracker.main(["--version"]) == 0
    assert capsys.readouterr().out == f"sre-tracker {config.__version__}\n"
    assert sre_tracker.main(["gate", "--help"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("usage: sre-tracker gate") and "sre_tracker.py" not in shown
    code, _out, err = run(tmp_path, "status")
    assert code == 1 and "run 'sre-tracker setup'" in err
    # From a clone: the script's own name.
    clone = subprocess.run([sys.executable, "sre_tracker.py", "--version"], capture_output=True,
                           text=True, cwd=Path(__file__).parents[1], check=True)
    assert clone.stdout == f"sre_tracker.py {config.__version__}\n"


def test_quiet_still_shows_errors(ready, run):
    code, out, err = run(ready, "-q", "status", "--flow", "nope")
    assert (code, out) == (1, "") and err.startswith("sre_tracker: error: unknown flow 'nope'")


def test_generate_reports_is_report(ready, run):
    code, out, _err = run(ready, "generate-reports")
    assert code == 0 and "rally_import.csv:" in out
    assert (ready / "confluence_page.txt").exists()


def test_a_bad_rally_setting_blocks_only_the_commands_that_talk_to_rally(ready, run,
                                                                         monkeypatch):
    monkeypatch.setenv("RALLY_PROJECT_ID", "proj-12")
    monkeypatch.setenv("CONFLUENCE_PAGE_ID", "page")
    assert run(ready, "status")[0] == 0
    assert run(ready, "report")[0] == 0
    assert run(ready, "assess", "--asset", "web", "--capability", "Alerts", "--level", "1")[0] \
        == 0
    code, _out, err = run(ready, "report", "--push")
    assert code == 1 and "RALLY_PROJECT_ID must be a numeric id, not 'proj-12'" in err
    code, out, _err = run(ready, "check")
    assert code == 1
    assert "FAIL  rally: RALLY_PROJECT_ID must be a numeric id, not 'proj-12'" in out
    assert "FAIL  confluence: CONFLUENCE_PAGE_ID must be a numeric id, not 'page'" in out


# ---------------------------------------------------------------- wording
def test_counts_are_in_the_singular_for_one(tmp_path, run):
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "flows.csv").write_text("Flow,Asset Name\nLogin,auth\n")
    (folder / "maturity_model.csv").write_text(
        "Category,Capability,Level,Criteria,Question\nM,D,1,c,q?\n")
    (folder / "assessments.csv").write_text("Asset Name,Capability,Level\nauth,D,0\n")
    code, out, _err = run(folder, "setup", "--from-csv")
    assert code == 0 and "imported 1 assessment from assessments.csv" in out
    assert commits(folder)[0] == ("setup: added asset auth, Login/auth, capability D; "
                                  "1 assessment imported; items: 1 opened")
    assert "1 asset x 1 capability: 1 assessed" in run(folder, "report")[1]


def test_setup_commit_says_reopened_as_the_output_does(ready, run):
    run(ready, "assess", "--asset", "auth", "--capability", "Alerts", "--level", "1")
    flows = (ready / "flows.csv").read_text()
    (ready / "flows.csv").write_text(flows.replace("Login,auth,Identity,3", "Login,auth,Identity,1"))
    code, out, _err = run(ready, "setup", "--from-csv")
    assert code == 0 and "items: 2 archived" in out
    (ready / "flows.csv").write_text(flows)
    code, out, _err = run(ready, "setup", "--from-csv")
    assert code == 0 and "items: 2 reopened" in out
    assert commits(ready)[0] == "setup: updated Login/auth; items: 2 reopened"


def test_status_asset_shows_whole_category_names(folder, run):
    long = "Change Management & Release Safety"
    (folder / "maturity_model.csv").write_text(
        f"Category,Capability,Level,Criteria,Question\n{long},Rollback,1,c,q?\n")
    run(folder, "setup", "--from-csv")
    code, out, _err = run(folder, "status", "--asset", "web")
    assert code == 0 and out.startswith(f"{long}  Rollback  not assessed")


def test_the_command_list_says_what_assess_and_check_cover_now(capsys):
    """The top-level --help is where a newcomer learns the commands: assess --auto and the
    evidence sources that check reaches are named there."""
    assert sre_tracker.main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--auto: the checks of checks.csv answer what they can" in out
    assert "Confluence and the evidence sources" in out

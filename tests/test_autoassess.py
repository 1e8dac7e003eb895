"""``assess --auto`` and ``assess --override`` / ``--clear-override`` through the CLI against
the fake sources (SPEC §12): verdicts recorded with their evidence, levels moved by the rules
with history by ``sre-tracker (checks)``, one commit a run, the pinned JSON and junit, exit
0/3/1, trust of command checks, overrides listed by ``gate``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import evidence_world
import pytest

from conftest import git
from database import Database

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ["payment-api", "web", "auth"]
# The conftest model: Dashboards, Alerts and On-call, one question per level.
CHECKS = evidence_world.CHECKS_HEADER + """\
some-alerts,Alerts,1,,prometheus_rule,{service={prometheus_service}},,7,,gate
pages,Alerts,2,,splunk_alert,{splunk_alert},,7,,gate
reachable,On-call,1,,pagerduty_oncall,{pagerduty_service},,7,,gate
runbook,Dashboards,1,,http,{runbook_url},,7,,gate
"""


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch):
    """The four fakes, populated (web's alert disabled and nobody on call for it), with the
    tool's settings pointing at them."""
    with evidence_world.serving(monkeypatch.setenv, ASSETS,
                                {"payment-api", "auth"}) as src:
        yield src


def write_checks(folder: Path, src, checks: str = CHECKS, assets: str | None = None) -> None:
    (folder / "checks.csv").write_text(checks, encoding="utf-8")
    (folder / "assets.csv").write_text(assets or evidence_world.assets_csv(src, ASSETS),
                                       encoding="utf-8")


@pytest.fixture
def data(ready: Path, world, run) -> Path:
    """A set-up data folder whose checks look at the fakes."""
    write_checks(ready, world)
    code, _out, err = run(ready, "setup", "--from-csv")
    assert code == 0, err
    return ready


def commits(folder: Path) -> int:
    return int(git(folder, "rev-list", "--count", "HEAD"))


def cell(folder: Path, asset: str, capability: str):
    with Database(folder / "sre_data.db") as db:
        return db.load_cells().get((asset, capability))


def auto_json(run, folder: Path, *args: str) -> tuple[int, dict, str]:
    code, out, err = run(folder, "assess", "--auto", "--format", "json", *args)
    assert out, err
    return code, json.loads(out), err


# ---------------------------------------------------------------------------- the run
def test_auto_records_verdicts_moves_levels_and_commits_once(data, run):
    before = commits(data)
    code, out, err = run(data, "assess", "--auto")
    assert code == 0, err
    assert commits(data) == before + 1
    assert git(data, "status", "--porcelain").strip() == ""
    # payment-api: alert rule ok and an alerting saved search -> Alerts L2; web's alert is
    # disabled -> L1 (the L2 question answered no by the check).
    assert cell(data, "payment-api", "Alerts").level == 2
    web = cell(data, "web", "Alerts")
    assert (web.level, web.assessed_by) == (1, "sre-tracker (checks)")
    assert web.failed_question.startswith("Do alerts page the on-call engineer? — check pages "
                                          "says no: saved search 'web 5xx'")
    assert cell(data, "web", "On-call").level == 0
    message = git(data, "log", "-1", "--format=%B")
    assert message.startswith("assess --auto: ")
    assert "web / Alerts none→1" in message and "web / On-call none→0" in message
    assert "fail" in out and "pages" in out
    history = run(data, "history", "--asset", "web", "--capability", "Alerts")[1]
    assert "by sre-tracker (checks)\n" in history and "(checks) (checks)" not in history
    assert "checks: some-alerts pass (" in history
    assert "; pages fail (saved search 'web 5xx'" in history


def test_second_run_moves_nothing(data, run):
    assert run(data, "assess", "--auto")[0] == 0
    before = commits(data)
    code, result, _err = auto_json(run, data)
    assert code == 0
    assert result["levels"] == []
    # At most one commit (none when the evidence is byte for byte what was stored, which a
    # run within the same second gives), saying nothing moved.
    assert commits(data) - before in (0, 1)
    if commits(data) > before:
        assert "no level moved" in git(data, "log", "-1", "--format=%s")


def test_json_is_the_pinned_shape(data, run):
    code, result, _err = auto_json(run, data)
    assert code == 0
    assert set(result) == {"results", "levels", "summary"}
    assert len(result["results"]) == len(ASSETS) * 4
    first = result["results"][0]
    assert set(first) == {"asset", "check", "capability", "level", "kind", "verdict", "detail",
                          "link", "checked_at", "valid_until"}
    by = {(r["asset"], r["check"]): r for r in result["results"]}
    runbook = by[("web", "runbook")]
    assert runbook["verdict"] == "pass" and runbook["link"].endswith("/runbooks/web")
    assert runbook["valid_until"] > runbook["checked_at"]
    assert by[("web", "pages")]["verdict"] == "fail"
    assert {"asset": "web", "capability": "Alerts", "old": None, "new": 1} in result["levels"]
    assert result["summary"]["pass"] + result["summary"]["fail"] == 12
    assert set(result["summary"]) == {"pass", "fail", "error", "unconfigured", "untrusted",
                                      "not_applicable"}


def test_junit_has_one_case_per_asset_and_check(data, run, world):
    world.pagerduty.fail_next(500, times=10)
    code, out, _err = run(data, "assess", "--auto", "--format", "junit")
    assert code == 3
    root = ET.fromstring(out)
    cases = root.findall(".//testcase")
    assert len(cases) == 12
    by = {(c.get("classname"), c.get("name")): c for c in cases}
    assert by[("web", "pages")].find("failure") is not None
    assert by[("auth", "reachable")].find("error") is not None
    assert by[("auth", "some-alerts")].find("failure") is None
    assert root.get("errors") == "3" and root.get("failures") == "1"


def test_dry_run_writes_nothing(data, run):
    before = commits(data)
    stamp = (data / "sre_data.db").read_bytes()
    code, result, _err = auto_json(run, data, "--dry-run")
    assert code == 0
    assert {"asset": "web", "capability": "Alerts", "old": None, "new": 1} in result["levels"]
    assert (data / "sre_data.db").read_bytes() == stamp
    assert commits(data) == before


def test_quiet_dry_run_still_shows_the_verdicts_it_was_asked_for(data, run):
    code, out, _err = run(data, "-q", "assess", "--auto", "--dry-run", "--asset", "web")
    assert code == 0
    assert "levels would move:" in out and "web / Alerts  none → 1" in out
    assert out.startswith("pass ")
    assert "results:" not in out  # the summary line is what -q silences


def test_filters_pick_assets_and_checks(data, run):
    code, result, _err = auto_json(run, data, "--flow", "login", "--check", "PAGES")
    assert code == 0
    assert {(r["asset"], r["check"]) for r in result["results"]} == {("web", "pages"),
                                                                     ("auth", "pages")}
    code, result, _err = auto_json(run, data, "--asset", "payment-api", "--capability",
                                   "on-call")
    assert [(r["asset"], r["check"]) for r in result["results"]] == [("payment-api",
                                                                      "reachable")]


@pytest.mark.parametrize("args, message", [
    (("--asset", "paymnet-api"), "unknown asset 'paymnet-api'; did you mean payment-api?"),
    (("--check", "pagse"), "unknown check 'pagse'; did you mean pages?"),
    (("--capability", "Dashboards", "--check", "pages"), "no check so named"),
    (("--answer", "yes"), "--answer goes with --override CHECK"),
])
def test_configuration_errors_exit_1(data, run, args, message):
    before = commits(data)
    code, out, err = run(data, "assess", "--auto", *args)
    assert code == 1
    assert message in err and "Traceback" not in err
    assert commits(data) == before


def test_no_checks_is_a_configuration_error(ready, run):
    code, _out, err = run(ready, "assess", "--auto")
    assert code == 1
    assert "no checks to run" in err and "setup --from-csv" in err


def test_a_source_that_cannot_tell_exits_3_and_lists_it(data, run, world):
    world.prometheus.fail_next(503, times=10)
    code, out, err = run(data, "assess", "--auto")
    assert code == 3
    assert "3 check(s) could not tell" in err
    assert "web / some-alerts: Prometheus" in err
    # The rest was still recorded and committed.
    assert cell(data, "web", "On-call").level == 0


def test_the_same_could_not_tell_again_makes_no_commit(ready, run):
    """Checks whose sources are not set up (unconfigured) or fail the same way each night are
    no news: the second run records nothing and makes no commit; a new reason is recorded."""
    (ready / "checks.csv").write_text(evidence_world.CHECKS_HEADER + (
        "some-alerts,Alerts,1,,prometheus_rule,{service={asset}},,7,,gate\n"
        "reachable,On-call,1,,pagerduty_oncall,{asset},,7,,gate\n"), encoding="utf-8")
    assert run(ready, "setup", "--from-csv")[0] == 0
    assert run(ready, "assess", "--auto")[0] == 0
    before = commits(ready)
    time.sleep(1.1)  # the next run's time stamps differ from the first's
    code, out, _err = run(ready, "assess", "--auto")
    assert code == 0 and "unconfigured" in out
    assert commits(ready) == before
    assert git(ready, "status", "--porcelain").strip() == ""


def test_explain_shows_the_request_with_secrets_masked(data, run, world):
    code, out, _err = run(data, "assess", "--auto", "--explain", "--asset", "web")
    assert code == 0
    assert f"request:  GET {world.splunk.url}/servicesNS/-/-/saved/searches" in out
    assert "request:  GET " + world.web.url + "/runbooks/web (no credentials)" in out
    assert "seen:" in out
    for secret in (world.splunk.token, world.pagerduty.token):
        assert secret not in out


def test_tokens_go_only_to_their_own_host(data, run, world):
    assert run(data, "assess", "--auto")[0] == 0
    assert world.web.credentials_seen == []
    assert {r[3] for r in world.splunk.requests} == {f"Bearer {world.splunk.token}"}
    assert {r[3] for r in world.pagerduty.requests} == {f"Token token={world.pagerduty.token}"}
    assert {r[3] for r in world.prometheus.requests} == {None}


def test_an_injected_quote_or_pipe_reaches_splunk_only_quoted(ready, run, world):
    checks = evidence_world.CHECKS_HEADER + \
        "errors,Alerts,1,,splunk_search,index=app service={asset_key} | stats count,,7,,gate\n"
    assets = 'Asset Name,asset_key\npayment-api,"x"" | delete"\nweb,a|b\nauth,plain\n'
    write_checks(ready, world, checks, assets)
    assert run(ready, "setup", "--from-csv")[0] == 0
    assert run(ready, "assess", "--auto")[0] == 0
    assert sorted(world.splunk.searches) == sorted([
        'search index=app service="x\\" | delete" | stats count',
        'search index=app service="a|b" | stats count',
        'search index=app service="plain" | stats count'])


# ---------------------------------------------------------------------------- evidence rules
def test_an_expired_verdict_no_longer_answers(data, run, world):
    assert run(data, "assess", "--auto", "--asset", "web")[0] == 0
    assert cell(data, "web", "Alerts").level == 1
    with Database(data / "sre_data.db") as db, db.transaction():
        db.conn.execute("UPDATE evidence SET valid_until = '2020-01-01T00:00:00+00:00'")
    world.prometheus.fail_next(500, times=10)  # nothing new can be learnt from Prometheus
    code, result, _err = auto_json(run, data, "--asset", "web", "--dry-run")
    assert code == 3
    # The L1 question has no valid evidence now, and no person answered it: unknown is not
    # healthy, the level falls to 0.
    assert {"asset": "web", "capability": "Alerts", "old": 1, "new": 0} in result["levels"]


def test_a_changed_check_definition_voids_its_evidence(data, run, world):
    args = ("--asset", "payment-api", "--check", "reachable")
    assert run(data, "assess", "--auto", *args)[0] == 0
    assert cell(data, "payment-api", "On-call").level == 1
    # A run that cannot tell (PagerDuty down) leaves the evidence standing...
    world.pagerduty.fail_next(500, times=4)  # every retry
    code, result, _err = auto_json(run, data, *args)
    assert code == 3
    assert result["levels"] == []
    # ...but once the check's definition changes, its old evidence no longer answers:
    # nothing answers level 1, and unknown is not healthy.
    write_checks(data, world, CHECKS.replace("{pagerduty_service},,7", "{asset},,7"))
    assert run(data, "setup", "--from-csv")[0] == 0
    world.pagerduty.fail_next(500, times=4)  # every retry
    code, result, _err = auto_json(run, data, *args)
    assert code == 3
    assert result["levels"] == [{"asset": "payment-api", "capability": "On-call", "old": 1,
                                 "new": 0}]
    history = run(data, "history", "--asset", "payment-api", "--capability", "On-call")[1]
    assert "reachable no valid evidence; nothing answers level 1 now" in history
    code, result, _err = auto_json(run, data, *args)  # PagerDuty answers again
    assert code == 0
    assert result["levels"] == [{"asset": "payment-api", "capability": "On-call", "old": 0,
                                 "new": 1}]


def test_a_person_answer_stands_where_no_check_answers(data, run):
    assert run(data, "assess", "--asset", "payment-api", "--capability", "Alerts", "--level",
               "4")[0] == 0
    code, result, _err = auto_json(run, data, "--asset", "payment-api")
    assert code == 0
    # L1 and L2 pass by evidence, L3 and L4 stand on the person's answer: no move.
    assert [m for m in result["levels"] if m["capability"] == "Alerts"] == []
    assert run(data, "assess", "--asset", "web", "--capability", "Alerts", "--level", "3")[0] == 0
    code, result, _err = auto_json(run, data, "--asset", "web")
    assert {"asset": "web", "capability": "Alerts", "old": 3, "new": 1} in result["levels"]
    history = run(data, "history", "--asset", "web", "--capability", "Alerts")[1]
    assert "the evidence disagrees with the person's answer (L3)" in history


def test_a_person_answer_from_flags_meets_the_evidence_at_once(data, run):
    """After the checks ran, a level given with --level is kept as the person's answer, and
    where valid evidence says otherwise the evidence wins right away (no --auto needed)."""
    assert run(data, "assess", "--auto")[0] == 0
    before = commits(data)
    code, out, err = run(data, "assess", "--asset", "web", "--capability", "Alerts", "--level",
                         "3", "--notes", "we page by phone")
    assert code == 0, err
    assert "web / Alerts 1→1" in out and "closes" not in out  # no item closes: L2 is not met
    assert "the checks' evidence sets Alerts to L1 (the answer given: L3" in out
    assert cell(data, "web", "Alerts").level == 1
    assert commits(data) == before + 1 and git(data, "status", "--porcelain").strip() == ""
    assert "Alerts 1→1" in git(data, "log", "-1", "--format=%s")
    history = run(data, "history", "--asset", "web", "--capability", "Alerts")[1]
    newest, person = history.split("\n\n")[0], history
    assert "3 → 1" in newest and "sre-tracker (checks)" in newest
    assert "1 → 3" in person and "we page by phone" in person
    # Where the evidence agrees (or does not reach), the person's level stands as given.
    assert run(data, "assess", "--asset", "payment-api", "--capability", "Alerts", "--level",
               "4")[0] == 0
    assert cell(data, "payment-api", "Alerts").level == 4


def test_not_applicable_cells_are_left_alone(data, run):
    assert run(data, "assess", "--asset", "web", "--capability", "On-call",
               "--not-applicable", "no paging")[0] == 0
    code, result, _err = auto_json(run, data, "--asset", "web")
    by = {r["check"]: r for r in result["results"]}
    assert by["reachable"]["verdict"] == "not_applicable"
    assert cell(data, "web", "On-call").state == "Not Applicable"


# ---------------------------------------------------------------------------- commands
COMMAND_CHECKS = evidence_world.CHECKS_HEADER + \
    "drill,Dashboards,1,,command,python3 drill.py {asset},,7,,gate\n"


@pytest.fixture
def commanded(ready: Path, world, run) -> Path:
    (ready / "drill.py").write_text("import pathlib, sys\n"
                                    "pathlib.Path('ran-' + sys.argv[1]).write_text('x')\n",
                                    encoding="utf-8")
    write_checks(ready, world, COMMAND_CHECKS)
    assert run(ready, "setup", "--from-csv")[0] == 0
    return ready


def test_an_untrusted_command_is_not_run(commanded, run):
    code, result, _err = auto_json(run, commanded)
    assert code == 0
    assert {r["verdict"] for r in result["results"]} == {"untrusted"}
    assert not list(commanded.glob("ran-*"))
    assert cell(commanded, "web", "Dashboards") is None


def test_env_file_cannot_grant_trust(commanded, run):
    (commanded / ".env").write_text("SRE_TRACKER_TRUST_COMMANDS=1\n", encoding="utf-8")
    code, result, _err = auto_json(run, commanded)
    assert {r["verdict"] for r in result["results"]} == {"untrusted"}
    assert not list(commanded.glob("ran-*"))


def test_trust_commands_flag_and_environment_run_them(commanded, run, monkeypatch):
    code, result, _err = auto_json(run, commanded, "--trust-commands", "--asset", "web")
    assert code == 0
    assert [r["verdict"] for r in result["results"]] == ["pass"]
    assert (commanded / "ran-web").exists()
    monkeypatch.setenv("SRE_TRACKER_TRUST_COMMANDS", "1")
    code, result, _err = auto_json(run, commanded, "--asset", "auth")
    assert [r["verdict"] for r in result["results"]] == ["pass"]
    assert (commanded / "ran-auth").exists()


# ---------------------------------------------------------------------------- overrides
def test_override_takes_effect_at_once_and_gate_lists_it(data, run):
    assert run(data, "assess", "--auto")[0] == 0
    assert cell(data, "web", "Alerts").level == 1
    before = commits(data)
    code, out, err = run(data, "assess", "--override", "PAGES", "--asset", "WEB", "--answer",
                         "yes", "--reason", "alert moved to Opsgenie", "--until", "2099-01-31")
    assert code == 0, err
    assert "override of pages for web: yes until 2099-01-31" in out
    assert "web / Alerts  1 → 2" in out
    assert cell(data, "web", "Alerts").level == 2
    assert commits(data) == before + 1
    assert "override pages for web: yes until 2099-01-31" in git(data, "log", "-1",
                                                                  "--format=%s")
    code, out, err = run(data, "gate", "--flow", "Login")
    assert "overrides in force (a person's answer standing in for a check's evidence):" in out
    assert "web / pages: yes until 2099-01-31 (by " in out
    assert "alert moved to Opsgenie" in out
    # Still in force at the next run: the failing evidence does not undo it.
    assert run(data, "assess", "--auto")[0] == 0
    assert cell(data, "web", "Alerts").level == 2
    code, out, err = run(data, "assess", "--clear-override", "pages", "--asset", "web")
    assert code == 0, err
    assert "web / Alerts  2 → 1" in out
    assert cell(data, "web", "Alerts").level == 1
    assert "overrides in force" not in run(data, "gate", "--flow", "Login")[1]


def test_override_defaults_to_ninety_days(data, run):
    from datetime import date, timedelta
    code, out, _err = run(data, "assess", "--override", "reachable", "--asset", "auth",
                          "--answer", "no", "--reason", "rota being rebuilt")
    assert code == 0
    expected = (date.today() + timedelta(days=90)).isoformat()
    assert f"until {expected}" in out
    assert cell(data, "auth", "On-call").level == 0


@pytest.mark.parametrize("args, message", [
    (("--override", "pages", "--answer", "yes", "--reason", "r"), "needs --asset"),
    (("--override", "pages", "--asset", "web", "--reason", "r"), "needs --answer yes"),
    (("--override", "pages", "--asset", "web", "--answer", "yes"), "needs --reason"),
    (("--override", "pages", "--asset", "web", "--answer", "yes", "--reason", " "),
     "needs --reason"),
    (("--override", "pages", "--asset", "web", "--answer", "yes", "--reason", "r",
      "--until", "2001-01-01"), "--until 2001-01-01 is in the past"),
    (("--override", "pagse", "--asset", "web", "--answer", "yes", "--reason", "r"),
     "unknown check 'pagse'"),
    (("--clear-override", "pages", "--asset", "web"), "no override of pages for web to clear"),
    (("--clear-override", "pages", "--asset", "web", "--reason", "r"),
     "--reason goes with --override"),
    (("--override", "pages", "--asset", "web", "--answer", "yes", "--reason", "r",
      "--dry-run"), "--dry-run goes with --auto"),
])
def test_override_refusals(data, run, args, message):
    before = commits(data)
    code, _out, err = run(data, "assess", *args)
    assert code == 1
    assert message in err
    assert commits(data) == before


def test_override_of_a_check_that_does_not_apply(ready, run, world):
    write_checks(ready, world, CHECKS.replace("runbook,Dashboards,1,,http,{runbook_url},,7,,gate",
                                              "runbook,Dashboards,1,,http,{runbook_url},,7,"
                                              "team:Identity,gate"))
    assert run(ready, "setup", "--from-csv")[0] == 0
    code, _out, err = run(ready, "assess", "--override", "runbook", "--asset", "web",
                          "--answer", "yes", "--reason", "r")
    assert code == 1
    assert "check runbook does not apply to web" in err


# ---------------------------------------------------------------------------- CLI, lock
def test_cli_subprocess_quiet_json_still_prints(data, world):
    env = {**os.environ, **world.settings()}
    proc = subprocess.run([sys.executable, str(ROOT / "sre_tracker.py"), "--data-dir",
                           str(data), "-q", "assess", "--auto", "--format", "json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["summary"]["pass"] > 0
    proc = subprocess.run([sys.executable, str(ROOT / "sre_tracker.py"), "--data-dir",
                           str(data), "-q", "assess", "--auto"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert (proc.returncode, proc.stdout) == (0, "")


def test_checks_run_while_another_command_holds_the_lock(data, world):
    """The lock is taken only to save: the checks run while another command holds it, and
    the run saves and commits once it is free."""
    import time

    from sre_maturity.support.writelock import FolderLock

    env = {**os.environ, **world.settings()}
    before = commits(data)
    with FolderLock(data, lambda _text: None):
        proc = subprocess.Popen([sys.executable, str(ROOT / "sre_tracker.py"), "--data-dir",
                                 str(data), "assess", "--auto", "--format", "json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)
        while proc.poll() is None and not (world.web.count() >= 3 and
                                           world.pagerduty.count() >= 2):
            time.sleep(0.05)
        # Every source has answered, and the run can only wait for the lock now.
        assert proc.poll() is None
        assert world.splunk.count() == 1 and world.prometheus.count() == 1
        assert commits(data) == before
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert json.loads(out)["summary"]["pass"] > 0
    assert commits(data) == before + 1


@pytest.mark.parametrize("stage", ["before-db-commit", "before-git-commit"])
def test_ctrl_c_while_saving_finishes_the_save_and_its_commit(data, world, tmp_path, stage):
    """The save is short and held whole: a Ctrl-C in it is acted on once the commit is made."""
    import signal
    import time

    marker = tmp_path / "paused"
    env = {**os.environ, **world.settings(), "SRE_TRACKER_TEST_PAUSE": stage,
           "SRE_TRACKER_TEST_PAUSE_FILE": str(marker)}
    before = commits(data)
    proc = subprocess.Popen([sys.executable, str(ROOT / "sre_tracker.py"), "--data-dir",
                             str(data), "assess", "--auto"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    marker.unlink()
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "the change saved before the interrupt is committed (" in err
    assert commits(data) == before + 1
    assert git(data, "status", "--porcelain") == ""
    assert cell(data, "web", "Alerts").level == 1


@pytest.mark.parametrize("args, message", [
    (("--check", "pages"), "--check goes with --auto"),
    (("--format", "json"), "--format goes with --auto"),
    (("--answer", "yes"), "--answer goes with --override CHECK"),
])
def test_auto_flags_on_a_plain_assess_are_refused(data, run, args, message):
    code, _out, err = run(data, "assess", "--asset", "web", "--capability", "Alerts",
                          "--level", "2", *args)
    assert code == 1
    assert message in err
    assert cell(data, "web", "Alerts") is None

"""Interactive ``assess`` with checks (SPEC §12), through a real pseudo-terminal against the
fake sources: the cell's checks run first and show their verdicts, only the questions no valid
evidence answers are asked, a verdict may be overridden (reason and expiry asked), an untrusted
command may be trusted on the terminal, and Ctrl-C at each of these prompts writes nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import evidence_world
import pytest
from test_interactive import ALERTS, NOTES, SAVE, cell, finish, reply, snapshot, spawn

from database import Database

ASSETS = ["payment-api", "web", "auth"]
CHECKS = evidence_world.CHECKS_HEADER + """\
some-alerts,Alerts,1,,prometheus_rule,{service={prometheus_service}},,7,,gate
pages,Alerts,2,,splunk_alert,{splunk_alert},,7,,gate
actionable,Alerts,3,,command,true,,7,,gate
"""
TRUST = ("  check actionable runs the command `true`; trust this exact command on this "
         "machine? [y/N] ")
OVERRIDE = "  override a check's verdict? (its name; empty: none) "
ANSWER = "    the answer instead of its verdict (yes/no): "
REASON = "    why does its verdict not stand? (required) "
UNTIL = "    until when? (YYYY-MM-DD, empty: "


@pytest.fixture
def data(ready: Path, monkeypatch: pytest.MonkeyPatch):
    with evidence_world.serving(monkeypatch.setenv, ASSETS, {"payment-api", "auth"}) as src:
        (ready / "checks.csv").write_text(CHECKS, encoding="utf-8")
        (ready / "assets.csv").write_text(evidence_world.assets_csv(src, ASSETS),
                                          encoding="utf-8")
        import sre_tracker

        assert sre_tracker.main(["--data-dir", str(ready), "setup", "--from-csv"]) == 0
        yield ready


def trusted() -> dict:
    path = Path(os.environ["XDG_STATE_HOME"]) / "sre-tracker"
    files = list(path.glob("*")) if path.is_dir() else []
    return {f.name: f.read_text() for f in files}


def start(folder: Path, asset: str):
    return spawn(folder, "assess", "--asset", asset, "--capability", "Alerts")


def test_checks_answer_first_and_only_the_rest_is_asked(data):
    child = start(data, "web")
    child.expect_exact("check some-alerts (L1, prometheus_rule): pass")
    child.expect_exact("check pages (L2, splunk_alert): fail — saved search 'web 5xx'")
    child.expect_exact("check actionable (L3, command): untrusted")
    reply(child, TRUST, "n")
    reply(child, OVERRIDE, "")
    child.expect_exact("L1 [1/5] Do any alerts exist? yes (evidence of some-alerts)")
    child.expect_exact("L2 [2/5] Do alerts page the on-call engineer? no (evidence of pages)")
    reply(child, NOTES, "")
    child.expect_exact("web / Alerts none→1")
    reply(child, SAVE, "y")
    code, _signal, transcript = finish(child)
    assert code == 0, transcript
    assert ALERTS[0] not in transcript  # settled by the checks, not asked
    assert cell(data, "web", "Alerts")["level"] == 1
    with Database(data / "sre_data.db") as db:
        evidence = db.load_evidence(["web"])
        entry = db.history("web", "Alerts", None)[0]
    assert evidence[("web", "pages")].verdict == "fail"
    assert [a["source"] for a in entry["answers"]] == ["evidence of some-alerts",
                                                       "evidence of pages"]
    assert trusted() == {}


def test_trusting_a_command_runs_it_and_remembers_it(data):
    child = start(data, "auth")
    reply(child, TRUST, "y")
    child.expect_exact("check actionable (L3, command): pass")
    reply(child, OVERRIDE, "")
    child.expect_exact("L3 [3/5] Is every alert actionable? yes (evidence of actionable)")
    reply(child, ALERTS[3], "n")
    reply(child, NOTES, "monthly review missing")
    child.expect_exact("auth / Alerts none→3")
    reply(child, SAVE, "y")
    code, _signal, transcript = finish(child)
    assert code == 0, transcript
    assert cell(data, "auth", "Alerts")["level"] == 3
    assert "true" in json.dumps(trusted())
    # Trusted now: the next assessment runs it without asking.
    child = start(data, "auth")
    child.expect_exact("check actionable (L3, command): pass")
    reply(child, OVERRIDE, "")
    reply(child, ALERTS[3], "n")
    reply(child, NOTES, "")
    reply(child, SAVE, "n")
    code, _signal, transcript = finish(child)
    assert code == 0 and TRUST not in transcript


def test_an_override_is_asked_and_saved_with_the_assessment(data):
    child = spawn(data, "assess", "--asset", "web", "--capability", "Alerts", "--assessor",
                  "jdoe")
    reply(child, TRUST, "n")
    reply(child, OVERRIDE, "PAGES")
    reply(child, ANSWER, "maybe")
    reply(child, ANSWER, "y")
    reply(child, REASON, "")
    reply(child, REASON, "pages through the old pager")
    child.expect_exact(UNTIL)
    child.sendline("")
    child.expect_exact("override of pages: yes until ")
    reply(child, OVERRIDE, "")
    child.expect_exact("L2 [2/5] Do alerts page the on-call engineer? yes (override of pages)")
    reply(child, ALERTS[2], "y")  # the untrusted command answers nothing: the person does
    reply(child, ALERTS[3], "n")
    reply(child, NOTES, "")
    reply(child, SAVE, "y")
    code, _signal, transcript = finish(child)
    assert code == 0, transcript
    assert cell(data, "web", "Alerts")["level"] == 3
    with Database(data / "sre_data.db") as db:
        overrides = db.load_overrides()
    assert [(o.asset, o.check, o.answer, o.reason, o.by) for o in overrides] == [
        ("web", "pages", "yes", "pages through the old pager", "jdoe")]
    assert overrides[0].until > overrides[0].at[:10]


@pytest.mark.parametrize("where", ["trust", "override", "answer", "reason", "until"])
def test_ctrl_c_at_each_new_prompt_writes_nothing(data, where):
    before = snapshot(data)
    child = start(data, "web")
    steps = [(TRUST, "n"), (OVERRIDE, "pages"), (ANSWER, "no"), (REASON, "why not")]
    names = ["trust", "override", "answer", "reason", "until"]
    for name, (prompt, answer) in zip(names, steps, strict=False):
        if name == where:
            break
        reply(child, prompt, answer)
    child.expect_exact(dict(zip(names, [p for p, _a in steps] + [UNTIL], strict=True))[where])
    child.sendintr()
    child.expect_exact("interrupted; nothing was written")
    code, _signal, _transcript = finish(child)
    assert code == 130
    assert snapshot(data) == before
    assert trusted() == {}

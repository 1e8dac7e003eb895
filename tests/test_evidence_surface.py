"""Where evidence shows (SPEC §12): ``status`` marks the cells whose level rests on checks'
evidence, on a disagreement with the person's answer or on an override, and its JSON carries
the pinned ``evidence`` object; ``history`` shows the check-driven changes with their evidence;
gap texts name the failed check and what it saw. Through the CLI against the fake sources."""

from __future__ import annotations

import json
from pathlib import Path

import evidence_world
import pytest

ASSETS = ["payment-api", "web", "auth"]
# No check answers On-call: its cells' evidence is null.
CHECKS = evidence_world.CHECKS_HEADER + """\
some-alerts,Alerts,1,,prometheus_rule,{service={prometheus_service}},,7,,gate
pages,Alerts,2,,splunk_alert,{splunk_alert},,7,,gate
runbook,Dashboards,1,,http,{runbook_url},,7,,gate
"""


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch):
    """The four fakes (web's alert disabled), the tool's settings pointing at them."""
    with evidence_world.serving(monkeypatch.setenv, ASSETS,
                                {"payment-api", "auth"}) as src:
        yield src


@pytest.fixture
def data(ready: Path, world, run) -> Path:
    """A set-up data folder whose checks have run once."""
    (ready / "checks.csv").write_text(CHECKS, encoding="utf-8")
    (ready / "assets.csv").write_text(evidence_world.assets_csv(world, ASSETS),
                                      encoding="utf-8")
    code, _out, err = run(ready, "setup", "--from-csv")
    assert code == 0, err
    code, _out, err = run(ready, "assess", "--auto")
    assert code == 0, err
    return ready


def status_json(run, folder: Path, *args: str) -> dict:
    code, out, err = run(folder, "status", "--format", "json", *args)
    assert code == 0, err
    return {(e["asset"], e["capability"]): e for e in json.loads(out)["matrix"]}


# ---------------------------------------------------------------------------- status
def test_status_json_without_checks_has_null_evidence(ready, run):
    matrix = status_json(run, ready)
    assert matrix and all(e["evidence"] is None for e in matrix.values())


def test_status_json_counts_each_cells_evidence(data, run):
    matrix = status_json(run, data)
    assert matrix[("web", "Alerts")]["evidence"] == {
        "checks": 2, "pass": 1, "fail": 1, "unknown": 0, "conflict": False, "overrides": 0}
    assert matrix[("web", "Alerts")]["level"] == 1
    assert matrix[("payment-api", "Dashboards")]["evidence"] == {
        "checks": 1, "pass": 1, "fail": 0, "unknown": 0, "conflict": False, "overrides": 0}
    assert matrix[("web", "On-call")]["evidence"] is None
    # The filters keep the evidence of the entries they show.
    only = status_json(run, data, "--asset", "web")
    assert set(only) == {k for k in matrix if k[0] == "web"}
    assert only[("web", "Alerts")]["evidence"] == matrix[("web", "Alerts")]["evidence"]


def test_a_person_disagreeing_with_the_evidence_is_a_conflict(data, run):
    code, _out, err = run(data, "assess", "--asset", "auth", "--capability", "Alerts",
                          "--level", "0", "--notes", "nobody looks at them")
    assert code == 0, err
    entry = status_json(run, data)[("auth", "Alerts")]
    assert entry["evidence"]["conflict"] is True
    code, out, _err = run(data, "status")
    line = next(x for x in out.splitlines() if x.startswith("auth"))
    assert "!" in line
    assert "'!' the checks' evidence disagrees with the person's answer" in out


def test_an_override_is_marked_and_counted(data, run):
    code, _out, err = run(data, "assess", "--override", "pages", "--asset", "web", "--answer",
                          "yes", "--reason", "pages through the old pager")
    assert code == 0, err
    entry = status_json(run, data)[("web", "Alerts")]
    assert entry["evidence"]["overrides"] == 1 and entry["evidence"]["fail"] == 1
    code, out, _err = run(data, "status")
    web = next(x for x in out.splitlines() if x.startswith("web"))
    assert "~" in web
    assert "'~' a person overrides a check's verdict" in out
    code, out, _err = run(data, "status", "--asset", "web")
    assert "~ checks: 1 pass, 1 fail; 1 override" in out


def test_status_table_marks_levels_resting_on_evidence(data, run):
    code, out, err = run(data, "status")
    assert code == 0, err
    lines = {x.split()[0]: x for x in out.splitlines() if x.split()}
    assert "+" in lines["payment-api"]
    assert "'+' the level rests on checks' evidence" in out
    code, out, _err = run(data, "status", "--asset", "web")
    assert "+ checks: 1 pass, 1 fail; pages says no: " in out
    assert "saved search 'web 5xx'" in out


def test_status_without_checks_shows_no_marks(ready, run):
    code, out, _err = run(ready, "status")
    assert code == 0
    assert "rests on checks" not in out and "marks:" not in out


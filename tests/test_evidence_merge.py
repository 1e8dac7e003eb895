"""Merging the evidence's tables between clones (SPEC §11, §12): checks and asset parameters
three-way, row by row; evidence and overrides union, newest wins per asset × check. Real clones,
a bare origin and the tool's own merge driver."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from test_merge import at, pull, push

from conftest import git
from database import Database
from sre_maturity.git import merge
from sre_maturity.rules.checkspec import EvidenceRecord, Override

T1, T2, T3 = "2026-11-01T10:00:00+00:00", "2026-11-01T11:00:00+00:00", "2026-11-01T12:00:00+00:00"
HEADER = "Check,Capability,Level,Question,Kind,Target,Expect,Valid Days,Applies To,Mode\n"
ROWS = ["dash-1,Dashboards,1,,http,https://m.example.com/{asset},,,,\n",
        "dash-2,Dashboards,2,,http,https://d.example.com/{asset},,,,\n",
        "alerts-1,Alerts,1,,prometheus_rule,{service={asset}},,,,\n",
        "oncall-1,On-call,1,,pagerduty_oncall,{asset},,,,\n"]


@pytest.fixture
def clones(ready: Path, run, tmp_path: Path) -> tuple[Path, Path]:
    """Two clones of a data folder whose checks.csv holds four checks."""
    (ready / "checks.csv").write_text(HEADER + "".join(ROWS), encoding="utf-8")
    assert run(ready, "setup", "--from-csv")[0] == 0
    origin = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(ready), str(origin))
    a, b = tmp_path / "a", tmp_path / "b"
    for clone in (a, b):
        git(tmp_path, "clone", "-q", str(origin), str(clone))
        assert run(clone, "gate", "--flow", "Login")[0] == 4  # any command registers the drivers
    return a, b


def edit_checks(run, monkeypatch, folder: Path, when: str, rows: list[str]) -> None:
    at(monkeypatch, when)
    (folder / "checks.csv").write_text(HEADER + "".join(rows), encoding="utf-8")
    code, _out, err = run(folder, "setup", "--from-csv")
    assert code == 0, err


def checks_of(folder: Path) -> dict[str, str]:
    with Database(folder / "sre_data.db") as db:
        return {c.name: c.target for c in db.load_checks()}


def write(folder: Path, evidence=(), overrides=(), cleared=()) -> None:
    """Record evidence and overrides as assess --auto / --override will, and commit."""
    with Database(folder / "sre_data.db") as db, db.transaction():
        db.record_evidence(evidence)
        for o in overrides:
            db.set_override(o)
        for asset, check, when in cleared:
            db.clear_override(asset, check, when)
    git(folder, "commit", "-q", "-am", "evidence")


def stored(folder: Path) -> tuple[dict, list]:
    with Database(folder / "sre_data.db") as db:
        return db.load_evidence(), db.load_overrides(cleared=True)


def test_checks_both_sides_added_survive_a_pull_either_way(clones, run, monkeypatch):
    a, b = clones
    edit_checks(run, monkeypatch, a, T1, ["a-first,Alerts,2,,file,runbooks/{asset}.md,,,,\n",
                                          *ROWS])
    push(a)
    edit_checks(run, monkeypatch, b, T2, [*ROWS, "b-last,On-call,2,,file,rota.md,,,,\n"])
    proc = pull(b)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "definition rows from theirs" in proc.stderr
    assert git(b, "status", "--porcelain").strip() == ""
    assert set(checks_of(b)) == {"a-first", "b-last", "dash-1", "dash-2", "alerts-1",
                                 "oncall-1"}
    # The merged checks.csv and the merged database agree: a setup now changes nothing.
    code, out, _err = run(b, "setup", "--from-csv")
    assert (code, out.strip()) == (0, "setup: nothing changed")
    push(b)
    assert pull(a).returncode == 0
    assert checks_of(a) == checks_of(b)


def test_a_check_both_sides_changed_takes_the_side_imported_last(clones, run, monkeypatch):
    a, b = clones
    edit_checks(run, monkeypatch, b, T1, [ROWS[0].replace("m.example", "b.example"),
                                          *ROWS[1:]])
    edit_checks(run, monkeypatch, a, T2, [ROWS[0].replace("m.example", "a.example"),
                                          *ROWS[1:]])
    push(a)
    # checks.csv merges as a union (like flows.csv): both versions of the row stay in the file,
    # and every command then names the duplicate for a person to settle.
    assert pull(b).returncode == 0
    assert (b / "checks.csv").read_text(encoding="utf-8").count("dash-1,") == 2
    code, _out, err = run(b, "setup", "--from-csv")
    assert code == 1 and "checks.csv" in err and "dash-1" in err
    # The database merged all the same, newest import first.
    assert checks_of(b)["dash-1"] == "https://a.example.com/{asset}"


def test_checks_both_sides_appended_at_the_end_merge_as_a_union(clones, run, monkeypatch):
    a, b = clones
    attributes = (a / ".gitattributes").read_text(encoding="utf-8").splitlines()
    assert {"checks.csv merge=union", "assets.csv merge=union"} <= set(attributes)
    edit_checks(run, monkeypatch, a, T1, [*ROWS, "a-end,Alerts,2,,file,runbooks/{asset}.md,,,,\n"])
    push(a)
    edit_checks(run, monkeypatch, b, T2, [*ROWS, "b-end,On-call,2,,file,rota.md,,,,\n"])
    proc = pull(b)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = (b / "checks.csv").read_text(encoding="utf-8")
    assert "a-end," in text and "b-end," in text
    assert {"a-end", "b-end"} <= set(checks_of(b))
    code, out, _err = run(b, "setup", "--from-csv")
    assert (code, out.strip()) == (0, "setup: nothing changed")


def test_evidence_and_overrides_union_newest_wins_per_asset_and_check(clones):
    a, b = clones
    write(a, [EvidenceRecord("web", "dash-1", "pass", "200", "https://m", T1, "2026-11-08",
                             "f1"),
              EvidenceRecord("auth", "dash-1", "fail", "404", "", T3, "2026-11-08", "f1"),
              EvidenceRecord("web", "alerts-1", "error", "timeout", None, T3, "", "")],
          [Override("web", "oncall-1", "yes", "rota in the wiki", "a", T1, "2027-01-01")])
    push(a)
    write(b, [EvidenceRecord("web", "dash-1", "fail", "500", "", T2, "2026-11-08", "f1"),
              EvidenceRecord("auth", "dash-1", "pass", "200", "", T1, "2026-11-08", "f1"),
              EvidenceRecord("web", "alerts-1", "pass", "rule ok", "", T2, "2026-11-08", "f2"),
              EvidenceRecord("auth", "oncall-1", "pass", "jane", "", T1, "2026-11-02", "f3")],
          [Override("auth", "alerts-1", "no", "muted", "b", T2)])
    proc = pull(b)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "evidence from theirs" in proc.stderr and "1 overrides from theirs" in proc.stderr
    evidence, overrides = stored(b)
    assert evidence == {
        ("web", "dash-1"): EvidenceRecord("web", "dash-1", "fail", "500", "", T2, "2026-11-08",
                                          "f1"),
        ("auth", "dash-1"): EvidenceRecord("auth", "dash-1", "fail", "404", "", T3,
                                           "2026-11-08", "f1"),
        # b's pass stands; a's later error is kept beside it as the latest run.
        ("web", "alerts-1"): EvidenceRecord("web", "alerts-1", "pass", "rule ok", "", T2,
                                            "2026-11-08", "f2", "error", "timeout", T3),
        ("auth", "oncall-1"): EvidenceRecord("auth", "oncall-1", "pass", "jane", "", T1,
                                             "2026-11-02", "f3"),
    }
    assert [(o.asset, o.check) for o in overrides] == [("auth", "alerts-1"),
                                                       ("web", "oncall-1")]
    push(b)
    assert pull(a).returncode == 0
    assert stored(a) == stored(b)


def test_a_cleared_override_beats_an_older_one_and_a_newer_one_beats_the_clear(clones):
    a, b = clones
    first = Override("web", "dash-1", "yes", "fixed", "a", T1)
    write(a, overrides=[first])
    push(a)
    assert pull(b).returncode == 0
    write(b, cleared=[("web", "dash-1", T2)])          # b lifts it...
    write(a, overrides=[first._replace(reason="fixed again", at=T3)])  # ...a sets it again later
    push(a)
    assert pull(b).returncode == 0
    (override,) = stored(b)[1]
    assert (override.reason, override.cleared_at) == ("fixed again", "")
    write(b, cleared=[("web", "dash-1", "2026-11-02T09:00:00+00:00")])
    push(b)
    assert pull(a).returncode == 0
    assert stored(a)[1][0].cleared_at == "2026-11-02T09:00:00+00:00"


def test_a_tie_is_decided_the_same_way_on_both_sides():
    ours = {"asset": "web", "check_name": "c", "answer": "yes", "reason": "r1", "set_by": "a",
            "set_at": T1, "until": "", "cleared_at": ""}
    theirs = {**ours, "answer": "no", "set_by": "b"}
    assert merge._newest(ours, theirs, lambda r: r["set_at"]) == \
        merge._newest(theirs, ours, lambda r: r["set_at"])


def test_the_dump_shows_the_new_tables_in_words(clones):
    a, _b = clones
    write(a, [EvidenceRecord("web", "dash-1", "pass", "200 OK", "https://m", T1, "2026-11-08",
                             "f1")],
          [Override("web", "oncall-1", "yes", "rota in the wiki", "amy", T1, "2027-01-01")])
    text = merge.dump(a / "sre_data.db")
    assert "checks: alerts-1 | Alerts L1.1 | prometheus_rule | {service={asset}} | " \
           "valid 7 days | gate | fingerprint " in text
    assert "evidence: web | dash-1 | pass | at " + T1 + " | until 2026-11-08 | saw 200 OK | " \
           "link https://m | fingerprint f1" in text
    assert "overrides: web | oncall-1 | answer yes | reason rota in the wiki | by amy " + T1 + \
           " | until 2027-01-01" in text


def test_checks_and_evidence_both_sides_added_survive_a_pull_with_rebase(clones, run,
                                                                         monkeypatch):
    a, b = clones
    edit_checks(run, monkeypatch, a, T1, ["a-first,Alerts,2,,file,runbooks/{asset}.md,,,,\n",
                                          *ROWS])
    write(a, [EvidenceRecord("web", "a-first", "pass", "found", "", T1, "2026-11-08", "f")])
    push(a)
    edit_checks(run, monkeypatch, b, T2, [*ROWS, "b-last,On-call,2,,file,rota.md,,,,\n"])
    write(b, [EvidenceRecord("web", "b-last", "fail", "missing", "", T2, "2026-11-08", "f")])
    proc = subprocess.run(["git", "pull", "-q", "--rebase"], cwd=b, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert git(b, "status", "--porcelain").strip() == ""
    assert {"a-first", "b-last"} <= set(checks_of(b))
    assert set(stored(b)[0]) == {("web", "a-first"), ("web", "b-last")}

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



# ---------------------------------------------------------------------------- history, gaps
def test_history_shows_check_driven_changes_with_their_evidence(data, run):
    code, out, err = run(data, "history", "--asset", "web", "--capability", "Alerts")
    assert code == 0, err
    assert "none → 1  by sre-tracker (checks)\n" in out
    assert "L1 yes (evidence): Do any alerts exist?" in out
    assert "L2 no (evidence: pages): Do alerts page the on-call engineer?" in out
    assert "answered no: Do alerts page the on-call engineer? — check pages says no: saved " \
           "search 'web 5xx'" in out
    notes = next(x for x in out.splitlines() if x.strip().startswith("notes:"))
    assert "some-alerts pass (" in notes and "pages fail (saved search 'web 5xx'" in notes


def test_gap_texts_name_the_failed_check_and_what_it_saw(data, run):
    said = "check pages says no: saved search 'web 5xx' (app search) is disabled"
    code, out, _err = run(data, "status", "--asset", "web")
    assert f"answered no: Do alerts page the on-call engineer? — {said}" in out
    code, _out, err = run(data, "report", "--include-amber")
    assert code == 0, err
    page = (data / "confluence_page.txt").read_text(encoding="utf-8")
    row = next(x for x in page.splitlines() if "Alerts → L2" in x and "web" in x)
    assert "check pages says no" in row and "web 5xx" in row
    stories = (data / "rally_import.csv").read_text(encoding="utf-8").splitlines()
    story = next(x for x in stories if x.startswith("[SRE] web - Alerts L2"))
    assert "check pages says no: saved search" in story and "web 5xx" in story


def test_an_overridden_no_names_who_overrode_it(data, run):
    code, _out, err = run(data, "assess", "--override", "runbook", "--asset", "auth",
                          "--answer", "no", "--reason", "the runbook is a stub", "--assessor",
                          "jdoe")
    assert code == 0, err
    code, out, _err = run(data, "status", "--asset", "auth")
    assert "check runbook says no: overridden no by jdoe: the runbook is a stub" in out


# ---------------------------------------------------------------------------- pages
def test_matrix_page_marks_cells_and_explains_the_marks(data, run):
    import html as html_text

    code, _out, err = run(data, "assess", "--override", "pages", "--asset", "web", "--answer",
                          "yes", "--reason", "pages through the old pager")
    assert code == 0, err
    code, _out, err = run(data, "report")
    assert code == 0, err
    page = html_text.unescape((data / "sre_matrix.html").read_text(encoding="utf-8"))
    assert "the level rests on checks' evidence" in page
    assert "a person overrides a check's verdict" in page
    web = page[page.index("<th scope=\"row\">web</th>"):]
    web = web[: web.index("</tr>")]
    assert "~<small>" in web
    assert "Alerts: ~ checks: 1 pass, 1 fail; 1 override" in web
    payment = page[page.index("<th scope=\"row\">payment-api</th>"):]
    assert "+<small>" in payment[: payment.index("</tr>")]


def test_matrix_page_without_checks_has_no_marks(ready, run):
    code, _out, err = run(ready, "report")
    assert code == 0, err
    page = (ready / "sre_matrix.html").read_text(encoding="utf-8")
    assert "rests on checks" not in page


def test_rulebook_marks_automated_questions_and_overrides(data, run):
    code, _out, err = run(data, "assess", "--override", "runbook", "--asset", "auth",
                          "--answer", "no", "--reason", "a stub")
    assert code == 0, err
    code, _out, err = run(data, "report")
    assert code == 0, err
    book = (data / "confluence_rulebook.txt").read_text(encoding="utf-8")
    storage = (data / "confluence_rulebook.html").read_text(encoding="utf-8")
    assert "automated: some-alerts" in storage and "automated: pages" in storage
    assert "runbook (overridden for auth)" in storage
    # The wiki file says the same, escaped for wiki markup (- : [ ] ( ) shown as typed).
    assert "&#91;automated&#58; some\\-alerts&#93;" in book
    assert "runbook \\(overridden for auth\\)" in book
    line = next(x for x in book.splitlines() if "Is someone reachable out of hours" in x)
    assert "automated" not in line


@pytest.mark.parametrize("flavour", ["datacenter", "cloud"])
def test_confluence_matrix_table_marks_cells_with_a_legend_row(data, run, flavour):
    from lxml import html as lxml_html

    from database import Database
    from sre_maturity.render import matrix_page
    from sre_maturity.rules import views

    run(data, "assess", "--asset", "auth", "--capability", "Alerts", "--level", "0")
    with Database(data / "sre_data.db") as db:
        matrix, flows = views.matrix_rows(db)
        evidence = views.shown_evidence(db)
    table = lxml_html.fromstring(matrix_page.confluence_table(matrix, flows, flavour,
                                                              evidence))
    rows = {(tr[0].text_content(), tr[1].text_content()): tr for tr in table.iter("tr")}
    # Alerting: the person said L0, the checks pass L1 and L2: the evidence wins, and the
    # disagreement is marked.
    assert rows[("Login", "auth")][5].text_content() == "2*! Amber"
    assert rows[("Checkout", "payment-api")][4].text_content().startswith("1+")
    assert (matrix_page.LEGEND_LABEL, matrix_page.MARKS_LEGEND) in rows
    plain = lxml_html.fromstring(matrix_page.confluence_table(matrix, flows, flavour))
    texts = [tr[1].text_content() for tr in plain.iter("tr")]
    assert matrix_page.MARKS_LEGEND not in texts

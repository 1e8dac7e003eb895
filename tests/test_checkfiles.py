"""checks.csv and assets.csv: loaded like the other CSVs, every problem named by file, line and
column, and the rows validated against the model and the flows (SPEC §12)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import FLOWS, MODEL
from sre_maturity.rules import checkspec
from sre_maturity.store import checkfiles, csvfiles
from sre_maturity.support.errors import InputError

CHECKS_HEADER = "Check,Capability,Level,Question,Kind,Target,Expect,Valid Days,Applies To,Mode\n"
ASSETS = "Asset Name,runbook_url,splunk_alert,pagerduty_service\n" \
         "payment-api,https://wiki.example.com/pay,pay-*,Payments\n" \
         "web,,web-5xx,\n"


@pytest.fixture
def inputs(tmp_path: Path):
    flows_path = tmp_path / "flows.csv"
    flows_path.write_text(FLOWS, encoding="utf-8")
    model_path = tmp_path / "maturity_model.csv"
    model_path.write_text(MODEL, encoding="utf-8")
    return csvfiles.read_flows(flows_path), csvfiles.read_model(model_path)


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def load_checks(tmp_path, inputs, text: str | bytes, columns=("runbook_url", "splunk_alert")):
    flows, model = inputs
    return checkfiles.read_checks(write(tmp_path, "checks.csv", text), model, flows, columns)


def test_a_full_row_loads_with_names_in_the_model_and_flows_spelling(tmp_path, inputs):
    rows = load_checks(tmp_path, inputs, CHECKS_HEADER +
                       "Runbook,dashboards,4,,HTTP,{runbook_url},status=200,3,"
                       "\"WEB, team:payments, flow:login\",Advisory\n")
    assert rows == [checkfiles.CheckRow(
        "Runbook", "Dashboards", 4, 1, "http", "{runbook_url}", "status=200", 3,
        ("web", "team:Payments", "flow:Login"), "advisory", 2)]


def test_defaults_and_excel_spellings(tmp_path, inputs):
    text = ("\ufeffcheck;capability;level;kind;target\r\n"
            "Paged;Alerts;2;splunk_alert;{splunk_alert}\r\n")
    (row,) = load_checks(tmp_path, inputs, text.encode("utf-8"))
    assert (row.question, row.expect, row.valid_days, row.applies_to, row.mode) == \
        (1, "", 7, (), "gate")


def test_question_by_number_or_by_text(tmp_path, inputs):
    flows, model = inputs
    model = [*model, csvfiles.ModelRow(99, "Alerting", "Alerts", 2, "c", "Is there a pager?",
                                       "Asset", "", False, "")]
    path = write(tmp_path, "checks.csv", CHECKS_HEADER +
                 "A,Alerts,2,2,file,docs/pager.md,,,,\n"
                 "B,Alerts,2, is THERE a pager? ,file,docs/pager.md,,,,\n"
                 "C,Alerts,2,1,file,docs/pager.md,,,,\n")
    assert [r.question for r in checkfiles.read_checks(path, model, flows)] == [2, 2, 1]
    bad = write(tmp_path, "checks.csv", CHECKS_HEADER + "A,Alerts,2,,file,x,,,,\n")
    with pytest.raises(InputError, match=r"checks.csv:2, column 'Question': Alerts L2: the "
                       r"level has 2 questions, so name one by its number 1-2 or its "
                       r"text: 1\. Do alerts page"):
        checkfiles.read_checks(bad, model, flows)


@pytest.mark.parametrize(("row", "message"), [
    (",Alerts,2,,file,x,,,,", r"checks.csv:2, column 'Check': empty"),
    ("A,,2,,file,x,,,,", r"checks.csv:2, column 'Capability': empty"),
    ("A,Alerts,,,file,x,,,,", r"checks.csv:2, column 'Level': empty"),
    ("A,Alerts,2,,,x,,,,", r"checks.csv:2, column 'Kind': empty"),
    ("A,Alerts,2,,file,,,,,", r"checks.csv:2, column 'Target': empty"),
    ("A\x1b,Alerts,2,,file,x,,,,", r"column 'Check': holds the control character U\+001B"),
    ("A,Alert,2,,file,x,,,,", r"column 'Capability': unknown capability 'Alert'; did you mean "
     r"Alerts\? \(add it to maturity_model.csv"),
    ("A,Alerts,6,,file,x,,,,", r"column 'Level': '6' is not a level of 'Alerts' \(it has "
     r"levels 1-5\)"),
    ("A,Alerts,two,,file,x,,,,", r"column 'Level': 'two' is not a level"),
    ("A,Alerts,2,3,file,x,,,,", r"column 'Question': Alerts L2: 3 is not a question number; "
     r"the level has 1 question: 1\. Do alerts page the on-call engineer\?$"),
    ("A,Alerts,2,Is it nice?,file,x,,,,", r"column 'Question': Alerts L2: 'Is it nice\?' is "
     r"not a question of this level"),
    ("A,Alerts,2,,splunk,x,,,,", r"column 'Kind': 'splunk' is not a kind of check; use one "
     r"of http, splunk_alert, splunk_search"),
    ("A,Alerts,2,,http,{runbok_url},,,,", r"column 'Target': the placeholder \{runbok_url\} "
     r"is not \{asset\} and names no column of assets.csv \(did you mean runbook_url\?\); add "
     r"the column there"),
    ("A,Alerts,2,,http,ftp://x,,,,", r"column 'Target': 'ftp://x' is not an http:// or "
     r"https:// URL"),
    ("A,Alerts,2,,command,\"./drill.sh 'x\",,,,", r"column 'Target': cannot be split into "
     r"words like a shell would \(No closing quotation\)"),
    ("A,Alerts,2,,file,../secrets,,,,", r"column 'Target': '../secrets' leaves the data "
     r"folder"),
    ("A,Alerts,2,,file,/etc/passwd,,,,", r"column 'Target': '/etc/passwd' leaves the data"),
    ("A,Alerts,2,,http,https://x,status=99,,,", r"column 'Expect': 'status=99' is not an "
     r"Expect of a http check; write status=NNN or contains=TEXT"),
    ("A,Alerts,2,,splunk_alert,x,results>=1,,,", r"column 'Expect': a splunk_alert check "
     r"takes no Expect \(it passes on an enabled, scheduled saved search with an alert "
     r"action\); leave it blank"),
    ("A,Alerts,2,,file,x,contains=(,,,", r"column 'Expect': contains='\(': not a regular "
     r"expression"),
    ("A,Alerts,2,,file,x,,0,,", r"column 'Valid Days': '0' is not a number of days 1-3660"),
    ("A,Alerts,2,,file,x,,-3,,", r"column 'Valid Days': '-3' is not a number of days"),
    ("A,Alerts,2,,file,x,,,payment-apx,", r"column 'Applies To': unknown asset 'payment-apx'; "
     r"did you mean payment-api\?"),
    ("A,Alerts,2,,file,x,,,team:Payment,", r"column 'Applies To': unknown team 'Payment'; "
     r"did you mean Payments\?"),
    ("A,Alerts,2,,file,x,,,flow:Chekout,", r"column 'Applies To': unknown flow 'Chekout'; "
     r"did you mean Checkout\?"),
    ("A,Alerts,2,,file,x,,,,blocking", r"column 'Mode': 'blocking' is not gate or advisory"),
])
def test_each_bad_cell_is_named_by_line_and_column(tmp_path, inputs, row, message):
    with pytest.raises(InputError, match=message):
        load_checks(tmp_path, inputs, CHECKS_HEADER + row + "\n")


def test_duplicate_names_in_any_case_name_the_first_line(tmp_path, inputs):
    text = CHECKS_HEADER + "Pager,Alerts,2,,file,x,,,,\n\n" + "PAGER,Alerts,1,,file,y,,,,\n"
    with pytest.raises(InputError, match=r"checks.csv:4, column 'Check': 'PAGER' is the name "
                       r"of the check at line 2 too"):
        load_checks(tmp_path, inputs, text)


def test_header_problems_are_those_of_every_csv(tmp_path, inputs):
    with pytest.raises(InputError, match=r"checks.csv:1: missing required column 'Kind'"):
        load_checks(tmp_path, inputs, "Check,Capability,Level,Target\nA,Alerts,2,x\n")
    with pytest.raises(InputError, match=r"checks.csv:2: 11 cells but the header has 10"):
        load_checks(tmp_path, inputs, CHECKS_HEADER + "A,Alerts,2,,file,x,,,,,extra\n")
    with pytest.raises(InputError, match=r"checks.csv:2, column 'Target': not UTF-8"):
        load_checks(tmp_path, inputs, CHECKS_HEADER.encode() + b"A,Alerts,2,,file,\xff,,,,\n")


def test_several_problems_report_the_first_and_the_count(tmp_path, inputs):
    text = CHECKS_HEADER + "A,Alerts,9,,file,x,,,,\nB,Alerts,2,,nope,x,,,,\n"
    with pytest.raises(InputError, match=r"checks.csv:2, column 'Level'.*\(and 1 more "
                       r"problems\)"):
        load_checks(tmp_path, inputs, text)


def test_placeholders_name_asset_or_a_column_and_other_braces_are_the_targets_own(
        tmp_path, inputs):
    rows = load_checks(tmp_path, inputs, CHECKS_HEADER +
                       'Rule,Alerts,2,,prometheus_query,"up{job={asset}, x=""{1,2}""}",,,,\n'
                       "Search,Alerts,1,,splunk_search,index=main {Splunk_Alert},,,,\n")
    assert [r.target for r in rows][1] == "index=main {Splunk_Alert}"
    with pytest.raises(InputError, match=r"placeholder \{runbook_url\} is not \{asset\} and "
                       r"names no column of assets.csv; add the column there"):
        load_checks(tmp_path, inputs, CHECKS_HEADER + "A,Alerts,2,,http,{runbook_url},,,,\n",
                    columns=())


# ---------------------------------------------------------------- assets.csv
def test_assets_file_keeps_every_column_as_a_parameter(tmp_path, inputs):
    flows, _model = inputs
    text = "\ufeffasset_name;Runbook URL;Splunk Alert\r\nPAYMENT-API;https://x;pay-*\r\n" \
           "web;;\r\n"
    rows = checkfiles.read_assets(write(tmp_path, "assets.csv", text.encode()), flows)
    assert rows == [
        checkfiles.AssetParams("payment-api", {"runbook_url": "https://x",
                                               "splunk_alert": "pay-*"}, 2),
        checkfiles.AssetParams("web", {"runbook_url": "", "splunk_alert": ""}, 3)]
    assert checkfiles.param_columns(rows) == {"runbook_url", "splunk_alert"}


@pytest.mark.parametrize(("text", "message"), [
    ("runbook_url\nx\n", r"assets.csv:1: missing required column 'Asset Name'"),
    ("Asset Name,runbook_url\n,x\n", r"assets.csv:2, column 'Asset Name': empty"),
    ("Asset Name,runbook_url\npayment-apj,x\n", r"assets.csv:2, column 'Asset Name': unknown "
     r"asset 'payment-apj'; did you mean payment-api\? \(add it to flows.csv"),
    ("Asset Name,x\nweb,1\n\nWEB,2\n", r"assets.csv:4, column 'Asset Name': 'WEB' has a row "
     r"already \(line 2\)"),
    ("Asset Name,Asset\nweb,1\n", r"assets.csv:1, column 'Asset': the name 'asset' is taken "
     r"by the \{asset\} placeholder"),
    ("Asset Name,runbook url,Runbook_URL\nweb,1,2\n", r"assets.csv:1, column 'Runbook_URL': "
     r"column appears twice"),
])
def test_bad_assets_files(tmp_path, inputs, text, message):
    flows, _model = inputs
    with pytest.raises(InputError, match=message):
        checkfiles.read_assets(write(tmp_path, "assets.csv", text), flows)


# ---------------------------------------------------------------- the Expect grammar
@pytest.mark.parametrize(("kind", "text", "expected"), [
    ("http", "", checkspec.DEFAULT),
    ("http", "status=301", checkspec.Expect("status", "=", "301")),
    ("http", "contains=All systems go", checkspec.Expect("contains", "=", "All systems go")),
    ("splunk_search", "results>=3", checkspec.Expect("results", ">=", "3")),
    ("splunk_search", "error_rate < 0.05", checkspec.Expect("error_rate", "<", "0.05")),
    ("splunk_search", "count=0", checkspec.Expect("count", "==", "0")),
    ("prometheus_query", "Value!=1e3", checkspec.Expect("value", "!=", "1e3")),
    ("file", "contains=^last drill: 2026", checkspec.Expect("contains", "=", "^last drill: 2026")),
    ("command", "exit=3", checkspec.Expect("exit", "=", "3")),
])
def test_expect_forms(kind, text, expected):
    assert checkspec.parse_expect(kind, text) == expected


@pytest.mark.parametrize(("kind", "text"), [
    ("prometheus_query", "count>1"), ("splunk_search", "results>=many"),
    ("command", "exit=256"), ("command", "code=1"), ("file", "exists"),
    ("http", "contains="), ("pagerduty_oncall", "level=1"), ("prometheus_rule", "x"),
])
def test_expect_refusals(kind, text):
    with pytest.raises(ValueError, match=r"Expect|takes no"):
        checkspec.parse_expect(kind, text)


def test_numeric_expectations_compare():
    assert checkspec.parse_expect("splunk_search", "results>=2").holds(2)
    assert not checkspec.parse_expect("splunk_search", "results>2").holds(2)
    assert checkspec.parse_expect("prometheus_query", "value<=0.5").holds(0.25)
    assert checkspec.parse_expect("prometheus_query", "value<1").holds(0)
    assert checkspec.parse_expect("splunk_search", "n!=1").holds(2)
    assert checkspec.parse_expect("splunk_search", "n=1").holds(1)


def test_the_fingerprint_follows_what_the_check_looks_at_only():
    base = checkfiles.CheckRow("A", "Alerts", 2, 1, "http", "https://x", "", 7, (), "gate", 2)
    same = checkfiles.CheckRow("A", "Alerts", 2, 1, "http", "https://x", " ", 30,
                               ("web",), "advisory", 9)
    assert base.fingerprint == same.fingerprint
    for changed in (("target", "https://y"), ("expect", "status=200"), ("level", 3),
                    ("question", 2), ("kind", "file")):
        other = checkfiles.CheckRow(**{**base.__dict__, changed[0]: changed[1]})
        assert other.fingerprint != base.fingerprint


# ---------------------------------------------------------------- round trip
_TARGET_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="{}"),
                       min_size=1, max_size=40).filter(lambda t: t.strip() == t)


@settings(max_examples=60)
@given(target=_TARGET_TEXT, delimiter=st.sampled_from([",", ";"]),
       newline=st.sampled_from(["\n", "\r\n"]))
def test_any_target_a_spreadsheet_writes_reads_back_as_written(tmp_path_factory, target,
                                                               delimiter, newline):
    """Quotes, separators, pipes and SPL/PromQL punctuation in a Target survive the CSV as
    Excel or Python writes it, with either separator and line end."""
    from conftest import FLOWS, MODEL

    folder = tmp_path_factory.mktemp("rt")
    (folder / "flows.csv").write_text(FLOWS, encoding="utf-8")
    (folder / "maturity_model.csv").write_text(MODEL, encoding="utf-8")
    flows = csvfiles.read_flows(folder / "flows.csv")
    model = csvfiles.read_model(folder / "maturity_model.csv")
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, delimiter=delimiter, lineterminator=newline)
    writer.writerow(["Check", "Capability", "Level", "Kind", "Target"])
    writer.writerow(["search", "Alerts", "2", "splunk_search", target + " {asset}"])
    path = folder / "checks.csv"
    path.write_bytes(("\ufeff" + buf.getvalue()).encode("utf-8"))
    (row,) = checkfiles.read_checks(path, model, flows)
    assert row.target == target + " {asset}"

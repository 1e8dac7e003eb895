"""CSV loading: tolerant of Excel files, precise about errors (file, line, column)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sre_maturity.store import csvfiles
from sre_maturity.support.errors import InputError

MODEL_HEADER = "Category,Capability,Level,Criteria,Question,Owner,Priority,Required for Go Live,Target Milestone\n"


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8", newline="")
    else:
        path.write_bytes(text)
    return path


def test_excel_file_with_bom_crlf_and_snake_case_headers_loads(tmp_path):
    path = write(tmp_path, "flows.csv", "\ufeff FLOW ,asset_name,team,Target_Level\r\n"
                 "Checkout,payment-api,Payments,4\r\n")
    rows = csvfiles.read_flows(path)
    assert [(r.flow, r.asset, r.team, r.target_level) for r in rows] == \
        [("Checkout", "payment-api", "Payments", 4)]


def test_semicolon_separated_file_loads(tmp_path):
    path = write(tmp_path, "flows.csv", "Flow;Asset Name\nLogin;auth\n")
    assert csvfiles.read_flows(path)[0].asset == "auth"


def test_target_level_defaults_to_three(tmp_path):
    path = write(tmp_path, "flows.csv", "Flow,Asset Name\nLogin,auth\n")
    assert csvfiles.read_flows(path)[0].target_level == 3


def test_blank_lines_are_skipped_and_lines_counted(tmp_path):
    path = write(tmp_path, "flows.csv", "Flow,Asset Name,Target Level\n\nLogin,auth,9\n")
    with pytest.raises(InputError, match=r"flows.csv:3, column 'Target Level'"):
        csvfiles.read_flows(path)


def test_multiline_quoted_cell_keeps_physical_line_numbers(tmp_path):
    path = write(tmp_path, "maturity_model.csv", MODEL_HEADER + 'Mon,Dash,1,"two\nlines",Q1?,,,,\nMon,Dash,7,c,Q2?,,,,\n')
    with pytest.raises(InputError, match=r"maturity_model.csv:4, column 'Level'"):
        csvfiles.read_model(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Flow,Team\nLogin,x\n", r"flows.csv:1: missing required column 'Asset Name'"),
        ("Flow,Asset Name\n,auth\n", r"flows.csv:2, column 'Flow': empty"),
        ("Flow,Asset Name\nLogin,\n", r"flows.csv:2, column 'Asset Name': empty"),
        ("Flow,Asset Name,Target Level\nLogin,auth,high\n", r"column 'Target Level'"),
        ("Flow,Asset Name,Target Level\nLogin,auth,0\n", r"'0' is not a level 1-5"),
        ("Flow,Asset Name\nLogin,auth\nLogin,AUTH\n", r"flows.csv:3.*listed twice"),
        ("Flow,Asset Name\nLogin,a / b\n", r"must be one line without ' / '"),
        ("Flow,Asset Name\nLogin,auth,extra\n", r"flows.csv:2: 3 cells but the header has 2"),
        ("Flow,Asset Name,Flow\nLogin,auth,x\n", r"flows.csv:1, column 'Flow': column appears"),
        ("", r"flows.csv:1: the file is empty"),
        ("\n\n", r"flows.csv:1: the file is empty \(or its first line is\)"),
        (" ; \nLogin;auth\n", r"flows.csv:1: the file is empty \(or its first line is\)"),
        ("Flow,Asset Name\n", r"flows.csv:2: no rows"),
    ],
)
def test_bad_flows_files(tmp_path, text, message):
    with pytest.raises(InputError, match=message):
        csvfiles.read_flows(write(tmp_path, "flows.csv", text))


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("Mon,Dash,6,c,q?,,,,\n", r":2, column 'Level': '6' is not a level 1-5"),
        ("Mon,Dash,one,c,q?,,,,\n", r"column 'Level': 'one'"),
        ("Mon,Dash,1,,q?,,,,\n", r":2, column 'Criteria': empty"),
        ("Mon,Dash,1,c,,,,,\n", r"column 'Question': empty"),
        ("Mon,,1,c,q?,,,,\n", r"column 'Capability': empty"),
        ("Mon,Dash,1,c,q?,Ops,,,\n", r"column 'Owner': 'Ops' is not one of Asset, SRE"),
        ("Mon,Dash,1,c,q?,,P9,,\n", r"column 'Priority': 'P9'"),
        ("Mon,Dash,1,c,q?,,,Maybe,\n", r"column 'Required for Go Live': 'Maybe'"),
        ("Mon,Dash,1,c,q?,,,,\nMon,Dash,1,c,Q?,,,,\n", r":3, column 'Question': duplicate of "
                                                       r"line 2"),
        ("Mon,Dash,1,c,q?,,,,\nAlert,Dash,2,c,r?,,,,\n", r":3, column 'Category': capability "
                                                         r"'Dash' is under 'Mon' at line 2"),
    ],
)
def test_bad_model_files(tmp_path, rows, message):
    with pytest.raises(InputError, match=message):
        csvfiles.read_model(write(tmp_path, "maturity_model.csv", MODEL_HEADER + rows))


def test_model_row_values_are_normalised(tmp_path):
    path = write(tmp_path, "maturity_model.csv",
                 MODEL_HEADER + "Mon,Dash,1,c,q?,sre,p2,yes,Go-Live\n")
    row = csvfiles.read_model(path)[0]
    assert (row.owner, row.priority, row.go_live, row.milestone) == ("SRE", "P2", True, "Go-Live")


def test_non_utf8_file_names_line_and_position(tmp_path):
    path = write(tmp_path, "flows.csv", "Flow,Asset Name\nLogin,caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"flows.csv:2, column 'Asset Name': not UTF-8 text "
                                         r"\(byte 0xe9 at character 10\)"):
        csvfiles.read_flows(path)


def test_error_counts_further_problems(tmp_path):
    path = write(tmp_path, "flows.csv", "Flow,Asset Name\n,a\n,b\n,c\n")
    with pytest.raises(InputError, match=r"and 2 more problems"):
        csvfiles.read_flows(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        csvfiles.read_flows(tmp_path / "flows.csv")


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("web,Dash,7,,,,\n", r"assessments.csv:2, column 'Level': '7'"),
        ("web,Dash,N/A,,,,\n", r"column 'Not Applicable Reason': empty"),
        ("web,Dash,2,,,yesterday,\n", r"column 'Assessed At': 'yesterday'"),
        (",Dash,2,,,,\n", r"column 'Asset Name': empty"),
        ("web,,2,,,,\n", r"column 'Capability': empty"),
        ("web,Dash,2,,,,\nWEB,dash,3,,,,\n", r":3, column 'Capability'.*appears twice"),
    ],
)
def test_bad_assessment_files(tmp_path, row, message):
    header = "Asset Name,Capability,Level,Notes,Assessed By,Assessed At,Not Applicable Reason\n"
    with pytest.raises(InputError, match=message):
        csvfiles.read_assessments(write(tmp_path, "assessments.csv", header + row))


def test_assessment_rows_parse_levels_and_na(tmp_path):
    header = "asset_name,capability,level,not_applicable_reason,assessed_at\n"
    path = write(tmp_path, "assessments.csv",
                 header + "web,Dash,0,,2026-10-01\nweb,Alerts,n/a,batch job,\n")
    rows = csvfiles.read_assessments(path)
    assert [(r.level, r.na_reason, r.assessed_at) for r in rows] == \
        [(0, "", "2026-10-01"), (None, "batch job", "")]


def test_write_flows_round_trips(tmp_path):
    path = tmp_path / "flows.csv"
    csvfiles.write_flows(path, [("Login", "auth", "Identity", 4)])
    row = csvfiles.read_flows(path)[0]
    assert (row.flow, row.asset, row.team, row.target_level) == ("Login", "auth", "Identity", 4)


@pytest.mark.parametrize("levels, line, message", [
    ([1, 2, 3, 5], 5, "capability 'Cap' has levels 1-3 and 5; levels run 1..N with no gap, so "
                      "add level 4 or renumber"),
    ([2, 3], 2, "capability 'Cap' has levels 2-3; levels run 1..N with no gap, so add level 1 "
                "or renumber"),
    ([1, 3, 5], 3, "capability 'Cap' has levels 1, 3 and 5; levels run 1..N with no gap, so "
                   "add levels 2 and 4 or renumber"),
])
def test_a_gap_in_a_capabilitys_levels_names_file_line_and_capability(tmp_path, levels, line,
                                                                       message):
    rows = "".join(f"Cat,Cap,{lv},crit {lv},question {lv}?\n" for lv in levels)
    path = tmp_path / "maturity_model.csv"
    path.write_text("Category,Capability,Level,Criteria,Question\nCat,Other,1,c,q?\n" + rows)
    with pytest.raises(InputError) as err:
        csvfiles.read_model(path)
    assert str(err.value) == f"maturity_model.csv:{line + 1}, column 'Level': {message}"


# ------------------------------------------------------------------------ csv_record
@settings(max_examples=400, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from(list('ab ,"\r\n;\'\t=\x00é')), max_size=12)
                | st.text(), min_size=1, max_size=6))
def test_csv_record_writes_what_csv_writer_writes(cells):
    buf = io.StringIO(newline="")
    csv.writer(buf, lineterminator="\r\n").writerow(cells)
    assert csvfiles.csv_record(cells) == buf.getvalue()

"""The paste files read by both Confluence converters: Data Center's server renderer (the port
in tests/wiki_renderer.py) and Cloud's editor (Atlassian's own transformer in node,
tests/cloud_wiki.py). Each file is written in the dialect of the site it is for, and shows
exactly the data there."""

from __future__ import annotations

import shutil
from pathlib import Path

import cloud_wiki
import pytest
import wiki_renderer
from hypothesis import given, settings
from hypothesis import strategies as st
from test_wiki_markup import item, seen

from sre_maturity.render import cloud_wiki as cloud
from sre_maturity.render import paste, reports, rulebook
from sre_maturity.render.reports import PAGE_COLUMNS

EXAMPLES = Path(__file__).parent.parent / "examples"
RALLY_URL = "https://rally1.rallydev.com/#/1/detail/userstory/2"


def cloud_texts(markup: str, columns: list[str]) -> list[list[str]]:
    """The body rows Cloud makes of ``markup``: a header row of ``columns``, then every row
    with as many cells, none formatted; a link only in Rally Card, a lozenge only in Status."""
    header, *body = cloud_wiki.read_table(markup)
    assert [c.text for c in header] == columns and all(c.header for c in header)
    for row in body:
        assert len(row) == len(columns) and not any(c.header for c in row), row
        for column, cell in zip(columns, row, strict=True):
            if column == "Rally Card":
                assert all(m.startswith("link:") for m in cell.marks) and not cell.nodes
            elif column == "Status":
                assert not cell.marks and all(n.startswith("status:") for n in cell.nodes)
            else:
                assert not cell.marks and not cell.nodes, (column, cell)
    return [[c.text for c in row] for row in body]


def cloud_line(row: dict) -> str:
    """A to-do row dict (with ``_link``, ``_colour``) as a Cloud table line, cell by cell."""
    return "|" + "|".join(
        cloud.card_cell(row[c], row.get("_link", "")) if c == "Rally Card" else
        cloud.status_cell(row[c], row.get("_colour")) if c == "Status" else cloud.cell(row[c])
        for c in PAGE_COLUMNS) + "|"


def server_texts(markup: str, columns: list[str]) -> list[list[str]]:
    """The same through the server renderer's port."""
    header, *body = wiki_renderer.read_table(markup)
    assert [c.text for c in header] == columns and all(c.header for c in header)
    for row in body:
        assert len(row) == len(columns) and not any(c.header or c.formats for c in row), \
            [c.raw for c in row]
    return [[c.text for c in row] for row in body]


# --- Cloud's converter reads the server dialect wrongly: why there are two ------------------

def test_cloud_misreads_the_server_dialect():
    row = reports.todo_rows([item(criteria="Not yet confirmed: a | b",
                                  work_status="In-Progress", rally_id="US1",
                                  rally_url=RALLY_URL)])
    header, body = cloud_wiki.read_table(reports.wiki_table(row))
    assert len(body) > len(header)  # the {status:...} macro's "|" splits the cell
    assert any("&#58;" in c.text for c in body)  # references are shown as typed


def test_server_renderer_knows_no_adf_macro():
    # The Cloud dialect is Cloud's only: the port of the server renderer sees a macro token.
    [[c]] = wiki_renderer.read_table("|" + cloud.cell("a|b") + "|")
    assert c.tokens


# --- the Cloud dialect, read by Cloud's own converter ---------------------------------------

@pytest.mark.parametrize("value", [
    "Monitoring & Observability", "C:\\temp\\new", "L2 means: alerts; pages", "Ops |",
    "back\\slash", "first\n- item", "first\n\\- x", "h3. heading", "bq. quote",
    "line\nh1. again", "*bold* _it_ -strike- +u+ ^s^ ~s~ ??c?? {{m}} [l] {code} :) ;) (y) (!)",
    "a -- b --- c ---- d", "!img.png! @user #1 %20", "trailing \\", "&amp; &bsol; &#38;",
    "<b>tag</b>", "http://example.com/x|y", "|", "||", "\\", "x\n\ny", ":D :-P ;p",
    "Tools:\nGrafana\nPrometheus", "Para one.\n\nPara two.", "\\\\server\\share\nnext",
    "mailto:sre@example.com", "{adf}x{adf}", "payment-api", "x\n  indented", "(flagoff) (*r)",
])
def test_cloud_cells_show_exactly(value):
    row = reports.todo_rows([item()])[0]
    row["Description"] = value
    row["Category"] = value
    markup = paste.CLOUD.table(PAGE_COLUMNS, [row])
    [texts] = cloud_texts(markup, PAGE_COLUMNS)
    assert texts[PAGE_COLUMNS.index("Description")] == reports.clean_text(value)
    assert texts[PAGE_COLUMNS.index("Category")] == reports.clean_text(value)


def test_cloud_plain_text_stays_readable():
    # Everyday values are written as text, not as {adf} nodes.
    assert cloud.cell("payment-api") == "payment\\-api"
    assert cloud.cell("Not yet confirmed: (see runbook)") == \
        "Not yet confirmed: \\(see runbook\\)"
    assert cloud.cell("Dashboards exist\nand are reviewed weekly") == \
        "Dashboards exist\\\\and are reviewed weekly"
    assert cloud.cell("") == " "
    assert cloud.cell("a|b").startswith("{adf}")


def test_cloud_card_link_and_status_lozenge():
    it = item(rally_id="US12", rally_url=RALLY_URL, work_status="In-Progress")
    line = cloud.todo_row(it)
    assert f"|[US12|{RALLY_URL}]|" in line
    header, body = cloud_wiki.read_table(reports.wiki_header() + "\n" + line)
    card, status = body[8], body[9]
    assert (card.text, card.marks) == ("US12", [f"link:{RALLY_URL}"])
    assert (status.text, status.nodes) == ("In-Progress", ["status:In-Progress:blue"])


@pytest.mark.parametrize("card,url,status,colour", [
    ("US1", "javascript:alert(1)", "Defined", "Grey"),
    ("US 1|x", "https://x.example/", "a|b=c}", "Red"),
    ("US_1_x", "https://x.example/a_b", "Done – awaiting re-assessment", "Green"),
    ("", RALLY_URL, "", "Yellow"),
])
def test_cloud_odd_cards_and_statuses_show_as_written(card, url, status, colour):
    row = {**reports.todo_rows([item()])[0], "Rally Card": card, "_link": url,
           "Status": status, "_colour": colour}
    [texts] = cloud_texts(reports.wiki_header() + "\n" + cloud_line(row), PAGE_COLUMNS)
    assert texts[8:10] == [card, status]


def test_cloud_heading_and_note():
    page = paste.CLOUD.head("Ops & SRE: *items* | more", "Generated on 2026-12-03: 1 item.")
    heading, note = cloud_wiki.read(page)
    assert (heading["type"], heading["text"], heading["marks"]) == (
        "heading", "Ops & SRE: *items* | more", [])
    assert (note["text"], note["marks"]) == ("Generated on 2026-12-03: 1 item.", ["em"])


# --- property: any text through both dialects, each read by its own converter ---------------

_TEXT = st.text(st.characters(codec="utf-8"), max_size=30)
_WIKIISH = st.text(st.sampled_from(list("ab h1.qPD -#*_+?^~|%{}[]()!@&:;/\\<>\n\r\t =")),
                   max_size=30)
_VALUES = st.fixed_dictionaries({c: st.one_of(_TEXT, _WIKIISH) for c in PAGE_COLUMNS})
_COLOURS = st.sampled_from(["Red", "Green", "Yellow", "Blue", "Grey", "purple"])
_LINKS = st.sampled_from(["", RALLY_URL, "javascript:x", "https://x.example/a_b-c"])


def _expected(column: str, value: str) -> str:
    text = reports.clean_text(value)
    return " ".join(text.split("\n")) if column == "Status" else text  # a lozenge: one line


@settings(max_examples=300)
@given(_VALUES, _LINKS, _COLOURS)
def test_any_text_in_any_to_do_cell_shows_as_written_in_both(values, link, colour):
    row = {**values, "_link": link, "_colour": colour}
    [cloud_row] = cloud_texts(reports.wiki_header() + "\n" + cloud_line(row), PAGE_COLUMNS)
    [server_row] = server_texts(reports.wiki_table([row]), PAGE_COLUMNS)
    for column, shown_cloud, shown_server in zip(PAGE_COLUMNS, cloud_row, server_row,
                                                 strict=True):
        expected = _expected(column, values[column])
        assert shown_cloud == expected, column
        assert seen(shown_server) == seen(expected), column


@settings(max_examples=150)
@given(st.lists(st.fixed_dictionaries({c: st.one_of(_TEXT, _WIKIISH)
                                       for c in rulebook.COLUMNS}), min_size=1, max_size=3))
def test_any_text_in_the_rulebook_shows_as_written_in_both(rows):
    cloud_rows = cloud_texts(rulebook.wiki_table(rows, paste.CLOUD), rulebook.COLUMNS)
    server_rows = server_texts(rulebook.wiki_table(rows, paste.DATACENTER), rulebook.COLUMNS)
    for row, shown_cloud, shown_server in zip(rows, cloud_rows, server_rows, strict=True):
        for column, c, s in zip(rulebook.COLUMNS, shown_cloud, shown_server, strict=True):
            assert c == reports.clean_text(row[column]), column
            assert seen(s) == seen(reports.clean_text(row[column])), column


@settings(max_examples=100)
@given(st.builds(item, capability=st.one_of(_TEXT, _WIKIISH).filter(str.strip),
                 criteria=_WIKIISH, asset=_TEXT.filter(str.strip), why=_WIKIISH,
                 category=_TEXT, rally_id=st.sampled_from(["", "US7", "US_7"]),
                 rally_url=_LINKS, work_status=st.sampled_from(["Defined", "Completed"]),
                 state=st.sampled_from(["open", "done"])))
def test_the_fast_cloud_row_is_the_row_of_the_item(it):
    assert cloud.todo_row(it) == cloud_line(reports.todo_row(it))


# --- which files report writes ---------------------------------------------------------------

def _example_folder(tmp_path: Path, run) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("flows.csv", "assessments.csv"):
        shutil.copy(EXAMPLES / name, folder / name)
    assert run(folder, "setup", "--from-csv")[0] == 0
    return folder


def test_without_a_site_report_writes_both_dialects_and_says_which_goes_where(tmp_path, run):
    folder = _example_folder(tmp_path, run)
    code, out, _err = run(folder, "report")
    assert code == 0
    assert ("confluence_page.txt: 41 rows for Confluence Data Center / Server; "
            "confluence_page.cloud.txt: the same for Confluence Cloud (paste via Insert → "
            "Markup → Confluence wiki)") in out
    assert ("confluence_rulebook.txt: the maturity model, 115 levels for Confluence Data "
            "Center / Server; confluence_rulebook.cloud.txt: the same for Confluence Cloud"
            ) in out
    for stem, columns in (("confluence_page", PAGE_COLUMNS),
                          ("confluence_rulebook", rulebook.COLUMNS)):
        server = server_texts((folder / f"{stem}.txt").read_text(encoding="utf-8"), columns)
        cloud_rows = cloud_texts((folder / f"{stem}.cloud.txt").read_text(encoding="utf-8"),
                                 columns)
        assert len(server) == len(cloud_rows) > 0
        for s_row, c_row in zip(server, cloud_rows, strict=True):
            assert [seen(s) for s in s_row] == [seen(c) for c in c_row]
    # Multi-line criteria show as lines in both.
    rules = cloud_texts((folder / "confluence_rulebook.cloud.txt").read_text(encoding="utf-8"),
                        rulebook.COLUMNS)
    assert any("\n" in r[rulebook.COLUMNS.index("Questions")] for r in rules)


@pytest.mark.parametrize("setting,value,site", [
    ("CONFLUENCE_API", "cloud", "cloud"), ("CONFLUENCE_API", "datacenter", "datacenter"),
    ("CONFLUENCE_BASE_URL", "https://acme.atlassian.net/wiki", "cloud"),
    ("CONFLUENCE_BASE_URL", "https://wiki.example.com", "datacenter"),
])
def test_a_known_site_gets_its_own_dialect_only(tmp_path, run, monkeypatch, setting, value,
                                                site):
    folder = _example_folder(tmp_path, run)
    assert run(folder, "report")[0] == 0
    assert (folder / "confluence_page.cloud.txt").exists()
    monkeypatch.setenv(setting, value)
    code, out, _err = run(folder, "report")
    assert code == 0
    label = paste.CLOUD.label if site == "cloud" else paste.DATACENTER.label
    assert f"confluence_page.txt: 41 rows for {label} (paste" in out
    assert not (folder / "confluence_page.cloud.txt").exists()  # no stale table to paste
    assert not (folder / "confluence_rulebook.cloud.txt").exists()
    text = (folder / "confluence_page.txt").read_text(encoding="utf-8")
    assert ("{adf}" in text) == (site == "cloud")
    assert ("&#" in text) == (site == "datacenter")
    read = cloud_texts if site == "cloud" else server_texts
    assert len(read(text, PAGE_COLUMNS)) == 41


def test_the_cloud_files_are_ignored_by_git_in_the_data_folder(gaps, run):
    from conftest import git
    assert run(gaps, "report")[0] == 0
    assert (gaps / "confluence_rulebook.cloud.txt").exists()
    assert git(gaps, "status", "--porcelain", "--untracked-files=all").strip() == ""


def test_a_split_list_on_a_cloud_site_is_written_for_cloud(gaps, run, monkeypatch):
    from sre_maturity.render import todo_parts
    monkeypatch.setattr(todo_parts, "PAGE_ROWS", 1)  # web's two On-call items: two parts
    monkeypatch.setenv("CONFLUENCE_API", "cloud")
    code, out, err = run(gaps, "report")
    assert code == 0, err
    assert "an index of 2 parts" in out and not (gaps / "confluence_page.cloud.txt").exists()
    blocks = cloud_wiki.read((gaps / "confluence_page.txt").read_text(encoding="utf-8"))
    [index] = [b for b in blocks if b["type"] == "table"]
    assert [c["text"] for c in index["rows"][1]][:4] == ["Checkout (part 1)", "1", "1", "0"]
    part = (gaps / "confluence_page.01-checkout-part-1.txt").read_text(encoding="utf-8")
    [[_header, row]] = cloud_wiki.read_tables(part)
    assert [c.text for c in row][5:7] == ["web", "On-call → L2"]
    assert "Paste into the page 'SRE Action Items – Checkout (part 1)'" in \
        cloud_wiki.read(part)[1]["text"]


# --- small: bidi controls, counts -------------------------------------------------------------

def test_bidi_controls_are_dropped_everywhere_like_other_control_characters():
    row = {c: "Ops\u202eevil\u2066x\u2069" for c in rulebook.COLUMNS}
    outputs = [rulebook.wiki_page([row], "d", d) for d in (paste.DATACENTER, paste.CLOUD)]
    outputs += [rulebook.storage_table([row]), cloud.cell(row["Category"]),
                reports.wiki_escape(row["Category"])]
    for text in outputs:
        assert not any(ch in text for ch in "\u202e\u2066\u2069"), text
    assert reports.clean_text("a\u202ab\u202cc\u200fd") == "abc\u200fd"  # marks are text


def test_the_notes_count_in_words():
    row = dict.fromkeys(rulebook.COLUMNS, "x")
    page = rulebook.wiki_page([row], "2026-12-03", paste.CLOUD)
    assert "1 capability, 1 level._" in page
    assert reports.todo_note("2026-12-03", 1).endswith(": 1 item.")


def test_a_misspelt_confluence_api_writes_both_and_says_so(gaps, run, monkeypatch):
    monkeypatch.setenv("CONFLUENCE_API", "clod")
    code, _out, err = run(gaps, "report")
    assert code == 0, err
    assert ("CONFLUENCE_API must be cloud, datacenter or auto, not 'clod'; the paste files "
            "are written for both sites meanwhile") in err
    assert (gaps / "confluence_page.cloud.txt").exists()

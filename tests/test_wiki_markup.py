"""confluence_page.txt read the way Confluence reads it: through a port of the wiki renderer's
row splitting, backslash escapes, entities and formatting (tests/wiki_renderer.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wiki_renderer import RenderError, create_row, read_table, unescape

from sre_maturity.render import reports, storage_format
from sre_maturity.render.reports import PAGE_COLUMNS


def item(**kw) -> dict:
    base = {"key": "web / Alerts / 2", "asset": "web", "capability": "Alerts", "level": 2,
            "category": "Monitoring & Observability", "criteria": "Alerts page",
            "owner": "Asset", "priority": "P1", "go_live": 1, "milestone": "Go-Live",
            "why": "", "state": "open", "work_status": "Not Started", "rally_oid": "",
            "rally_id": "", "rally_url": "", "flows": "Checkout, Login"}
    base.update(kw)
    return base


def shown(row: dict) -> list[str]:
    """The texts a reader sees in the one body row of the table for ``row``."""
    header, body = read_table(reports.wiki_table([row]))
    assert [c.text for c in header] == PAGE_COLUMNS and all(c.header for c in header)
    assert len(body) == 11 and not any(c.header for c in body), [c.raw for c in body]
    for column, cell in zip(PAGE_COLUMNS, body, strict=True):
        assert not cell.formats, (column, cell.raw, cell.formats)
        if column not in ("Rally Card", "Status"):
            assert not cell.tokens, (column, cell.raw)
    return [c.text for c in body]


def seen(text: str) -> str:
    """What a reader can tell apart in HTML: spaces collapse, a cell's ends are trimmed."""
    return "\n".join(" ".join(line.split()) for line in text.split("\n")).strip()


# --- the port reads Atlassian's rules (and would catch the old escaping) ---------------------

def test_port_row_splitting():
    assert create_row("||a||b||") == [("a", True), ("b", True)]
    assert create_row("|a|b|") == [("a", False), ("b", False)]
    # A value ending in "\|" before the delimiter merges two cells into one header cell.
    assert create_row("|Ops \\||x|") == [("Ops \\|x", True)]
    # An empty body cell reads as a header marker.
    assert create_row("|a||b|") == [("a", False), ("b", True)]


def test_port_backslash_escapes_and_line_breaks():
    assert unescape("\\&").replace("\x00", "") == "\\&"  # not escapable: shown
    assert unescape("C\\:").replace("\x00", "") == "C\\:"
    assert unescape("\\-").replace("\x00", "") == "-"
    # ForceNewLineRendererComponent: no break when a backslash follows in the same run of
    # non-space characters (the issue's "Tools:\\Grafana\\Prometheus"), so an escape right
    # after a break shows and stops the break.
    assert unescape("a\\\\\\- b").replace("\x00", "") == "a\\\\\\- b"
    assert unescape("Tools:\\\\Grafana\\\\Prometheus") == "Tools:\\\\Grafana\nPrometheus"
    assert unescape("Para one.\\\\\\\\Para two.") == "Para one.\\\\\\\\Para two."
    assert unescape("\\\\server\\share x\\\\ y") == "\\\\server\\share x\n y"
    assert unescape("a\\\\ \\\\ b") == "a\n \n b"
    assert unescape("&#38;&#x3a;&amp;").replace("\x00", "") == "&:&"
    with pytest.raises(RenderError, match="bsol"):
        unescape("&bsol;")


@pytest.mark.parametrize("markup,fmt", [
    ("*bold*", "bold"), ("_x_", "emphasis"), ("h3. x", "heading"), ("bq. x", "quote"),
    ("a :) b", "emoticon"), ("(y)", "emoticon"), ("(!)", "emoticon"), ("{{mono}}", "macro"),
    ("-strike-", "strike"), ("??cite??", "citation"), ("^sup^", "superscript"),
    ("~sub~", "subscript"), ("+u+", "underline"), ("a -- b", "dash"), ("a\\\\- b", "list"),
])
def test_port_sees_formatting(markup, fmt):
    [[cell]] = read_table(f"|{markup}|")
    assert fmt in cell.formats or cell.tokens, (markup, cell.formats)


def test_port_tokenises_links_and_macros_before_splitting():
    [[a, b]] = read_table("|[US1|https://x/#/a]|{status:colour=Red|title=Blocked}|")
    assert (a.text, b.text) == ("US1", "Blocked")


# --- the issue's cases, measured through the port -------------------------------------------

@pytest.mark.parametrize("value", [
    "Monitoring & Observability", "C:\\temp\\new", "L2 means: alerts; pages", "Ops |",
    "back\\slash", "first\n- item", "first\n\\- x", "h3. heading", "bq. quote",
    "line\nh1. again", "*bold* _it_ -strike- +u+ ^s^ ~s~ ??c?? {{m}} [l] {code} :) ;) (y) (!)",
    "a -- b --- c ---- d", "!img.png! @user #1 %20", "trailing \\", "&amp; &bsol; &#38;",
    "<b>tag</b>", "http://example.com/x|y", "|", "||", "\\", "x\n\ny",
    "Tools:\nGrafana\nPrometheus", "Para one.\n\nPara two.", "\\\\server\\share\nnext",
    "a\\\nb\\", "C:\\\n\\x",
])
def test_issue_values_show_exactly(value):
    row = reports.todo_rows([item()])[0]
    row["Description"] = value
    row["Category"] = value
    texts = shown(row)
    assert seen(texts[PAGE_COLUMNS.index("Description")]) == seen(reports.clean_text(value))
    assert seen(texts[PAGE_COLUMNS.index("Category")]) == seen(reports.clean_text(value))


def test_no_html5_entities_and_no_escape_after_line_break():
    row = reports.todo_rows([item(criteria="a\\b\n- c\n* d\n# e")])[0]
    line = reports.wiki_table([row]).splitlines()[1]
    assert "&bsol;" not in line and "\\\\\\" not in line
    assert "Monitoring &#38; Observability" in line


def test_rally_card_link_and_status_lozenge():
    row = reports.todo_rows([item(rally_id="US12", work_status="In-Progress",
                                  rally_url="https://rally1.rallydev.com/#/1/detail/userstory/2")])
    line = reports.wiki_table(row).splitlines()[1]
    assert "|[US12|https://rally1.rallydev.com/#/1/detail/userstory/2]|" in line
    assert "|{status:colour=Blue|title=In-Progress}|" in line
    texts = shown(row[0])
    assert texts[8:10] == ["US12", "In-Progress"]


@pytest.mark.parametrize("card,url,status", [
    ("US1", "javascript:alert(1)", "Defined"),
    ("US 1|x", "https://x/", "a|b=c}"),
    ("US1", "https://x/a]b", "Done – awaiting re-assessment"),
])
def test_unsafe_link_or_status_falls_back_to_plain_text(card, url, status):
    row = {**reports.todo_rows([item()])[0], "Rally Card": card, "_link": url,
           "Status": status}
    texts = shown(row)
    assert texts[8:10] == [card, status]


def test_empty_cells_are_never_empty():
    row = dict.fromkeys(PAGE_COLUMNS, "")
    assert all(seen(t) == "" for t in shown(row))


def test_page_heading_and_note():
    page = reports.wiki_page(reports.todo_rows([item()]), "Ops & SRE: *items*", "2026-12-03")
    first, _blank, note = page.splitlines()[:3]
    assert first == "h2. Ops &#38; SRE&#58; \\*items\\*"
    assert note == "_Generated by sre\\-tracker on 2026\\-12\\-03&#58; 1 item._"  # italic
    assert unescape(note[1:-1]).replace("\x00", "") == "Generated by sre-tracker on 2026-12-03: 1 item."


# --- property: any text in any cell ---------------------------------------------------------

_TEXT = st.text(st.characters(codec="utf-8"), max_size=30)
_WIKIISH = st.text(st.sampled_from(list("ab h1.q -#*_+?^~|%{}[]()!@&:;\\<>\n\r\t =")),
                   max_size=30)


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({c: st.one_of(_TEXT, _WIKIISH) for c in PAGE_COLUMNS}),
       st.sampled_from(["", "https://rally1.rallydev.com/#/detail/userstory/1", "javascript:x"]))
def test_any_text_in_any_cell_shows_as_written(values, link):
    row = {**values, "_link": link, "_colour": "Red"}
    texts = shown(row)
    for column, text in zip(PAGE_COLUMNS, texts, strict=True):
        expected = reports.clean_text(values[column])
        if column == "Status":
            expected = expected.replace("\n", " ")  # a lozenge holds one line
        assert seen(text) == seen(expected), column


@settings(max_examples=150, deadline=None)
@given(st.fixed_dictionaries({c: st.one_of(_TEXT, _WIKIISH) for c in PAGE_COLUMNS}))
def test_storage_twin_and_page_update_agree_with_the_paste(values):
    row = {**values, "_link": "https://rally1.rallydev.com/#/detail/userstory/1"}
    texts = shown(row)
    twin = storage_format.render_table([row])
    page, changed, _ = storage_format.update_table("<p>page</p>", "SRE Action Items", [row])
    assert changed and twin in page
    [stored] = storage_format.table_rows(page, "SRE Action Items")
    for column, text in zip(PAGE_COLUMNS, texts, strict=True):
        assert seen(stored[column]) == seen(text), column


# --- the example data, end to end ---------------------------------------------------------

def test_example_data_paste_shows_the_data(tmp_path, run):
    import shutil

    from database import Database
    from sre_maturity.rules import views

    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("flows.csv", "assessments.csv"):
        shutil.copy(Path(__file__).parent.parent / "examples" / name, folder / name)
    assert run(folder, "setup", "--from-csv")[0] == 0
    assert run(folder, "report")[0] == 0
    text = (folder / "confluence_page.txt").read_text(encoding="utf-8")
    with Database(folder / "sre_data.db") as db:
        rows = reports.todo_rows(views.load_view(db)[2])
    header, *body = read_table(text)
    assert len(body) == len(rows) > 0
    assert "Monitoring & Observability" in {r["Category"] for r in rows}
    for row, cells in zip(rows, body, strict=True):
        assert len(cells) == 11 and not any(c.header or c.formats for c in cells)
        for column, cell in zip(PAGE_COLUMNS, cells, strict=True):
            assert seen(cell.text) == seen(reports.clean_text(row[column])), column

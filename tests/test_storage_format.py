"""The to-do table in storage format: rendering, locating and splicing into real-looking pages."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from fake_confluence import normalise, xhtml_error
from sre_maturity.render import storage_format as sf
from sre_maturity.render import storage_page as sp
from sre_maturity.render.reports import PAGE_COLUMNS, clean_text
from sre_maturity.support.errors import ConfluenceError, PageNeedsFix

TITLE = "SRE Action Items"

# The composed Cloud page of reference/confluence.md §9 (foreign table under the heading).
REF_BEFORE = (
    '<p>Owner: <ac:link><ri:user ri:account-id="5b10ac8d82e05b22cc7d4ef5" ri:local-id="a41f0c2e-7c1d-4b8e-9d55-2f0b3c6a1e90" /></ac:link> &mdash; reviewed <time datetime="2026-01-12" /> <ac:emoticon ac:name="tick" ac:emoji-shortname=":check_mark:" ac:emoji-id="2714" ac:emoji-fallback="&#10004;" /></p>\n'
    '<ac:structured-macro ac:name="info" ac:schema-version="1" data-layout="default" ac:local-id="0c9d3f7a-1111-4a2b-8c3d-5e6f7a8b9c0d" ac:macro-id="7d2e4f60-2222-4b3c-9d4e-6f708192a3b4"><ac:rich-text-body><p>The table below is synced by a bot. Edit&nbsp;the tracker, not this page.</p></ac:rich-text-body></ac:structured-macro>\n'
    "<h2>SRE Action Items</h2>\n"
)
REF_TABLE = (
    '<table data-table-width="1000" data-layout="default" ac:local-id="3e1c2b7d-3333-4c4d-8e5f-708192a3b4c5"><colgroup><col style="width: 110.0px;" /><col style="width: 420.0px;" /><col style="width: 180.0px;" /><col style="width: 140.0px;" /><col style="width: 150.0px;" /></colgroup><tbody>\n'
    "<tr><th><p><strong>ID</strong></p></th><th><p><strong>Action</strong></p></th><th><p><strong>Owner</strong></p></th><th><p><strong>Status</strong></p></th><th><p><strong>Ticket</strong></p></th></tr>\n"
    '<tr><td><p>SRE-101</p></td><td><p>Alert on p99 latency for checkout &amp; payments (&lt;300&nbsp;ms)</p></td><td><p><ac:link><ri:user ri:account-id="5b10ac8d82e05b22cc7d4ef5" /></ac:link></p></td><td><p><ac:structured-macro ac:name="status" ac:schema-version="1" ac:macro-id="9f0a1b2c-4444-4d5e-9f60-8192a3b4c5d6"><ac:parameter ac:name="title">In progress</ac:parameter><ac:parameter ac:name="colour">Yellow</ac:parameter></ac:structured-macro></p></td><td><p><a href="https://jira.example.com/browse/OPS-4411?focusedId=1&amp;page=2">OPS-4411</a></p></td></tr>\n'
    '<tr><td><p>SRE-102</p></td><td><p>Rotate etcd certificates<br />before 2026-03-01</p></td><td><p>Platform team</p></td><td><p><ac:structured-macro ac:name="status" ac:schema-version="1" ac:macro-id="a0b1c2d3-5555-4e6f-8071-92a3b4c5d6e7"><ac:parameter ac:name="title">Blocked</ac:parameter><ac:parameter ac:name="colour">Red</ac:parameter></ac:structured-macro></p></td><td><p /></td></tr>\n'
    "</tbody></table>"
)
REF_AFTER = (
    "\n<h3>Runbook</h3>\n"
    '<ac:structured-macro ac:name="code" ac:schema-version="1" ac:macro-id="b1c2d3e4-6666-4f70-8182-a3b4c5d6e7f8"><ac:parameter ac:name="language">bash</ac:parameter><ac:parameter ac:name="title">Drain a node</ac:parameter><ac:plain-text-body><![CDATA[kubectl drain "$NODE" --ignore-daemonsets && echo "<done> & ok" <table></table>]]></ac:plain-text-body></ac:structured-macro>\n'
    '<ac:image ac:align="center" ac:layout="center" ac:alt="Error budget burn" ac:width="760"><ri:attachment ri:filename="error-budget-burn.png" ri:version-at-save="3" /></ac:image>\n'
    "<h2>On-call Rotation</h2>\n"
    '<table data-table-width="760" data-layout="default" ac:local-id="4f2d3c8e-7777-4081-9192-b3c4d5e6f708"><tbody><tr><th><p>Week</p></th><th><p>Primary</p></th></tr><tr><td><p>2026-W03</p></td><td><p><ac:link><ri:user ri:account-id="712020:0f3c5a9e-8888-4a1b-b2c3-d4e5f6a7b8c9" /></ac:link></p></td></tr></tbody></table>\n'
    '<ac:task-list><ac:task><ac:task-id>7</ac:task-id><ac:task-uuid>c2d3e4f5-9999-4a0b-8c1d-2e3f4a5b6c7d</ac:task-uuid><ac:task-status>incomplete</ac:task-status><ac:task-body><span class="placeholder-inline-tasks">Review thresholds by <time datetime="2026-02-01" /></span></ac:task-body></ac:task></ac:task-list>\n'
    '<p>See <ac:link><ri:page ri:space-key="SRE" ri:content-title="Incident Review Process" /><ac:plain-text-link-body><![CDATA[incident review process]]></ac:plain-text-link-body></ac:link>.</p>\n'
)
REF_PAGE = REF_BEFORE + REF_TABLE + REF_AFTER

# A page where the heading sits in a layout cell, with &nbsp; and other case.
LAYOUT_BEFORE = (
    '<ac:layout><ac:layout-section ac:type="two_equal"><ac:layout-cell>'
    "<p>Intro &ndash; see <a href=\"https://example.com/?a=1&amp;b=2\">dash</a> &copy; 2026</p>"
    '<ac:structured-macro ac:name="code"><ac:plain-text-body><![CDATA[if a < b && c > d: print("]]]]><![CDATA[>")]]></ac:plain-text-body></ac:structured-macro>'
    "<!-- a comment with <table> inside -->"
    "<h3><strong>sre&nbsp;ACTION   items</strong> </h3>\n<p />"
)
LAYOUT_AFTER = (
    "<p>after &hellip;</p></ac:layout-cell><ac:layout-cell>"
    '<ac:image ac:width="300"><ri:url ri:value="https://example.com/x.png?a=1&amp;b=2" /></ac:image>'
    "<table><tbody><tr><th>K</th><th>V</th></tr><tr><td>a</td><td>b</td></tr></tbody></table>"
    "</ac:layout-cell></ac:layout-section></ac:layout>"
)


def row(asset: str = "payment-api", capability: str = "Alerts", level: int = 3, **kw) -> dict:
    data = {
        "Priority": "P1", "Required for Go Live": "Yes", "Target Milestone": "Go-Live",
        "Owner": "Asset", "Flow": "Checkout", "Asset Name": asset,
        "Task": f"{capability} → L{level}", "Description": "Every alert is actionable",
        "Rally Card": "US12", "Status": "Defined", "Category": "Alerting",
        "_link": "https://rally1.rallydev.com/#/detail/userstory/12", "_colour": "Grey",
    }
    data.update(kw)
    return data


def wrap(body: str) -> etree._Element:
    assert xhtml_error(body) is None, xhtml_error(body)
    return etree.fromstring(
        ("<root " + " ".join(f'xmlns:{p}="{u}"' for p, u in sf.NAMESPACES.items()) + ">"
         + body + "</root>").encode())


def spliced(old: str, new: str, before: str, after: str) -> str:
    """The new table markup, after checking every byte outside it stayed."""
    assert new.startswith(before)
    assert new.endswith(after)
    middle = new[len(before):len(new) - len(after)]
    assert middle.startswith("<table") and middle.endswith("</table>")
    return middle


def human_table(extra_rows: str = "", comments: bool = True) -> str:
    """A table the tool wrote earlier, with a human 'Comments' column after Task."""
    cols = list(PAGE_COLUMNS)
    if comments:
        cols.insert(7, "Comments")
    header = "<tr>" + "".join(f"<th><p>{c}</p></th>" for c in cols) + "</tr>"

    def tr(r: dict, comment: str) -> str:
        cells = []
        for c in cols:
            if c == "Comments":
                cells.append(f"<td>{comment}</td>")
            elif c == "Rally Card":
                cells.append(f'<td><p><a href="{r["_link"]}">{r[c]}</a></p></td>')
            elif c == "Status":
                cells.append(f"<td><p>{sf._status_macro(r[c], r['_colour'])}</p></td>")
            else:
                cells.append(f"<td><p>{r[c]}</p></td>")
        return "<tr>" + "".join(cells) + "</tr>"

    body = (tr(row("payment-api"), '<p>waiting on <ac:link><ri:user ri:account-id="abc" /></ac:link> &amp; team <ac:emoticon ac:name="smile" /></p>')
            + tr(row("web", "Dashboards", 2), "<p />")
            + tr(row("auth", "On-call", 3), "<p>done next week</p>"))
    return f'<table class="wrapped"><colgroup>{"<col />" * len(cols)}</colgroup><tbody>{header}{body}{extra_rows}</tbody></table>'


TOOL_ROWS = [row("payment-api"), row("web", "Dashboards", 2), row("auth", "On-call", 3)]
KNOWN = {(r["Task"], r["Asset Name"]) for r in TOOL_ROWS}  # items the tool knows


# --- rendering ------------------------------------------------------------------------------

def test_render_table_header_order_escaping_link_and_status():
    out = sf.render_table([row(Description="a < b & c > d ]]> \"q\"\nline two",
                               _colour="green", Status="In-Progress")])
    root = wrap(out)
    ths = [th.findtext("p") for th in root.iter("th")]
    assert ths == PAGE_COLUMNS
    assert "a &lt; b &amp; c &gt; d ]]&gt; \"q\"<br />line two" in out
    assert '<a href="https://rally1.rallydev.com/#/detail/userstory/12">US12</a>' in out
    assert '<ac:parameter ac:name="colour">Green</ac:parameter>' in out
    assert '<ac:parameter ac:name="title">In-Progress</ac:parameter>' in out
    assert "&nbsp;" not in out


@pytest.mark.parametrize("link", ["javascript:alert(1)", "data:text/html,x", "ftp://x/y",
                                  "https://exa mple.com", "", 'https://x/"onmouseover=1'])
def test_only_http_links_become_links(link):
    out = sf.render_table([row(_link=link)])
    assert "<a " not in out and "javascript" not in out
    assert "<td><p>US12</p></td>" in out


def test_http_link_with_ampersand_is_escaped_once():
    out = sf.render_table([row(_link="http://rally/x?a=1&b=2")])
    assert 'href="http://rally/x?a=1&amp;b=2"' in out
    wrap(out)


@pytest.mark.parametrize("given,expected", [("Red", "Red"), ("blue", "Blue"), ("", "Grey"),
                                            ("purple", "Grey"), (None, "Grey")])
def test_status_colour(given, expected):
    out = sf.render_table([row(_colour=given)])
    assert f'<ac:parameter ac:name="colour">{expected}</ac:parameter>' in out


def test_empty_values_and_control_characters():
    out = sf.render_table([row(Owner="", Status="", Description="bell\x07 nul\x00 ok\r\nnext")])
    wrap(out)
    assert "<td><p /></td>" in out
    assert "bell nul ok<br />next" in out
    assert sf.render_table([]).count("<tr>") == 1


def test_xml_attr_escapes_quotes_and_whitespace():
    assert sf.xml_attr('a"b\tc\nd<') == "a&quot;b&#9;c&#10;d&lt;"
    assert sf.xml_text("a\rb") == "a&#13;b"


# --- splicing into real pages ---------------------------------------------------------------

def test_reference_page_foreign_table_untouched_ours_added_after_heading():
    # The ID/Action table under the heading is someone else's (SPEC §11): ours goes right
    # after the heading and every other byte, the foreign table included, stays.
    new, changed, summary = sf.update_table(REF_PAGE, TITLE, [row()])
    assert changed and summary == "table added with 1 row"
    assert new.startswith(REF_BEFORE[:-1] + "<table><tbody>")
    table = spliced(REF_PAGE, new, REF_BEFORE[:-1], "\n" + REF_TABLE + REF_AFTER)
    assert "payment-api" in table and "SRE-101" not in table
    assert xhtml_error(new) is None
    assert [r["Asset Name"] for r in sf.table_rows(new, TITLE)] == ["payment-api"]
    # CDATA, entities and numeric references survive untouched.
    assert 'echo "<done> & ok" <table></table>]]>' in new
    assert 'ac:emoji-fallback="&#10004;"' in new and "&mdash;" in new
    # Next run: our table is found (first table of the section with Asset Name and Task).
    assert sf.update_table(new, TITLE, [row()])[1] is False


def test_heading_in_layout_cell_with_nbsp_and_case():
    body = LAYOUT_BEFORE + human_table() + LAYOUT_AFTER
    rows = [row("payment-api", Status="In-Progress", _colour="Blue"),
            row("web", "Dashboards", 2), row("auth", "On-call", 3)]
    new, changed, summary = sf.update_table(body, TITLE, rows)
    assert changed and summary == "1 row updated"
    spliced(body, new, LAYOUT_BEFORE, LAYOUT_AFTER)
    assert 'if a < b && c > d: print("]]]]><![CDATA[>")]]>' in new


def test_heading_missing_appends_h2_and_table():
    body = REF_PAGE.replace("<h2>SRE Action Items</h2>", "<h2>Other</h2>")
    new, changed, summary = sf.update_table(body, "Ops & <Actions>", [row()])
    assert changed and summary == "table added with 1 row"
    assert new.startswith(body)
    tail = new[len(body):]
    assert tail.startswith("<h2>Ops &amp; &lt;Actions&gt;</h2><table>")
    assert tail.endswith("</table>")
    assert sf.inspect_page(new, "ops & <actions>") == sf.PageTable(True, True, 1)
    assert sf.inspect_page(body, "Ops & <Actions>") == sf.PageTable(False, False, 0)
    assert sf.table_rows(body, "Ops & <Actions>") is None


def test_heading_without_table_gets_table_right_after_it():
    before = "<p>x</p><h2>SRE Action Items</h2>"
    after = "<p>text</p><h2>Next</h2><table><tbody><tr><th>A</th></tr></tbody></table>"
    body = before + after
    assert sf.inspect_page(body, TITLE) == sf.PageTable(True, False, 0)
    new, changed, summary = sf.update_table(body, TITLE, [row(), row("web")])
    assert changed and summary == "table added with 2 rows"
    assert new.startswith(before + "<table>") and new.endswith(after)


def test_table_under_lower_heading_still_in_section():
    body = "<h2>SRE Action Items</h2><h3>Details</h3>" + human_table(comments=False)
    assert sf.inspect_page(body, TITLE) == sf.PageTable(True, True, 3)
    new, changed, _ = sf.update_table(body, TITLE, TOOL_ROWS)
    assert not changed and new is body


def test_several_matching_headings_refused():
    body = ("<h2>SRE Action Items</h2>" + human_table() + "<h3>sre action&nbsp;items</h3>"
            + human_table())
    fix = (r"the page has 2 headings 'SRE Action Items': no\. 1 \(h2\) and no\. 2 \(h3\), "
           r"counting .* rename or delete all but one")
    with pytest.raises(PageNeedsFix, match=fix):
        sf.update_table(body, TITLE, TOOL_ROWS)
    with pytest.raises(PageNeedsFix, match=fix):
        sf.inspect_page(body, TITLE)


def test_our_heading_inside_a_table_cell_is_refused_naming_the_place():
    body = ("<h1>Intro</h1>" + human_table() + "<table><tbody><tr><th>Area</th></tr><tr><td>"
            "<h2>SRE Action Items</h2></td></tr></tbody></table>")
    with pytest.raises(PageNeedsFix, match=r"the heading 'SRE Action Items' is inside a table "
                       r"on the page \(table no\. 2 of the page, row 2\).*move the heading "
                       r"out of that table"):
        sf.update_table(body, TITLE, TOOL_ROWS)
    # Once with a copy elsewhere too: the count comes first, naming where each copy is.
    with pytest.raises(PageNeedsFix, match=r"no\. 1 \(h2\) and no\. 3 \(h2 inside a table\)"):
        sf.update_table("<h2>SRE Action Items</h2>" + body, TITLE, TOOL_ROWS)


def test_empty_title_refused():
    with pytest.raises(ConfluenceError, match="CONFLUENCE_TABLE_TITLE"):
        sf.update_table("<p/>", "  ", [])


def test_unchanged_data_is_no_change():
    body = "<h2>SRE Action Items</h2>" + human_table()
    new, changed, summary = sf.update_table(body, TITLE, TOOL_ROWS)
    assert (new, changed, summary) == (body, False, "no changes")


def test_unchanged_after_server_normalisation_is_no_change():
    body = "<p>intro</p>"
    new, changed, _ = sf.update_table(body, TITLE, TOOL_ROWS)
    assert changed
    for flavour in ("cloud", "datacenter"):
        stored = normalise(new, flavour)
        assert stored != new
        again, changed, _ = sf.update_table(stored, TITLE, TOOL_ROWS)
        assert not changed and again is stored
    # Whitespace-only differences in cells do not count either.
    loose = new.replace("<p>P1</p>", "<p> P1  </p>")
    assert not sf.update_table(loose, TITLE, TOOL_ROWS)[1]


def test_human_column_keeps_cells_and_position_matched_by_asset_and_task():
    before, after = "<h1>Plan</h1><h2>SRE Action Items</h2>", "<p>end</p>"
    body = before + human_table() + after
    # Reordered, one changed, one new, one gone (verified).
    rows = [row("auth", "On-call", 3, Status="In-Progress", _colour="Blue"),
            row("new-svc", "Alerts", 1), row("payment-api")]
    new, changed, summary = sf.update_table(body, TITLE, rows, KNOWN)
    assert changed
    assert summary == "1 row added, 1 updated, 1 removed"
    table = spliced(body, new, before, after)
    got = sf.table_rows(new, TITLE)
    assert list(got[0])[:12] == [*PAGE_COLUMNS[:7], "Comments", *PAGE_COLUMNS[7:]]
    assert [(r["Asset Name"], r["Comments"]) for r in got] == [
        ("auth", "done next week"), ("new-svc", ""), ("payment-api", "waiting on  & team ")]
    assert '<td><p>waiting on <ac:link><ri:user ri:account-id="abc" /></ac:link> &amp; team <ac:emoticon ac:name="smile" /></p></td>' in table
    assert "Dashboards" not in table
    assert got[0]["Status"] == "In-Progress" and got[0]["_colour"] == "Blue"
    assert got[2]["_link"] == "https://rally1.rallydev.com/#/detail/userstory/12"
    # The colgroup still matches the column count, so it stays.
    assert table.count("<col />") == 12


def test_human_rows_kept_after_tool_rows_and_blank_rows_dropped():
    human = ("<tr>" + "<td><p>note</p></td>" * 7 + "<td><p>ask Bob</p></td>"
             + "<td><p /></td>" * 4 + "</tr>")
    blank = "<tr>" + "<td><p /></td>" * 12 + "</tr>"
    body = "<h2>SRE Action Items</h2>" + human_table(human + blank)
    new, changed, summary = sf.update_table(body, TITLE, [row("web", "Dashboards", 2)], KNOWN)
    assert changed and summary == "3 rows removed"  # 2 closed items + 1 blank row
    got = sf.table_rows(new, TITLE)
    assert [r["Asset Name"] for r in got] == ["web", "note"]
    assert got[1]["Comments"] == "ask Bob"
    assert human in new and blank not in new


def test_known_keys_asked_row_by_row_decide_as_the_whole_set_does():
    """A KnownKeys source is asked only about the page's rows (in known_key form) and the
    update is the one the whole set gives."""
    class Asked(sf.KnownKeys):
        def __init__(self) -> None:
            self.asked: list[object] = []

        def __contains__(self, key: object) -> bool:
            self.asked.append(key)
            return key in {sf.known_key(t, a) for t, a in KNOWN}

    human = ("<tr>" + "<td><p>note</p></td>" * 7 + "<td><p>ask Bob</p></td>"
             + "<td><p /></td>" * 4 + "</tr>")
    body = "<h2>SRE Action Items</h2>" + human_table(human)
    lookup = Asked()
    assert sf.update_table(body, TITLE, [row("web", "Dashboards", 2)], lookup) == \
        sf.update_table(body, TITLE, [row("web", "Dashboards", 2)], KNOWN)
    assert sorted(map(str, lookup.asked)) == sorted(map(str, [
        ("Alerts → L3", "payment-api"), ("On-call → L3", "auth"), ("note", "note")]))


def test_new_tool_column_drops_stale_colgroup_and_keeps_thead():
    cols = [c for c in PAGE_COLUMNS if c != "Category"]
    header = "<tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>"
    body = (f'<h2>SRE Action Items</h2><table class="wrapped"><colgroup><col /><col /></colgroup>'
            f"<thead>{header}</thead><tbody></tbody></table>")
    new, changed, _ = sf.update_table(body, TITLE, [row()])
    assert changed
    assert "<colgroup>" not in new
    assert "<thead><tr>" in new and "<th><p>Category</p></th>" in new
    assert sf.table_rows(new, TITLE)[0]["Category"] == "Alerting"


def test_merged_cells_refused():
    body = ('<h2>SRE Action Items</h2><table><tbody><tr><th>Task</th><th>Asset Name</th></tr>'
            '<tr><td colspan="2">x</td></tr></tbody></table>')
    with pytest.raises(ConfluenceError, match="merged cells"):
        sf.update_table(body, TITLE, [row()])


@pytest.mark.parametrize("table", [
    "<table><tbody><tr><td>x</td></tr></tbody></table>",  # no header row (a footnote table)
    "<table />",
    '<table><tbody><tr><th colspan="2">Env</th></tr><tr><td>a</td><td>b</td></tr></tbody></table>',
    "<table><tbody><tr><th>Environment</th><th>Namespace</th></tr></tbody></table>",
    "<table><tbody><tr><td>Asset Name</td><td>Task</td></tr></tbody></table>",  # not a header
])
def test_foreign_tables_are_never_refused_nor_touched(table):
    before = "<h2>SRE Action Items</h2><p>See below.</p>"
    body = before + table + "<p>end</p>"
    new, changed, _ = sf.update_table(body, TITLE, [row()])
    assert changed and new == "<h2>SRE Action Items</h2>" + new[len("<h2>SRE Action Items</h2>"):]
    table_markup = spliced(body, new, "<h2>SRE Action Items</h2>", body[len("<h2>SRE Action Items</h2>"):])
    assert "payment-api" in table_markup
    assert sf.inspect_page(new, TITLE) == sf.PageTable(True, True, 1)


@pytest.mark.parametrize("table,match", [
    ("<table><tbody><tr><th>Asset Name</th><th>Task</th></tr><p>x</p></tbody></table>",
     "unexpected <p>"),
    ("<table><tr><th>Asset Name</th><th>Task</th></tr><div>x</div></table>",
     "unexpected <div>"),
])
def test_our_table_with_unexpected_content_refused(table, match):
    with pytest.raises(ConfluenceError, match=match):
        sf.update_table("<h2>SRE Action Items</h2>" + table, TITLE, [row()])


def test_table_with_caption_and_rows_outside_tbody():
    body = ("<h2>SRE Action Items</h2><table><caption>c</caption><tr>"
            + "".join(f"<th>{c}</th>" for c in PAGE_COLUMNS) + "</tr></table>")
    new, changed, _ = sf.update_table(body, TITLE, [row()])
    assert changed and "<caption>c</caption>" in new
    assert sf.inspect_page(new, TITLE).rows == 1


@pytest.mark.parametrize("body,match", [
    ("<p>a<br>b</p>", "could not be parsed safely"),
    ("<p>&bogus;</p>", "could not be parsed safely"),
    ("<p>unclosed", "could not be parsed safely"),
    ("<p>a</p></div>", "could not be parsed safely"),
])
def test_unsafe_bodies_refused(body, match):
    with pytest.raises(ConfluenceError, match=match):
        sf.update_table(body, TITLE, [row()])


def test_scanner_refuses_what_it_cannot_follow():
    for bad in ("<!-- open", "<![CDATA[ open", "<? open", "< p>", "<p></q>", "<p>"):
        with pytest.raises(ConfluenceError, match="could not be parsed safely"):
            sp.scan(bad)
    with pytest.raises(ConfluenceError, match="not text"):
        sp.load(None)  # type: ignore[arg-type]


def test_processing_instruction_and_single_quotes_are_scanned():
    body = "<?pi x?><p class='a'>x</p><h2>SRE Action Items</h2>"
    new, changed, _ = sf.update_table(body, TITLE, [row()])
    assert changed and new.startswith(body)


def test_tool_row_data_changes_are_detected_per_column():
    body = "<h2>SRE Action Items</h2>" + human_table()
    for change in ({"_link": "https://rally1.rallydev.com/#/detail/userstory/99"},
                   {"_colour": "Red"}, {"Description": "new\ntext"}, {"Priority": "P2"}):
        rows = [row("payment-api", **change), *TOOL_ROWS[1:]]
        new, changed, summary = sf.update_table(body, TITLE, rows)
        assert changed and summary == "1 row updated", change


def test_duplicate_old_rows_collapse_keeping_a_comment():
    dup = human_table().replace("<p>done next week</p>", "<p />")
    # Add a second row for payment-api whose comment cell is empty.
    first_row = re.search(r"<tr><td><p>P1</p>.*?</tr>", dup).group(0)
    body = "<h2>SRE Action Items</h2>" + dup.replace("</tbody>",
                                                      first_row.replace("waiting", "other") + "</tbody>")
    new, changed, _ = sf.update_table(body, TITLE, TOOL_ROWS)
    got = sf.table_rows(new, TITLE)
    assert changed and [r["Asset Name"] for r in got] == ["payment-api", "web", "auth"]
    assert got[0]["Comments"].startswith("waiting on")


def test_verification_rejects_a_splice_that_moves_the_table(monkeypatch):
    body = "<h2>SRE Action Items</h2>" + human_table()
    monkeypatch.setattr(sf, "_build", lambda old, rows, known: sf._Plan("<p>x</p>", [], 0))
    with pytest.raises(ConfluenceError, match="would not show the table"):
        sf.update_table(body, TITLE, TOOL_ROWS)


def test_verify_detects_outside_change():
    with pytest.raises(ConfluenceError, match="content outside"):
        sp.verify("<p>a</p>", "", "<p>b</p><table></table>", 8, 23)
    with pytest.raises(ConfluenceError, match="table not found"):
        sp.verify("<p>a</p>", "", "<p>a</p><table></table>", 0, 5)
    with pytest.raises(ConfluenceError, match="not be well-formed"):
        sp.verify("<p>a</p>", "", "<p>a</p><table>", 8, 15)


# --- property: any text survives the round trip ---------------------------------------------

_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({c: _TEXT for c in PAGE_COLUMNS}), _TEXT, _TEXT)
def test_any_text_renders_well_formed_and_reads_back(values, link, colour):
    item = {**values, "_link": link, "_colour": colour}
    table = sf.render_table([item])
    wrap(table)  # well-formed XML with the ac prefix bound
    new, changed, _ = sf.update_table("<p>page</p>", TITLE, [item])
    assert changed and new.startswith("<p>page</p><h2>SRE Action Items</h2>")
    got = sf.table_rows(new, TITLE)[0]
    for column in PAGE_COLUMNS:
        expected = sf.xml_clean(clean_text(values[column]))  # the wiki table's text too
        if column == "Status":
            expected = expected.replace("\n", " ")
        assert got[column] == expected, column
    # Unchanged on the next run, whatever the text.
    assert not sf.update_table(new, TITLE, [item])[1]


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_a_plain_cell_reads_as_the_html_parser_reads_it(text):
    """Cells as the tool writes them, ``<td><p>text</p></td>``, are read without the parser:
    the same words as through it (an attribute on the cell sends it through the parser)."""
    value = sf.xml_text(text)  # as on a page: escaped, no character the XML refuses
    plain = [f"<td><p>{value}</p></td>", f"<th><p>{value}</p></th>", "<td><p /></td>"]
    parsed = [f'<td class="x"><p>{value}</p></td>', f'<th class="x"><p>{value}</p></th>',
              '<td class="x"><p /></td>']
    assert sp.cell_texts(plain) == sp.cell_texts(parsed)


def test_cell_text_from_paragraphs_entities_and_macro_parameters():
    cols = "".join(f"<th>{c}</th>" for c in PAGE_COLUMNS)
    values = {c: f"<td><p>{row()[c]}</p></td>" for c in PAGE_COLUMNS}
    values["Description"] = "<td><p>Every alert</p><p>is&nbsp;actionable</p></td>"
    values["Rally Card"] = f'<td><a href="{row()["_link"]}">US12</a></td>'
    values["Status"] = ('<td><p><ac:structured-macro ac:name="status"><ac:parameter '
                        'ac:name="title">In&nbsp;progress<b>!</b></ac:parameter><ac:parameter '
                        'ac:name="colour">Blue</ac:parameter></ac:structured-macro></p></td>')
    body = ("<h2>SRE Action Items</h2><table><!-- note --><tbody><tr>" + cols + "</tr><tr>"
            + "".join(values[c] for c in PAGE_COLUMNS) + "</tr></tbody></table>")
    got = sf.table_rows(body, TITLE)[0]
    assert got["Description"] == "Every alert\nis\xa0actionable"
    assert got["Status"] == "In\xa0progress!" and got["_colour"] == "Blue"
    # Two paragraphs read like a line break: not a change.
    same = row(Description="Every alert\nis actionable", Status="In progress!", _colour="Blue")
    assert not sf.update_table(body, TITLE, [same])[1]


# --- which table is ours (SPEC §11) ---------------------------------------------------------

OURS_HEADER = "<tr>" + "".join(f"<th><p>{c}</p></th>" for c in PAGE_COLUMNS) + "</tr>"


def test_first_table_with_asset_name_and_task_in_section_is_ours():
    deploy = ("<table><tbody><tr><th>Environment</th><th>Namespace</th></tr>"
              "<tr><td>prod</td><td>pay</td></tr></tbody></table>")
    nested = (f"<table><tbody><tr><th>Notes</th></tr><tr><td><table><tbody>{OURS_HEADER}"
              "</tbody></table></td></tr></tbody></table>")
    ours = f"<table><tbody>{OURS_HEADER}</tbody></table>"
    body = f"<h2>SRE Action Items</h2>{deploy}<p>text</p>{nested}<h3>Sub</h3>{ours}<h2>Next</h2>"
    new, changed, summary = sf.update_table(body, TITLE, [row()])
    assert changed and summary == "1 row added"
    start = body.index(ours)
    assert new[:start] == body[:start] and new.endswith("</table><h2>Next</h2>")
    assert sf.inspect_page(new, TITLE).rows == 1


def test_table_of_the_next_section_is_not_ours():
    ours = f"<table><tbody>{OURS_HEADER}</tbody></table>"
    body = f"<h2>SRE Action Items</h2><p>x</p><h1>Archive</h1>{ours}"
    new, changed, _ = sf.update_table(body, TITLE, [row()])
    assert changed and new.endswith(f"<h1>Archive</h1>{ours}")
    assert new.startswith("<h2>SRE Action Items</h2><table>")


ADF = ('<ac:adf-extension><ac:adf-node type="panel"><ac:adf-attribute key="panel-type">note'
       "</ac:adf-attribute><ac:adf-content><h2>SRE Action Items</h2><p>Owned by SRE.</p>"
       '</ac:adf-content></ac:adf-node><ac:adf-fallback><div class="panel conf-macro">'
       "<div class=\"panelContent\"><h2>SRE Action Items</h2><p>Owned by SRE.</p></div></div>"
       "</ac:adf-fallback></ac:adf-extension>")


def test_heading_stored_twice_by_cloud_adf_counts_once():
    body = "<p>intro</p>" + ADF + "<p>after</p>"
    new, changed, _ = sf.update_table(body, TITLE, [row()])
    assert changed
    # The new table follows the whole panel: its content and fallback stay a pair.
    assert new.startswith("<p>intro</p>" + ADF + "<table>") and new.endswith("<p>after</p>")
    assert not sf.update_table(new, TITLE, [row()])[1]


def test_page_that_is_one_layout_gets_heading_and_table_in_its_last_cell():
    body = ('<ac:layout><ac:layout-section ac:type="two_equal"><ac:layout-cell><p>a</p>'
            "</ac:layout-cell><ac:layout-cell><p>b</p></ac:layout-cell></ac:layout-section>"
            "</ac:layout>")
    new, changed, summary = sf.update_table(body, TITLE, [row()])
    assert changed and summary == "table added with 1 row"
    cut = body.rindex("</ac:layout-cell>")
    assert new.startswith(body[:cut] + "<h2>SRE Action Items</h2><table>")
    assert new.endswith("</table>" + body[cut:])
    # Empty last cell (self-closing) or more than the layout on the page: at the very end.
    for other in (body.replace("<ac:layout-cell><p>b</p></ac:layout-cell>", "<ac:layout-cell />"),
                  body + "<p>tail</p>"):
        again = sf.update_table(other, TITLE, [row()])[0]
        assert again.startswith(other + "<h2>")


def test_human_row_that_looks_like_a_tool_task_is_kept():
    lookalike = ("<tr>" + "".join(
        f"<td><p>{'Backups → L2' if c == 'Task' else 'legacy-db' if c == 'Asset Name' else 'x'}"
        "</p></td>" for c in PAGE_COLUMNS) + "</tr>")
    body = f"<h2>SRE Action Items</h2><table><tbody>{OURS_HEADER}{lookalike}</tbody></table>"
    new, changed, summary = sf.update_table(body, TITLE, [row()], KNOWN)
    assert changed and summary == "1 row added"
    assert [r["Asset Name"] for r in sf.table_rows(new, TITLE)] == ["payment-api", "legacy-db"]
    assert lookalike in new
    # Once the tool knows that item (closed now), its row is the tool's and leaves.
    known = KNOWN | {("Backups → L2", "legacy-db")}
    new, changed, summary = sf.update_table(body, TITLE, [row()], known)
    assert summary == "1 row added, 1 removed" and "legacy-db" not in new


def test_changed_row_keeps_highlight_colours_and_inline_comments_on_our_cells():
    body = "<h2>SRE Action Items</h2>" + human_table()
    body = body.replace("<td><p>Every alert is actionable</p></td>",
                        '<td data-highlight-colour="#ffebe6"><p><ac:inline-comment-marker '
                        'ac:ref="c0ffee">Every alert is actionable</ac:inline-comment-marker>'
                        "</p></td>", 1)
    body = body.replace("<td><p>P1</p></td>", '<td class="highlight-yellow" '
                        'data-highlight-colour="yellow"><p>P1</p></td>', 1)
    rows = [row("payment-api", Description="Every page is actionable", Priority="P2"),
            *TOOL_ROWS[1:]]
    new, changed, summary = sf.update_table(body, TITLE, rows, KNOWN)
    assert changed and summary == "1 row updated"
    assert ('<td data-highlight-colour="#ffebe6"><p><ac:inline-comment-marker ac:ref="c0ffee">'
            "Every page is actionable</ac:inline-comment-marker></p></td>") in new
    assert '<td class="highlight-yellow" data-highlight-colour="yellow"><p>P2</p></td>' in new
    # Cells whose data did not change are kept byte for byte.
    assert new.count("<td><p>Go-Live</p></td>") == 3
    assert not sf.update_table(new, TITLE, rows, KNOWN)[1]


def test_human_column_order_is_respected():
    cols = list(reversed(PAGE_COLUMNS))
    header = "<tr>" + "".join(f"<th><p>{c}</p></th>" for c in cols) + "</tr>"
    body = f"<h2>SRE Action Items</h2><table><tbody>{header}</tbody></table>"
    new, changed, _ = sf.update_table(body, TITLE, [row()])
    assert changed and header in new
    got = sf.table_rows(new, TITLE)[0]
    assert list(got)[:11] == cols and got["Task"] == "Alerts → L3"
    assert not sf.update_table(new, TITLE, [row()])[1]  # no write just to reorder
    # A tool column missing from the page comes back after the one it follows.
    partial = header.replace("<th><p>Owner</p></th>", "")
    body = f"<h2>SRE Action Items</h2><table><tbody>{partial}</tbody></table>"
    got = sf.table_rows(sf.update_table(body, TITLE, [row()])[0], TITLE)[0]
    assert list(got)[:11] == ["Category", "Status", "Rally Card", "Description", "Task",
                              "Asset Name", "Flow", "Target Milestone", "Owner",
                              "Required for Go Live", "Priority"]


# ------------------------------------------------------------------------ an item's row, fast
_texts = st.text(max_size=20) | st.sampled_from(["", "US12", "P1", "a|b", "x\n[y]", " *z* "])
_items = st.fixed_dictionaries({
    "priority": _texts, "go_live": st.sampled_from([0, 1, True, False]), "milestone": _texts,
    "owner": _texts, "asset": _texts, "capability": _texts, "level": st.integers(1, 5),
    "criteria": _texts, "category": _texts,
    "work_status": st.sampled_from(["Not Started", "Defined", "In-Progress", "Completed",
                                    "Accepted", "Missing in Rally", "Reopened", "odd one"]),
    "state": st.sampled_from(["open", "done", "closed"]),
}, optional={
    "flows": _texts, "why": st.none() | _texts, "rally_id": st.none() | _texts,
    "rally_url": st.none() | st.sampled_from(["", "https://rally1.rallydev.com/#/1/d/2",
                                              "javascript:alert(1)", "http://x/a b"]),
})


@settings(max_examples=300, deadline=None)
@given(it=_items)
def test_an_items_row_made_from_parts_is_the_row_made_cell_by_cell(it):
    from sre_maturity.render import reports
    row = reports.todo_row(it)
    assert reports.wiki_todo_row(it) == reports.wiki_row(row)
    assert sf.render_todo_row(it) == sf.render_row(row)


_TWINS = {}  # one per pair of formats, kept across examples: its parts are reused, as in a run


@settings(max_examples=300, deadline=None)
@given(items=st.lists(_items, min_size=1, max_size=4), cloud=st.booleans())
def test_twin_rows_are_both_formats_rows_encoded(items, cloud):
    from sre_maturity.render import cloud_wiki, reports
    wiki = cloud_wiki.ROWS if cloud else reports.WIKI_ROWS
    twin = _TWINS.setdefault(cloud, reports.TwinRows(wiki, sf.STORAGE_ROWS))
    for it in items + items:  # the second time from the parts made the first
        row = reports.todo_row(it)
        first = cloud_wiki.todo_row(it) if cloud else reports.wiki_row(row)
        assert twin(it) == (first.encode(), sf.render_row(row).encode())

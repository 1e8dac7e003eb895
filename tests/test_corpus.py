"""The page update on real storage-format documents (tests/corpus/storage, sources in its
README): our table at the start, in the middle, at the end, inside a layout cell and inside an
expand macro of each document. Every byte outside our table stays, the result is well-formed,
people's columns and rows stay, and an unchanged table is no write."""

from __future__ import annotations

from pathlib import Path

import pytest

from fake_confluence import FakeConfluence, xhtml_error
from sre_maturity.clients import confluence
from sre_maturity.render import storage_format as sf
from sre_maturity.render import storage_page as sp
from sre_maturity.render.reports import PAGE_COLUMNS

CORPUS = Path(__file__).parent / "corpus" / "storage"
DOCS = sorted(p for p in CORPUS.iterdir() if p.suffix in (".html", ".xml"))
TITLE = "SRE Action Items"
HEADING = "<h2>SRE Action Items</h2>"


def row(asset: str, capability: str, level: int, **kw) -> dict:
    data = {"Priority": "P1", "Required for Go Live": "Yes", "Target Milestone": "Go-Live",
            "Owner": "Asset", "Flow": "Checkout", "Asset Name": asset,
            "Task": f"{capability} → L{level}", "Description": "Dashboards & alerts: on",
            "Rally Card": "US7", "Status": "Defined", "Category": "Monitoring",
            "_link": "https://rally1.rallydev.com/#/detail/userstory/7", "_colour": "Grey"}
    data.update(kw)
    return data


OLD = [row("payment-api", "Alerts", 3), row("web", "Dashboards", 2),
       row("auth", "On-call", 1)]
NEW = [row("payment-api", "Alerts", 3, Status="In-Progress", _colour="Blue"),
       row("web", "Dashboards", 2), row("ledger", "Backups", 2)]
KNOWN = {(r["Task"], r["Asset Name"]) for r in OLD + NEW}


def our_table() -> str:
    """The table as the tool wrote it, then edited by people: a Comments column, a note on a
    row, a row of their own."""
    markup = sf.render_table(OLD)
    cols = [*PAGE_COLUMNS[:3], "Comments", *PAGE_COLUMNS[3:]]
    page = sf.update_table("<p />", TITLE, OLD)[0]
    assert sf.table_rows(page, TITLE) is not None
    cells = markup.split("</tr>")
    header = "<tr>" + "".join(f"<th><p>{c}</p></th>" for c in cols)
    out = [header]
    for i, tr in enumerate(cells[1:-1]):
        tds = tr.removeprefix("<tr>").split("</td>")[:-1]
        note = "<td><p>ask <strong>Kim</strong> &amp; Lee</p></td>" if i == 0 else "<td><p /></td>"
        tds.insert(3, note.removesuffix("</td>"))
        out.append("<tr>" + "</td>".join(tds) + "</td>")
    human = "<tr>" + "".join(f"<td><p>{'their own row' if c == 'Task' else 'x'}</p></td>"
                             for c in cols) + "</tr>"
    return "<table><tbody>" + "</tr>".join(out) + "</tr>" + human + "</tbody></table>"


def _middle(doc: str) -> int:
    """A boundary between two top-level elements near the middle of the document."""
    page = sp.load(doc)
    tops = [el for el in page.root if isinstance(el.tag, str)]
    if len(tops) < 2:
        return len(doc)
    return page.span(tops[len(tops) // 2 - 1]).end


PLACES = {
    "start": lambda doc, ours: HEADING + ours + doc,
    "middle": lambda doc, ours: doc[:_middle(doc)] + HEADING + ours + doc[_middle(doc):],
    "end": lambda doc, ours: doc + HEADING + ours,
    "layout cell": lambda doc, ours: (
        '<ac:layout><ac:layout-section ac:type="two_equal"><ac:layout-cell>' + doc
        + "</ac:layout-cell><ac:layout-cell>" + HEADING + ours
        + "</ac:layout-cell></ac:layout-section></ac:layout>"),
    "expand macro": lambda doc, ours: (
        doc + '<ac:structured-macro ac:name="expand"><ac:parameter ac:name="title">Actions'
        "</ac:parameter><ac:rich-text-body>" + HEADING + ours
        + "</ac:rich-text-body></ac:structured-macro>"),
}


def test_corpus_is_there_and_cited():
    assert len(DOCS) >= 30
    readme = (CORPUS / "README.md").read_text(encoding="utf-8")
    for doc in DOCS:
        assert f"`{doc.name}`" in readme, doc.name


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_update_keeps_every_byte_outside_our_table(doc, place):
    text = doc.read_text(encoding="utf-8")
    ours = our_table()
    body = PLACES[place](text, ours)
    start = body.index(HEADING) + len(HEADING)
    before, after = body[:start], body[start + len(ours):]
    new, changed, summary = sf.update_table(body, TITLE, NEW, KNOWN)
    assert changed and summary == "1 row added, 1 updated, 1 removed"
    assert new.startswith(before) and new.endswith(after)
    table = new[len(before):len(new) - len(after)]
    assert table.startswith("<table>") and table.endswith("</table>")
    assert xhtml_error(new) is None
    got = sf.table_rows(new, TITLE)
    assert [r["Asset Name"] for r in got] == ["payment-api", "web", "ledger", "x"]
    assert got[0]["Comments"] == "ask Kim & Lee" and got[0]["Status"] == "In-Progress"
    assert got[3]["Task"] == "their own row"
    assert list(got[0])[3] == "Comments"  # the people's column stays where they put it
    again = sf.update_table(new, TITLE, NEW, KNOWN)
    assert again == (new, False, "no changes")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_page_without_our_heading_gets_it_added_and_nothing_else_moves(doc):
    text = doc.read_text(encoding="utf-8")
    new, changed, summary = sf.update_table(text, TITLE, NEW, KNOWN)
    assert changed and summary == "table added with 3 rows"
    at = new.index(HEADING)
    assert text.startswith(new[:at]) and new.endswith(text[at:])
    assert xhtml_error(new) is None
    assert sf.update_table(new, TITLE, NEW, KNOWN)[1] is False
    # Every table the document had is still there, untouched.
    assert new.count("<table") == text.count("<table") + 1


def test_corpus_through_the_fake_server_writes_once_then_never():
    with FakeConfluence() as fake:
        client = confluence.make_client(fake.cloud_url, api="cloud", user=fake.email,
                                        api_token=fake.api_token, timeout=5.0)
        with client:
            for doc in DOCS:
                text = doc.read_text(encoding="utf-8")
                pid = fake.add_page(doc.name, PLACES["middle"](text, our_table()))
                first = confluence.update_todo_table(client, pid, TITLE, NEW, KNOWN)
                assert first["changed"], doc.name
                sent = fake.pages[pid]["history"][-1]["sent"]
                assert xhtml_error(sent) is None
                second = confluence.update_todo_table(client, pid, TITLE, NEW, KNOWN)
                assert not second["changed"] and second["requests"] == 1, doc.name


def test_fake_server_normalises_tags_but_stores_cdata_and_text_as_sent():
    from fake_confluence import normalise

    body = ('<p>a <br /> b</p><ac:structured-macro ac:name="code"><ac:plain-text-body>'
            '<![CDATA[<table> x />]]></ac:plain-text-body></ac:structured-macro><table>'
            "<tbody><tr><td>t />&lt;table&gt;</td></tr></tbody></table><!-- <table> -->")
    out = normalise(body, "datacenter")
    assert out == body.replace("<br />", "<br/>").replace(
        '<ac:structured-macro ac:name="code">', out[out.index("<ac:structured-macro"):
                                                     out.index("<ac:plain-text-body>")]
    ).replace("</ac:structured-macro><table>", '</ac:structured-macro><table class="wrapped">')
    assert "<![CDATA[<table> x />]]>" in out and "<!-- <table> -->" in out
    assert 'ac:schema-version="1"' in out

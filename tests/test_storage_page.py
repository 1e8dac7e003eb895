"""storage_page's API for any table kept on a page (the rulebook and matrix pages use it):
locate by heading and header columns, splice byte-exactly, no-op when the data is there, and
the 409 rule through confluence.update_page."""

from __future__ import annotations

import pytest

from fake_confluence import FakeConfluence, xhtml_error
from sre_maturity.clients import confluence
from sre_maturity.render import storage_page as sp
from sre_maturity.support.errors import ConfluenceError

TITLE = "SRE Maturity Model"
IS_OURS = sp.has_columns("Capability", "Level")


def table(*rows: tuple[str, str], colour: str = "") -> str:
    attr = f' data-highlight-colour="{colour}"' if colour else ""
    body = "".join(f"<tr><td><p>{c}</p></td><td{attr}><p>{lv}</p></td></tr>" for c, lv in rows)
    return ("<table><tbody><tr><th><p>Capability</p></th><th><p>Level</p></th></tr>"
            f"{body}</tbody></table>")


BEFORE = ('<p>intro &mdash; <ac:emoticon ac:name="tick" /></p><h1>SRE Maturity Model</h1>'
          "<table><tbody><tr><td>footnote without a header row</td></tr></tbody></table>")
AFTER = ('<ac:structured-macro ac:name="code"><ac:plain-text-body><![CDATA[a < b]]>'
         "</ac:plain-text-body></ac:structured-macro><h1>Next</h1>")


def test_replace_table_puts_ours_after_the_heading_then_finds_it_again():
    body = BEFORE + AFTER
    first = sp.replace_table(body, TITLE, IS_OURS, table(("Alerts", "3")))
    assert first.changed and xhtml_error(first.body) is None
    heading_end = body.index("</h1>") + len("</h1>")
    assert first.body == body[:heading_end] + table(("Alerts", "3")) + body[heading_end:]
    # Same data in other markup (as Confluence re-saves it): no change, body returned as is.
    resaved = first.body.replace("<p>3</p>", "<p> 3 </p>")
    again = sp.replace_table(resaved, TITLE, IS_OURS, table(("Alerts", "3")))
    assert not again.changed and again.body is resaved
    # New data replaces exactly our table.
    third = sp.replace_table(first.body, TITLE, IS_OURS, table(("Alerts", "4")))
    assert third.changed and third.body == first.body.replace("<p>3</p>", "<p>4</p>")


def test_a_cell_colour_is_data():
    body = "<h2>SRE Maturity Model</h2>" + table(("Alerts", "3"), colour="#ffebe6")
    same = sp.replace_table(body, TITLE, IS_OURS, table(("Alerts", "3"), colour="#FFEBE6"))
    assert not same.changed
    other = sp.replace_table(body, TITLE, IS_OURS, table(("Alerts", "3"), colour="#e3fcef"))
    assert other.changed and "#e3fcef" in other.body


def test_has_columns_folds_case_and_spaces():
    assert sp.has_columns("Asset Name", "Task")(["task", "Asset\xa0 name", "x"])
    assert not sp.has_columns("Asset Name", "Task")(["Task"])


def test_markup_that_is_not_a_table_of_ours_is_refused():
    with pytest.raises(ConfluenceError, match="would not show the table"):
        sp.replace_table("<h2>SRE Maturity Model</h2>", TITLE, IS_OURS, "<p>no table</p>")


def test_a_body_with_a_quoted_angle_bracket_still_splices():
    body = '<p title="a>b">x</p><h2>SRE Maturity Model</h2>'
    result = sp.replace_table(body, TITLE, IS_OURS, table(("Alerts", "3")))
    assert result.changed and result.body.startswith(body)


def test_table_edit_through_update_page_survives_a_concurrent_edit():
    with FakeConfluence() as fake:
        pid = fake.add_page("Rulebook", BEFORE + AFTER)
        fake.edit_before_put(pid, lambda b: b.replace("intro", "intro (edited)"))
        edit = sp.table_edit(TITLE, IS_OURS, table(("Alerts", "3")), "rulebook updated")
        client = confluence.make_client(fake.cloud_url, api="cloud", user=fake.email,
                                        api_token=fake.api_token, timeout=5.0)
        with client:
            result = confluence.update_page(client, pid, edit)
            assert result["changed"] and result["summary"] == "rulebook updated"
            body = fake.body(pid)
            assert "intro (edited)" in body and "<p>Alerts</p>" in body
            again = confluence.update_page(client, pid, edit)
            assert not again["changed"] and again["summary"] == "no changes"

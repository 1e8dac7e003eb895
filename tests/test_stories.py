"""Rally story text: rally_import.csv, names, and the item key in Notes."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_reports import item

from sre_maturity.render import stories


def parse_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_rally_csv_headers_and_row():
    rows = parse_csv(stories.rally_import_csv([item()], "SRE-Maturity"))
    assert rows[0] == ["Name", "Description", "Schedule State", "Tags", "Notes"]
    name, description, state, tag, notes = rows[1]
    # The tool's own characters in the CSV are ASCII (see story_name); the API's stay "–".
    assert (name, state, tag, notes) == ("[SRE] web - Alerts L2", "Defined", "SRE-Maturity",
                                         "sre-tracker item: web / Alerts / 2")
    assert "Alerts page" in description and "Checkout, Login" in description and \
        "Answered no: x" in description


_csv_texts = st.text(alphabet=st.sampled_from(list('ab ,"\r\n;\t=<é')), max_size=8)


@settings(max_examples=300, deadline=None)
@given(asset=_csv_texts.filter(str.strip), criteria=_csv_texts, why=_csv_texts,
       flows=_csv_texts, milestone=_csv_texts, tag=_csv_texts,
       current=st.none() | st.integers(0, 5))
def test_a_rally_import_line_is_its_row_written_as_csv(asset, criteria, why, flows,
                                                       milestone, tag, current):
    from sre_maturity.store.csvfiles import csv_record
    it = item(asset=asset, criteria=criteria, why=why, flows=flows, milestone=milestone,
              current_level=current, key=f"{asset} / Alerts / 2")
    for _ in range(2):  # the second time from the parts made the first
        assert stories.rally_import_record(it, tag) == csv_record(
            stories.rally_import_row(it, tag))


@pytest.mark.parametrize("danger", ["=cmd|' /C calc'!A0", "+1+1", "-2", "@SUM(A1)", "\tx"])
def test_formula_cells_are_neutralised(danger):
    rows = parse_csv(stories.rally_import_csv([item(asset=danger.strip())], "=tag"))
    assert all(not c or c[0] not in "=+-@\t\r" for c in rows[1]) and rows[1][3] == "'=tag"


def test_long_names_are_shortened_to_256():
    name = stories.story_name("a" * 300, "c" * 300, 3)
    assert len(name) == 256 and name.startswith("[SRE] a") and name.endswith(" L3")


@given(st.text(min_size=1, max_size=300), st.text(min_size=1, max_size=300), st.booleans())
def test_story_name_never_exceeds_limit(asset, capability, ascii_only):
    name = stories.story_name(asset, capability, 5, ascii_only=ascii_only)
    assert len(name) <= stories.NAME_LIMIT


@given(st.text(alphabet=st.characters(max_codepoint=127), min_size=1, max_size=300),
       st.text(alphabet=st.characters(max_codepoint=127), min_size=1, max_size=300))
def test_the_csv_story_name_of_ascii_names_is_ascii(asset, capability):
    assert stories.story_name(asset, capability, 2, ascii_only=True).isascii()


names = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")),
                min_size=1, max_size=60).map(str.strip).filter(lambda s: s and " / " not in s)


@given(names, st.booleans())
def test_item_key_survives_rally_notes_html(asset, wrap):
    key = f"{asset} / Alerts / 3"
    notes = stories.story_notes(key)
    assert stories.key_from_text(f"<p>{notes}</p>" if wrap else notes) == key


def test_only_open_red_items_without_story_are_selected():
    items = [item(), item(key="a", go_live=0), item(key="b", rally_oid="9"),
             item(key="c", state="verified"), item(key="d", state="done")]
    assert [i["key"] for i in stories.select_for_rally(items, False)] == ["web / Alerts / 2"]


def test_include_amber_adds_amber_items():
    items = [item(), item(key="a", go_live=0, priority="P3")]
    assert len(stories.select_for_rally(items, True)) == 2


def test_story_description_says_the_criteria_once():
    why = "Not yet confirmed: Do alerts page? — L2 means: Alerts page"
    text = stories.story_description(item(criteria="Alerts page", why=why), "Checkout")
    assert text.count("Alerts page") == 1  # the Criteria line
    assert "<b>Why:</b> Not yet confirmed: Do alerts page?<br />" in text

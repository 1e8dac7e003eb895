"""The pages to look at: the Rulebook files and sre_matrix.html, written by ``report``."""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from lxml import html as lxml_html

from conftest import FLOWS, MODEL, git
from fake_confluence import FakeConfluence
from fake_rally import FakeRally
from sre_maturity.render import matrix_page, reports, rulebook, storage_page
from sre_maturity.rules import maturity as mt

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


class Structure(HTMLParser):
    """A strict check of an HTML file: every element closed in order, and what it loads."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.tags: set[str] = set()
        self.urls: list[str] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "srcset", "action", "data", "poster"):
                self.urls.append(value or "")
            if name == "style":
                self.styles.append(value or "")
            if name.startswith("on"):
                self.problems.append(f"event handler {name} on <{tag}>")
        if tag not in VOID:
            self.stack.append(tag)
        self._in_style = tag == "style"

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes <{self.stack[-1] if self.stack else '-'}>")
            return
        self.stack.pop()
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)


def structure(text: str) -> Structure:
    checker = Structure()
    checker.feed(text)
    checker.close()
    assert not checker.problems, checker.problems[:5]
    assert not checker.stack, f"never closed: {checker.stack}"
    return checker


def matrix_html(folder: Path) -> str:
    return (folder / "sre_matrix.html").read_text(encoding="utf-8")


def sections(text: str) -> dict[str, lxml_html.HtmlElement]:
    doc = lxml_html.fromstring(text)
    return {s.find("h2").text_content(): s for s in doc.iter("section")
            if "flow" in (s.get("class") or "").split()}


def heat_rows(section) -> dict[str, list[str]]:
    """Row label -> the level cells' texts, from a flow section's heatmap."""
    table = next(t for t in section.iter("table") if t.get("class") == "heat")
    out = {}
    for tr in table.iter("tr"):
        head = tr.find("th")
        if head is not None and head.get("scope") == "row":
            out[head.text_content()] = [td.text_content() for td in tr.iter("td")
                                        if "l" in (td.get("class") or "").split()]
    return out


# ------------------------------------------------------------------------ the Rulebook
def test_report_writes_the_rulebook_in_model_order(ready, run):
    code, out, err = run(ready, "report")
    text = (ready / "confluence_rulebook.txt").read_text(encoding="utf-8")
    lines = text.splitlines()
    table = [line for line in lines if line.startswith("|")]
    assert code == 0, err
    assert "confluence_rulebook.txt: the maturity model, 15 levels" in out
    assert lines[0] == "h2. SRE Maturity Model"
    assert table[0] == ("||Category||Capability||Level||Criteria||Questions||"
                        "Required for Go Live||Owner||Priority||Target Milestone||")
    assert len(table) == 1 + 15
    assert table[1].startswith("|Monitoring|Dashboards|L1|Basic metrics are collected|")
    assert [re.split(r"(?<!\\)\|", row)[3] for row in table[1:6]] == [
        "L1", "L2", "L3", "L4", "L5"]
    assert "On\\-call" in table[-1] and "|SRE|" in table[-1]


def test_rulebook_storage_twin_is_well_formed_and_holds_every_level(ready, run):
    run(ready, "report")
    markup = (ready / "confluence_rulebook.html").read_text(encoding="utf-8")
    table = etree.fromstring(markup.encode("utf-8"))
    rows = table.findall("./tbody/tr")
    cells = [[c.xpath("string()") for c in tr] for tr in rows]
    assert cells[0] == rulebook.COLUMNS
    assert len(rows) == 16
    assert cells[3][:4] == ["Monitoring", "Dashboards", "L3", "Dashboards show the golden signals"]
    assert cells[3][5:] == ["No", "Asset", "P2", "2027-Q2"]
    assert cells[11][1] == "On-call" and cells[11][5] == "Yes"


def test_rulebook_lists_every_question_of_a_level():
    model = {"Backups": mt.Capability("Backups", "DR", {
        1: mt.LevelSpec(1, "Backups run", ("Do backups run daily?", "Are they monitored?"),
                        go_live=True, milestone="Go-Live")})}
    [row] = rulebook.rows(model)
    assert row["Questions"] == "Do backups run daily?\nAre they monitored?"
    # The cells are escaped by the to-do table's own escaping (one rule for both pages).
    values = ["DR", "Backups", "L1", "Backups run", "Do backups run daily?\nAre they monitored?",
              "Yes", "Asset", "P3", "Go-Live"]
    assert rulebook.wiki_table([row]).splitlines()[1] == (
        "|" + "|".join(reports.wiki_escape(v) for v in values) + "|")
    assert "daily?\nAre" not in rulebook.wiki_table([row])
    assert "<p>Do backups run daily?<br />Are they monitored?</p>" in rulebook.storage_table([row])


HOSTILE_MODEL = MODEL.replace(
    "Basic metrics are collected",
    '"a|b [link|http://x] {code} *bold* <script>alert(1)</script> & h1. x"')


def test_hostile_model_text_is_escaped_in_wiki_and_storage(folder, run):
    (folder / "maturity_model.csv").write_text(HOSTILE_MODEL, encoding="utf-8")
    assert run(folder, "setup", "--from-csv")[0] == 0
    run(folder, "report")
    wiki = (folder / "confluence_rulebook.txt").read_text(encoding="utf-8")
    row = next(line for line in wiki.splitlines() if "alert" in line)
    markup = (folder / "confluence_rulebook.html").read_text(encoding="utf-8")
    cell = etree.fromstring(markup.encode("utf-8")).findall("./tbody/tr")[1][3]
    # Every | [ ] { } of the data is escaped: the row still has exactly nine cells.
    assert len(re.findall(r"(?<!\\)\|", row)) == len(rulebook.COLUMNS) + 1
    assert not re.search(r"(?<!\\)[\[\]{}]", row)
    assert "<script>" not in markup
    assert cell.xpath("string()") == ('a|b [link|http://x] {code} *bold* '
                                      '<script>alert(1)</script> & h1. x')


# ------------------------------------------------------------------------ sre_matrix.html
@pytest.fixture
def assessed(ready: Path, run) -> Path:
    """payment-api: Dashboards L2, Alerts L0, On-call Not Applicable; web: On-call L3."""
    for args in (("--asset", "payment-api", "--capability", "Dashboards", "--level", "2"),
                 ("--asset", "payment-api", "--capability", "Alerts", "--level", "0"),
                 ("--asset", "payment-api", "--capability", "On-call",
                  "--not-applicable", "batch only"),
                 ("--asset", "web", "--capability", "On-call", "--level", "3")):
        code, _out, err = run(ready, "assess", *args)
        assert code == 0, err
    return ready


def test_matrix_page_is_self_contained_and_well_formed(assessed, run):
    code, out, err = run(assessed, "report")
    text = matrix_html(assessed)
    checked = structure(text)
    assert code == 0, err
    assert "sre_matrix.html: every flow ready or blocked for go-live, and the matrix as a " \
        "heatmap per flow (open it in a browser)" in out
    assert text.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in text
    assert not checked.tags & {"script", "link", "img", "iframe", "object", "embed", "video",
                               "audio", "source", "base", "form", "input"}
    assert all(url.startswith("#") for url in checked.urls), checked.urls
    css = " ".join(checked.styles)
    assert "url(" not in css and "@import" not in css and "@font-face" not in css
    assert "http" not in re.sub(r'xmlns="http://www.w3.org/2000/svg"', "", text)
    assert "@media print" in css
    # Printed, the flows at a glance stay on the first page (only the sections break pages).
    printed = css[css.index("@media print"):]
    assert "nav" not in printed and "overview" not in printed


def test_matrix_page_shows_every_flow_asset_and_level(assessed, run):
    run(assessed, "report")
    flows = sections(matrix_html(assessed))
    checkout = heat_rows(flows["Checkout"])
    login = heat_rows(flows["Login"])
    assert list(flows) == ["Checkout", "Login"]
    assert list(checkout) == ["Weakest link", "payment-api", "web"]
    assert list(login) == ["Weakest link", "web", "auth"]
    # Columns: Monitoring, Alerting. payment-api: Dashboards L2 (Monitoring), Alerts L0 and
    # On-call not applicable (Alerting: weakest assessed level 0).
    assert checkout["payment-api"] == ["2A", "0R"]
    # web: Alerts not assessed, On-call L3 -> "3*" (some of the category still to assess).
    assert checkout["web"] == ["–", "3*G"]
    assert login["auth"] == ["–", "–"]
    assert checkout["Weakest link"] == ["2*A", "0*R"]
    # Login's Alerting: web L3 (Green) but auth not assessed: a '*' and never Green.
    assert login["Weakest link"] == ["–", "3*"]
    weakest = next(tr for tr in flows["Login"].iter("tr") if tr.get("class") == "weakest")
    assert [td.get("class") for td in weakest.iter("td") if td.text_content()] == [
        "l not-assessed", "l unknown"]


@pytest.mark.parametrize("flavour", ["datacenter", "cloud"])
def test_the_confluence_matrix_never_shows_a_flow_cell_green_with_an_asset_unassessed(
        ready, run, flavour):
    from database import Database
    from sre_maturity.rules import views

    run(ready, "assess", "--asset", "web", "--capability", "Dashboards", "--level", "3")
    run(ready, "assess", "--asset", "payment-api", "--capability", "Dashboards", "--level", "4")
    with Database(ready / "sre_data.db") as db:
        matrix, flows = views.matrix_rows(db)
    table = lxml_html.fromstring(matrix_page.confluence_table(matrix, flows, flavour))
    rows = {(tr[0].text_content(), tr[1].text_content()): tr for tr in table.iter("tr")}
    login = rows[("Login", matrix_page.WEAKEST_LINK)][4]  # Monitoring: web L3 Green, auth -
    checkout = rows[("Checkout", matrix_page.WEAKEST_LINK)][4]  # both assessed, Green
    assert (login.text_content(), login.get("data-highlight-colour")) == (
        "3*", matrix_page.HIGHLIGHTS[flavour][None]["data-highlight-colour"])
    assert (checkout.text_content(), checkout.get("data-highlight-colour")) == (
        "3 Green", matrix_page.HIGHLIGHTS[flavour][mt.GREEN]["data-highlight-colour"])


def overview(folder: Path) -> dict[str, list[str]]:
    """Flow -> [go-live, open go-live items, go-live capabilities not assessed, assets], from
    the page's table of flows at a glance."""
    doc = lxml_html.fromstring(matrix_html(folder))
    table = next(t for t in doc.iter("table") if t.get("class") == "gates")
    return {tr.find("th").text_content(): [td.text_content() for td in tr.iter("td")]
            for tr in table.iter("tr") if tr.getparent().tag == "tbody"}


def gate_says(run, folder: Path, flow: str) -> list[str]:
    """[go-live, open go-live items, not assessed] as ``gate --flow`` says them."""
    code, out, _err = run(folder, "gate", "--flow", flow)
    first = out.splitlines()[0]
    items = re.search(r"(\d+) open go-live items?", first)
    missing = re.search(r"(\d+) go-live capabilit(?:y|ies) not assessed", first)
    assert code == (4 if first.startswith("gate closed") else 0), out
    return ["blocked" if code == 4 else "ready", items.group(1) if items else "0",
            missing.group(1) if missing else "0"]


def test_the_page_opens_with_every_flow_as_gate_decides_it(ready, run):
    # Nothing assessed: every flow is blocked, and no section says "no open go-live item".
    run(ready, "report")
    assert {flow: row[:3] for flow, row in overview(ready).items()} == {
        flow: gate_says(run, ready, flow) for flow in ("Checkout", "Login")}
    assert overview(ready)["Checkout"] == ["blocked", "0", "6", "2"]
    page = matrix_html(ready)
    assert "No open go-live item" not in page
    login = sections(page)["Login"]
    assert "Go-live blocked (gate closed): 6 go-live capabilities not assessed." in \
        login.text_content()
    unassessed = next(t for t in login.iter("table") if "unassessed" in t.get("class"))
    assert [tr[0].text_content() for tr in unassessed.iter("tr")][1:] == ["auth", "web"]
    # Assess every go-live capability of auth and web to their go-live levels: Login is
    # ready, Checkout (payment-api unassessed) is not; the page and the gate still agree.
    for asset in ("auth", "web"):
        for cap, level in (("Dashboards", "2"), ("Alerts", "1"), ("On-call", "3")):
            assert run(ready, "assess", "--asset", asset, "--capability", cap,
                       "--level", level)[0] == 0
    run(ready, "assess", "--asset", "payment-api", "--capability", "Alerts", "--level", "0")
    run(ready, "report")
    seen = overview(ready)
    assert {flow: row[:3] for flow, row in seen.items()} == {
        flow: gate_says(run, ready, flow) for flow in ("Checkout", "Login")}
    assert seen == {"Checkout": ["blocked", "1", "2", "2"], "Login": ["ready", "0", "0", "2"]}
    assert "Ready to go live (gate open)" in sections(matrix_html(ready))["Login"].text_content()
    # The flows x categories heatmap: one row per flow, the same cells as each section's
    # weakest-link row.
    doc = lxml_html.fromstring(matrix_html(ready))
    flows_heat = next(t for t in doc.iter("table") if t.get("class") == "heat flows")
    rows = {tr.find("th").text_content(): [td.text_content() for td in tr.iter("td")]
            for tr in flows_heat.iter("tr") if tr.getparent().tag == "tbody"}
    assert rows == {flow: heat_rows(section)["Weakest link"]
                    for flow, section in sections(matrix_html(ready)).items()}


def test_not_assessed_differs_from_level_0_and_not_applicable_is_marked(ready, run):
    run(ready, "assess", "--asset", "auth", "--capability", "Dashboards", "--level", "0")
    run(ready, "assess", "--asset", "auth", "--capability", "Alerts", "--not-applicable",
        "no paging")
    run(ready, "assess", "--asset", "auth", "--capability", "On-call", "--not-applicable",
        "no paging")
    run(ready, "report")
    section = sections(matrix_html(ready))["Login"]
    cells = {tr.find("th").text_content(): [td for td in tr.iter("td")
                                            if "l" in (td.get("class") or "").split()]
             for tr in section.iter("tr") if tr.find("th") is not None
             and tr.find("th").get("scope") == "row"}
    zero, na = cells["auth"]
    unassessed = cells["web"][0]
    assert (zero.text_content(), zero.get("class")) == ("0R", "l assessed red")
    assert (na.text_content(), na.get("class")) == ("n/a", "l not-applicable")
    assert (unassessed.text_content(), unassessed.get("class")) == ("–", "l not-assessed")
    assert "not applicable (no paging)" in na.get("title")
    assert "not-assessed" in matrix_page.CSS and "repeating-linear-gradient" in matrix_page.CSS


def test_counts_and_open_go_live_items_per_flow(assessed, run):
    run(assessed, "report")
    checkout = sections(matrix_html(assessed))["Checkout"]
    counts = dict(zip([d.text_content() for d in checkout.iter("dt")],
                      [d.text_content() for d in checkout.iter("dd")], strict=True))
    items = [tr for tr in checkout.iter("tr") if tr.getparent().tag == "tbody"
             and tr.getparent().getparent().get("class") == "items"]
    tasks = sorted(tr[2].text_content() for tr in items)
    # payment-api (target 4): Dashboards L3 and L4 (Amber), Alerts L1 (Red) to L4 (Amber);
    # web (target 3): On-call at L3 has nothing open.
    assert counts["Assets"] == "2"
    assert counts["Assessed"] == "3" and counts["Not applicable"] == "1"
    assert counts["To assess"] == "2"
    assert counts["Open items"] == "6 (1 Red, 5 Amber)"
    assert counts["By owner"] == "Asset 5, SRE 1"
    assert tasks == ["Alerts → L1"]
    assert "Open go-live items (1)" in checkout.text_content()


def test_page_names_the_commit_and_the_time(assessed, run):
    run(assessed, "report")
    head = git(assessed, "rev-parse", "--short=12", "HEAD").strip()
    meta = lxml_html.fromstring(matrix_html(assessed)).find_class("meta")[0].text_content()
    assert f"from commit {head} " in meta
    assert re.match(r"Generated \d{4}-\d\d-\d\d \d\d:\d\d UTC", meta)


def test_page_outside_git_says_so(ready, run, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, _out, err = run(ready, "--no-commit", "report", "--output-dir", str(out_dir))
    assert code == 0, err
    assert (out_dir / "sre_matrix.html").exists() and not (ready / "sre_matrix.html").exists()
    (ready / ".git").rename(ready / "git.off")
    run(ready, "report")
    assert "from a folder without git history" in matrix_html(ready)


HOSTILE_FLOWS = FLOWS.replace("Checkout", '"Check<b>out</b> & ""co"""').replace(
    "payment-api", "<script>alert(1)</script>").replace("Payments", "Pay'ments\u202e")


def test_hostile_names_are_escaped_in_the_page(folder, run):
    (folder / "flows.csv").write_text(HOSTILE_FLOWS, encoding="utf-8")
    assert run(folder, "setup", "--from-csv")[0] == 0
    run(folder, "assess", "--asset", "<script>alert(1)</script>", "--capability", "Dashboards",
        "--level", "1")
    run(folder, "report")
    text = matrix_html(folder)
    structure(text)
    flows = sections(text)
    rows = heat_rows(flows['Check<b>out</b> & "co"'])
    assert "<script>" not in text and "<b>out" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script>alert(1)</script>" in rows
    assert "\u202e" not in text


def test_a_flow_with_nobody_assessed_and_an_empty_model_still_render():
    page = "".join(matrix_page.render([], [], [], trend={}, dates=["2026-01-01"],
                                      generated="now", commit=None))
    structure(page)
    assert "No flow is defined yet" in page


# ------------------------------------------------------------------------ the trend
def entry(asset: str, capability: str, flows: list[str], go_live: int) -> mt.MatrixRow:
    return mt.MatrixRow(asset, flows, "", "Cat", capability, mt.NOT_ASSESSED, None, 3, go_live,
                        None, 0, None, None, None, None, None)


def change(asset: str, capability: str, when: str, level: int | None,
           state: str = mt.ASSESSED, until: str = "") -> tuple:
    return (asset, capability, state, level, until, when)


def test_trend_is_the_share_of_go_live_capabilities_met_week_by_week():
    matrix = [entry("a", "Alerts", ["F"], 2), entry("a", "Docs", ["F"], 0),
              entry("b", "Alerts", ["F", "G"], 2), entry("c", "Alerts", ["H"], 2)]
    history = [
        change("a", "Alerts", "2026-01-02T10:00:00+00:00", 2),   # met in week 1
        change("a", "Docs", "2026-01-03", 5),                    # no go-live level: ignored
        change("b", "Alerts", "2026-01-09", 1),                  # not met
        change("zz", "Alerts", "2026-01-09", 5),                 # asset gone: ignored
        change("b", "Alerts", "2026-01-15", 3),                  # met in week 3
        change("a", "Alerts", "2026-01-22", None, mt.NOT_APPLICABLE, "2026-01-28"),
        change("b", "Alerts", "2026-02-20", 0),                  # after the last point
    ]
    dates = matrix_page.week_ends("2026-02-05", weeks=6)
    trend = matrix_page.go_live_trend(history, matrix, dates)
    assert dates == ["2026-01-01", "2026-01-08", "2026-01-15", "2026-01-22", "2026-01-29",
                     "2026-02-05"]
    # a's N/A (until 01-28) leaves it out on 01-22 only; it counts as not met afterwards.
    assert trend["F"] == [0.0, 0.5, 1.0, 1.0, 0.5, 0.5]
    assert trend["G"] == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    assert trend["H"] == [0.0] * 6  # nobody assessed: nothing met
    no_go_live = [entry("a", "Docs", ["F"], 0)]
    assert matrix_page.go_live_trend(history, no_go_live, dates) == {"F": [None] * 6}


def test_trend_line_is_inline_svg_with_a_text_equivalent(assessed, run):
    run(assessed, "report")
    checkout = sections(matrix_html(assessed))["Checkout"]
    svg = next(checkout.iter("svg"))
    points = svg.find("polyline").get("points").split()
    caption = next(checkout.iter("figcaption")).text_content()
    assert len(points) == matrix_page.TREND_WEEKS
    assert "Go-live capabilities met" in caption and "weekly" in caption
    assert svg.get("role") == "img" and "Checkout" in svg.get("aria-label")
    assert matrix_page.trend_svg([None, None], ["d1", "d2"], "F").startswith("<p")


# ------------------------------------------------------------------------ on Confluence
RULEBOOK_PAGE = ('<p>Read this before you assess.&nbsp;<ac:link><ri:user ri:account-id="42"/>'
                 '</ac:link></p><h2>SRE Maturity Model</h2><p>Kept by the tool:</p>'
                 '<table><tbody><tr><th><p>Term</p></th><th><p>Meaning</p></th></tr>'
                 '<tr><td><p>SLO</p></td><td><p>a target</p></td></tr></tbody></table>'
                 '<h2>Notes</h2><ac:structured-macro ac:name="code"><ac:plain-text-body>'
                 '<![CDATA[a < b && c]]></ac:plain-text-body></ac:structured-macro>')
MATRIX_PAGE = '<p>intro</p><p>Owner: SRE &copy; 2026</p>'
EMPTY_EXPORT = "Formatted ID,Schedule State\n"


@pytest.fixture(params=["cloud", "datacenter"])
def site(request, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A fake Confluence (both flavours) with a Rulebook page and a matrix page, their ids
    set; no to-do page. ``site.export`` is an empty Rally export for ``sync --from-csv``."""
    with FakeConfluence() as fake:
        fake.flavour = request.param
        fake.rulebook = fake.add_page("SRE Rulebook", RULEBOOK_PAGE, version=3)
        fake.matrix = fake.add_page("SRE Matrix", MATRIX_PAGE)
        settings = fake.settings(request.param)
        settings.update({"CONFLUENCE_RULEBOOK_PAGE_ID": fake.rulebook,
                         "CONFLUENCE_MATRIX_PAGE_ID": fake.matrix})
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        fake.export = tmp_path / "export.csv"
        fake.export.write_text(EMPTY_EXPORT, encoding="utf-8")
        yield fake


def our_table(body: str, title: str, signature: tuple[str, ...]):
    found = storage_page.locate(storage_page.load(body), title,
                                storage_page.has_columns(*signature))
    assert found.table is not None
    return found.table


def rows_of(table) -> list[list[str]]:
    return [[storage_page.text(c) for c in tr if storage_page.local(c) in ("td", "th")]
            for tr in table.iter("tr")]


def sent_bodies(site) -> list[str]:
    """The bodies of the PUTs sent (Cloud and Data Center nest them differently)."""
    return [(put["body"].get("storage") or put["body"])["value"] for put in site.puts()]


def sync(run, folder: Path, site) -> tuple[int, str, str]:
    return run(folder, "sync", "--from-csv", str(site.export))


def test_first_write_puts_both_tables_and_keeps_every_other_byte(assessed, run, site):
    code, out, err = sync(run, assessed, site)
    rulebook_body = site.body(site.rulebook)
    matrix_body = site.body(site.matrix)
    table = our_table(rulebook_body, "SRE Maturity Model", rulebook.SIGNATURE)
    cells = rows_of(table)
    matrix_rows = rows_of(our_table(matrix_body, "SRE Maturity Matrix", matrix_page.SIGNATURE))
    assert code == 0, err
    assert "'SRE Maturity Model' page updated to version 4 (table updated)" in out
    assert "'SRE Maturity Matrix' page updated to version 2 (table updated)" in out
    assert "Confluence page skipped: CONFLUENCE_PAGE_ID" in err  # the to-do page is not set
    # The tool's table goes right after the heading; every other byte is sent as it was.
    head, tail = RULEBOOK_PAGE.split("<p>Kept by the tool:</p>")
    sent = sent_bodies(site)
    assert sent[0].startswith(head + "<table>") and sent[0].endswith(
        "</table><p>Kept by the tool:</p>" + tail)
    assert sent[1].startswith(MATRIX_PAGE + "<h2>SRE Maturity Matrix</h2><table>")
    assert cells[0] == rulebook.COLUMNS and len(cells) == 16
    assert cells[1][:3] == ["Monitoring", "Dashboards", "L1"]
    assert matrix_body.startswith(MATRIX_PAGE + "<h2>SRE Maturity Matrix</h2><table")
    assert matrix_rows[0] == [*matrix_page.CONFLUENCE_COLUMNS, "Monitoring", "Alerting"]
    assert matrix_rows[1] == ["Checkout", "weakest link", "", "", "2* Amber", "0* Red"]
    assert ["Checkout", "payment-api", "Payments", "4", "2 Amber", "0 Red"] in matrix_rows
    assert ["Login", "auth", "Identity", "3", "–", "–"] in matrix_rows


def test_matrix_cells_carry_the_flavours_cell_highlight(assessed, run, site):
    sync(run, assessed, site)
    table = our_table(site.body(site.matrix), "SRE Maturity Matrix", matrix_page.SIGNATURE)
    by_text = {storage_page.text(td): dict(td.attrib) for td in table.iter("td")}
    highlights = matrix_page.HIGHLIGHTS[site.flavour]
    # What the fake stored is what was sent, as the flavour's editor stores a highlight.
    assert by_text["0* Red"] == highlights[mt.RED]
    assert by_text["2* Amber"] == highlights[mt.AMBER]
    assert by_text["3* Green"] == highlights[mt.GREEN]
    assert by_text["–"] == highlights[None]
    if site.flavour == "cloud":
        assert by_text["0* Red"] == {"data-highlight-colour": "#ffebe6"}
    else:
        assert by_text["0* Red"] == {"class": "highlight-red", "data-highlight-colour": "red"}


def test_unchanged_tables_make_no_version_and_a_change_makes_one(assessed, run, site):
    sync(run, assessed, site)
    puts = site.count("PUT")
    code, out, _err = sync(run, assessed, site)
    assert code == 0
    assert "'SRE Maturity Model' table already up to date (no new version)" in out
    assert "'SRE Maturity Matrix' table already up to date (no new version)" in out
    assert site.count("PUT") == puts
    assert (site.version(site.rulebook), site.version(site.matrix)) == (4, 2)

    run(assessed, "assess", "--asset", "auth", "--capability", "Dashboards", "--level", "4")
    code, out, _err = sync(run, assessed, site)
    matrix_rows = rows_of(our_table(site.body(site.matrix), "SRE Maturity Matrix",
                                    matrix_page.SIGNATURE))
    assert code == 0 and "'SRE Maturity Matrix' page updated to version 3" in out
    assert (site.version(site.rulebook), site.version(site.matrix)) == (4, 3)
    assert ["Login", "auth", "Identity", "3", "4 Green", "–"] in matrix_rows


def test_a_409_rereads_and_keeps_the_concurrent_edit(assessed, run, site):
    sync(run, assessed, site)
    run(assessed, "assess", "--asset", "web", "--capability", "Dashboards", "--level", "1")
    site.edit_before_put(site.matrix, lambda body: body.replace("<p>intro</p>",
                                                                "<p>intro, edited</p>"))
    code, out, err = sync(run, assessed, site)
    body = site.body(site.matrix)
    history = site.pages[site.matrix]["history"]
    assert code == 0, err
    assert "'SRE Maturity Matrix' page updated to version 4" in out
    assert body.startswith("<p>intro, edited</p><p>Owner: SRE &copy; 2026</p><h2>")
    assert [h["by"] for h in history] == ["seed", "api", "human", "api"]
    assert ["Checkout", "web", "Storefront", "3", "1 Red", "3* Green"] in rows_of(
        our_table(body, "SRE Maturity Matrix", matrix_page.SIGNATURE))


def test_report_push_keeps_the_pages_current_too(assessed, run, site, monkeypatch):
    with FakeRally() as fake:
        for name, value in (("RALLY_BASE_URL", fake.url), ("RALLY_API_KEY", fake.api_key),
                            ("RALLY_WORKSPACE_ID", fake.workspace_id),
                            ("RALLY_PROJECT_ID", fake.project_id), ("RALLY_PARENT_ID", "F1")):
            monkeypatch.setenv(name, value)
        code, out, err = run(assessed, "report", "--push")
    assert code == 0, err
    assert "'SRE Maturity Model' page updated" in out and "'SRE Maturity Matrix' page" in out
    assert site.version(site.matrix) == 2


def test_pages_without_credentials_are_skipped_with_a_notice(assessed, run, site,
                                                             monkeypatch):
    for name in ("CONFLUENCE_API_TOKEN", "CONFLUENCE_PAT"):
        monkeypatch.delenv(name, raising=False)
    code, _out, err = sync(run, assessed, site)
    assert code == 0
    assert "Confluence pages 'SRE Maturity Model', 'SRE Maturity Matrix' skipped:" in err
    assert site.count("PUT") == 0


def test_a_page_id_must_be_numeric_for_the_commands_that_use_it(assessed, run, site,
                                                                monkeypatch):
    monkeypatch.setenv("CONFLUENCE_MATRIX_PAGE_ID", "matrix")
    assert run(assessed, "report")[0] == 0  # offline: the setting is not used
    code, _out, err = sync(run, assessed, site)
    assert code == 1 and "CONFLUENCE_MATRIX_PAGE_ID must be a numeric id" in err


# ------------------------------------------------------------------------ escaping, any text
def page_for(asset: str, flow: str, team: str, category: str) -> str:
    entry = mt.MatrixRow(asset=asset, flows=[flow], team=team, category=category,
                         capability=category + " cap", state=mt.ASSESSED, level=2,
                         target_level=3, go_live_level=1, rag=mt.AMBER, open_items=1,
                         assessed_by=None, assessed_at=None, not_applicable_reason=None,
                         not_applicable_until=None, why=None)
    rollup = {"flow": flow, "category": category, "capability": category + " cap", "level": 2,
              "rag": mt.AMBER, "not_assessed": 0}
    item = {"asset": asset, "state": mt.OPEN, "go_live": True, "owner": team, "priority": "P1",
            "flows": flow, "capability": category + " cap", "level": 3, "milestone": team,
            "work_status": "Not Started", "rally_id": "", "why": asset, "criteria": flow}
    return "".join(matrix_page.render([entry], [rollup], [item], trend={flow: [0.5]},
                                      dates=["2026-01-01"], generated=team, commit=asset))


BIDI = dict.fromkeys(map(ord, "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"))
names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30).filter(
    lambda s: reports.clean_text(s).strip() != "")


@given(asset=names, flow=names, team=names, category=names)
@settings(max_examples=60)
def test_any_text_in_the_data_lands_in_the_page_as_text(asset, flow, team, category):
    page = page_for(asset, flow, team, category)
    checked = structure(page)
    assert not checked.tags & {"script", "img", "iframe", "object", "embed", "link", "base"}
    assert all(url.startswith("#") for url in checked.urls)
    section = next(iter(sections(page).values()))
    row_heads = [tr.find("th").text_content() for tr in section.iter("tr")
                 if tr.find("th") is not None and tr.find("th").get("scope") == "row"]

    def shown(text: str) -> str:  # what the page promises to show: the text, cleaned
        return reports.clean_text(text).translate(BIDI)

    assert section.find("h2").text_content() == shown(flow)
    assert row_heads == ["Weakest link", shown(asset)]


def test_a_cell_recoloured_by_hand_is_put_back(assessed, run, site):
    sync(run, assessed, site)
    red = matrix_page.HIGHLIGHTS[site.flavour][mt.RED]["data-highlight-colour"]
    green = matrix_page.HIGHLIGHTS[site.flavour][mt.GREEN]["data-highlight-colour"]
    site.human_edit(site.matrix, lambda body: body.replace(
        f'data-highlight-colour="{red}"', f'data-highlight-colour="{green}"'))
    code, out, _err = sync(run, assessed, site)
    assert code == 0 and "'SRE Maturity Matrix' page updated to version 4" in out
    assert f'data-highlight-colour="{red}"' in site.body(site.matrix)


def test_check_reads_both_pages_and_says_where_the_tables_go(assessed, run, site):
    code, out, _err = run(assessed, "check")
    assert ("ok    confluence: CONFLUENCE_RULEBOOK_PAGE_ID: page 'SRE Rulebook' v3, heading "
            "'SRE Maturity Model' has no table yet: the table will be added under it") in out
    assert ("ok    confluence: CONFLUENCE_MATRIX_PAGE_ID: page 'SRE Matrix' v1, heading "
            "'SRE Maturity Matrix' not found: heading and table will be appended") in out
    sync(run, assessed, site)
    site.hidden.add(site.matrix)
    code, out, _err = run(assessed, "check")
    assert "confluence: CONFLUENCE_RULEBOOK_PAGE_ID: page 'SRE Rulebook' v4, table " \
           "'SRE Maturity Model' found" in out
    assert code == 1 and "FAIL  confluence: CONFLUENCE_MATRIX_PAGE_ID: " in out


def test_check_names_what_the_pages_lack(assessed, run, site, monkeypatch):
    monkeypatch.delenv("CONFLUENCE_BASE_URL")
    code, out, _err = run(assessed, "check")
    assert code == 1
    assert "FAIL  confluence pages: CONFLUENCE_BASE_URL not set (needed by " \
           "CONFLUENCE_RULEBOOK_PAGE_ID, CONFLUENCE_MATRIX_PAGE_ID)" in out


# ------------------------------------------------------------------ people's work on the pages
def _add_column(body: str, title: str, signature: tuple[str, ...], header: str,
                cell: Callable[[int], str]) -> str:
    """``body`` with a column added at the end of our table, as a person would in the editor
    (a header cell, then ``cell(n)`` on data row n)."""
    found = storage_page.locate(storage_page.load(body), title,
                                storage_page.has_columns(*signature))
    table = body[found.start:found.end]
    rows = table.split("</tr>")
    rows[0] += f"<th><p>{header}</p></th>"
    rows[1:-1] = [r + cell(n) for n, r in enumerate(rows[1:-1], 1)]
    return body[:found.start] + "</tr>".join(rows) + body[found.end:]


def _colour(body: str, text: str, colour: str) -> str:
    """``body`` with the cell showing ``text`` highlighted ``colour`` (Cloud's form)."""
    return body.replace(f"<td><p>{text}</p></td>",
                        f'<td data-highlight-colour="{colour}"><p>{text}</p></td>', 1)


def test_a_persons_column_and_colours_survive_on_the_rulebook_and_the_matrix(assessed, run,
                                                                             site):
    sync(run, assessed, site)
    site.human_edit(site.rulebook, lambda b: _colour(_add_column(
        b, "SRE Maturity Model", rulebook.SIGNATURE, "Notes",
        lambda n: f"<td><p>note {n}</p></td>"), "Basic metrics are collected", "#deebff"))
    site.human_edit(site.matrix, lambda b: _colour(_add_column(
        b, "SRE Maturity Matrix", matrix_page.SIGNATURE, "Comments",
        lambda n: f"<td><p>comment {n}</p></td>"), "payment-api", "#deebff"))
    edited = {page: site.body(page) for page in (site.rulebook, site.matrix)}
    puts = site.count("PUT")

    code, out, err = sync(run, assessed, site)  # no data change: no write at all
    assert code == 0, err
    assert "'SRE Maturity Model' table already up to date (no new version)" in out
    assert "'SRE Maturity Matrix' table already up to date (no new version)" in out
    assert site.count("PUT") == puts
    assert {page: site.body(page) for page in edited} == edited

    # A change: the matrix table is rewritten, the person's column follows its rows and the
    # colour on a cell the tool does not colour stays; the Rulebook is left alone.
    run(assessed, "assess", "--asset", "payment-api", "--capability", "Dashboards", "--level",
        "4")
    code, out, err = sync(run, assessed, site)
    assert code == 0, err
    assert "'SRE Maturity Matrix' page updated" in out
    body = site.body(site.matrix)
    rows = rows_of(our_table(body, "SRE Maturity Matrix", matrix_page.SIGNATURE))
    assert rows[0][-1] == "Comments"
    payment = next(r for r in rows if r[:2] == ["Checkout", "payment-api"])
    before = rows_of(our_table(edited[site.matrix], "SRE Maturity Matrix",
                               matrix_page.SIGNATURE))
    assert payment[-1] == next(r for r in before if r[:2] == ["Checkout", "payment-api"])[-1]
    assert payment[4] == "4 Green"
    assert '<td data-highlight-colour="#deebff"><p>payment-api</p></td>' in body
    assert site.body(site.rulebook) == edited[site.rulebook]


def test_the_matrix_page_keeps_a_persons_row_drops_a_retired_assets_and_has_a_legend(
        assessed, run, site):
    sync(run, assessed, site)
    mine = "<tr><td><p>Later</p></td><td><p>new-svc</p></td></tr>"
    site.human_edit(site.matrix, lambda b: b.replace("</tbody></table>", mine
                                                     + "</tbody></table>"))
    flows = (assessed / "flows.csv").read_text(encoding="utf-8")
    (assessed / "flows.csv").write_text(flows.replace("Login,auth,Identity,3\n", ""),
                                        encoding="utf-8")
    assert run(assessed, "setup", "--from-csv")[0] == 0
    code, _out, err = sync(run, assessed, site)
    assert code == 0, err
    rows = rows_of(our_table(site.body(site.matrix), "SRE Maturity Matrix",
                             matrix_page.SIGNATURE))
    assert not any(r[1] == "auth" for r in rows)  # the tool's row of a retired asset goes
    assert rows[-1][:2] == ["Later", "new-svc"]  # a person's row stays, after the tool's
    legend = rows[-2]
    assert legend[0] == matrix_page.LEGEND_LABEL
    assert [r[0] for r in rows].count(matrix_page.LEGEND_LABEL) == 1
    assert "* some capabilities of the category still to assess" in legend[1]
    assert "– not assessed" in legend[1] and "n/a not applicable" in legend[1]


def test_kept_table_merge_keeps_colours_where_the_tool_has_no_opinion():
    from sre_maturity.render import kept_table
    old = ('<h2>T</h2><table data-layout="wide"><tbody><tr><th><p>Key</p></th>'
           '<th><p>Mine</p></th><th><p>Value</p></th><th><p>RAG</p></th></tr>'
           '<tr><td><p>a</p></td><td><p>x</p></td><td data-highlight-colour="#deebff">'
           '<p>1</p></td><td data-highlight-colour="#e3fcef"><p>G</p></td></tr>'
           '<tr><td><p>gone</p></td><td><p>y</p></td><td><p>2</p></td><td><p /></td></tr>'
           '<tr><td><p>theirs</p></td><td><p>z</p></td><td><p>3</p></td><td><p /></td></tr>'
           '</tbody></table>')
    fresh = ('<table><tbody><tr><th><p>Key</p></th><th><p>Value</p></th><th><p>RAG</p></th>'
             '<th><p>New</p></th></tr><tr><td><p>a</p></td><td><p>9</p></td>'
             '<td data-highlight-colour="#ffebe6"><p>R</p></td><td><p>n</p></td></tr>'
             '</tbody></table>')
    found = storage_page.locate(storage_page.load(old), "T", storage_page.has_columns("Key"))
    merged = kept_table.merge(found, fresh, ("Key",), known={("gone",)})
    assert merged == (
        '<table data-layout="wide"><tbody><tr><th><p>Key</p></th><th><p>Mine</p></th>'
        '<th><p>Value</p></th><th><p>RAG</p></th><th><p>New</p></th></tr>'
        '<tr><td><p>a</p></td><td><p>x</p></td><td data-highlight-colour="#deebff"><p>9</p>'
        '</td><td data-highlight-colour="#ffebe6"><p>R</p></td><td><p>n</p></td></tr>'
        '<tr><td><p>theirs</p></td><td><p>z</p></td><td><p>3</p></td><td><p /></td>'
        '<td><p /></td></tr></tbody></table>')


def test_kept_table_merge_drops_a_column_the_tool_no_longer_writes():
    from sre_maturity.render import kept_table
    old = ('<h2>T</h2><table><colgroup><col /><col /><col /></colgroup><tbody>'
           '<tr><th><p>Key</p></th><th><p>Old category</p></th><th><p>Mine</p></th></tr>'
           '<tr><td><p>a</p></td><td><p>1</p></td><td><p>x</p></td></tr></tbody></table>')
    fresh = '<table><tbody><tr><th><p>Key</p></th></tr><tr><td><p>a</p></td></tr></tbody></table>'
    found = storage_page.locate(storage_page.load(old), "T", storage_page.has_columns("Key"))
    # Without knowing the column was the tool's, it is a person's and stays.
    assert "Old category" in kept_table.merge(found, fresh, ("Key",))
    assert kept_table.merge(found, fresh, ("Key",), known_columns={"old category"}) == (
        '<table><tbody><tr><th><p>Key</p></th><th><p>Mine</p></th></tr>'
        '<tr><td><p>a</p></td><td><p>x</p></td></tr></tbody></table>')

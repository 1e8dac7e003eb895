"""A to-do list larger than a page (SPEC §11): the split into parts, the part files, the
child pages on the fake Confluence (both flavours) and the index on the main page."""

from __future__ import annotations

from pathlib import Path

import pytest

from fake_confluence import FakeConfluence
from sre_maturity.render import storage_format, todo_parts

TITLE = "SRE Action Items"
MAIN = ("<p>Our SRE to-do list.</p><h2>SRE Action Items</h2>"
        "<p>Owners: see below.</p><h2>Notes</h2><p>keep me</p>")


@pytest.fixture
def many(gaps: Path, run) -> Path:
    """Six open items: web On-call L2, L3 and payment-api Alerts L3, L4 (flow Checkout: web is
    in Checkout and Login, and goes with the first by name), auth Dashboards L2, L3 (Login)."""
    for asset, capability, level in (("payment-api", "Alerts", "2"),
                                     ("auth", "Dashboards", "1")):
        code, _out, err = run(gaps, "assess", "--asset", asset, "--capability", capability,
                              "--level", level)
        assert code == 0, err
    return gaps


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of two rows: the bound the split obeys, made small enough for six items."""
    monkeypatch.setattr(todo_parts, "PAGE_ROWS", 2)


def part_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if todo_parts.is_part_file(p.name))


# ---------------------------------------------------------------------------- the split
def test_split_cuts_a_flow_at_the_byte_bound_and_keeps_flows_apart(monkeypatch):
    monkeypatch.setattr(todo_parts, "PAGE_BYTES", 100)
    items = [{"asset": a, "state": s, "go_live": g}
             for a, s, g in (("a", "open", True), ("a", "open", False), ("a", "done", True),
                             ("b", "open", True))]
    parts = list(todo_parts.split(items, {"a": "Checkout", "b": "Login"},
                                  lambda it: (it["asset"], 40), order=lambda it: 0))
    assert [(p.name, p.entries, p.open, p.red, p.amber) for p in parts] == [
        ("Checkout (part 1)", ["a", "a"], 2, 1, 1),  # an asset too large for a page alone
        ("Checkout (part 2)", ["a"], 0, 0, 0),  # awaiting re-assessment: not open
        ("Login", ["b"], 1, 1, 0)]


def test_split_keeps_an_assets_rows_on_one_page_in_table_order(monkeypatch):
    monkeypatch.setattr(todo_parts, "PAGE_ROWS", 3)

    def parts(rows: list[tuple[str, int]]) -> list[tuple[str, list[str]]]:
        items = [{"asset": a, "rank": r, "state": "open", "go_live": True} for a, r in rows]
        return [(p.name, p.entries) for p in todo_parts.split(
            items, {"a": "Checkout", "b": "Checkout", "c": "Checkout"},
            lambda it: (f"{it['asset']}{it['rank']}", 10), order=lambda it: it["rank"])]

    assert parts([("a", 2), ("a", 5), ("b", 1), ("b", 4), ("c", 3)]) == [
        ("Checkout (part 1)", ["a2", "a5"]), ("Checkout (part 2)", ["b1", "c3", "b4"])]
    # a's new row changes a's part only
    assert parts([("a", 2), ("a", 5), ("a", 6), ("b", 1), ("b", 4), ("c", 3)]) == [
        ("Checkout (part 1)", ["a2", "a5", "a6"]), ("Checkout (part 2)", ["b1", "c3", "b4"])]


def test_needs_split_measures_only_a_list_short_enough_to_hold(monkeypatch):
    monkeypatch.setattr(todo_parts, "PAGE_ROWS", 10)

    def never() -> int:
        raise AssertionError("measured")

    assert todo_parts.needs_split(11, never)
    assert todo_parts.needs_split(10, lambda: todo_parts.PAGE_BYTES + 1)
    assert not todo_parts.needs_split(10, lambda: todo_parts.PAGE_BYTES)


def test_file_names_say_which_part_and_are_safe():
    assert todo_parts.file_stem(3, "Check/out (part 2)") == "confluence_page.03-check-out-part-2"
    assert todo_parts.file_stem(1, "ß…") == "confluence_page.01-ss"
    assert todo_parts.file_stem(12, "…") == "confluence_page.12-part"
    assert todo_parts.is_part_file("confluence_page.03-check-out-part-2.html")
    assert not todo_parts.is_part_file("confluence_page.html")
    assert not todo_parts.is_part_file("confluence_page.notes.txt")


# ---------------------------------------------------------------------------- offline
def test_a_list_that_fits_stays_one_page(many: Path, run):
    code, out, err = run(many, "report")
    assert code == 0, err
    assert part_files(many) == []
    assert "confluence_page.txt: 6 rows for Confluence Data Center / Server; " in out
    assert len(storage_format.table_rows(
        "<h2>SRE Action Items</h2>" + (many / "confluence_page.html").read_text(), TITLE)) == 6


def test_a_short_list_over_the_byte_bound_is_split_by_asset_too(many: Path, run, monkeypatch):
    monkeypatch.setattr(todo_parts, "PAGE_BYTES", 1200)  # two rows a page, measured
    code, _out, err = run(many, "report")
    assert code == 0, err
    assert [n for n in part_files(many) if n.endswith(".html")] == [
        "confluence_page.01-checkout-part-1.html", "confluence_page.02-checkout-part-2.html",
        "confluence_page.03-login.html"]
    rows = storage_format.table_rows(
        "<h2>SRE Action Items</h2>" + (many / "confluence_page.01-checkout-part-1.html")
        .read_text(), TITLE)
    assert {r["Asset Name"] for r in rows} == {"payment-api"}


def test_report_writes_one_file_pair_per_part_and_an_index(many: Path, run, small_pages):
    code, out, err = run(many, "report")
    assert code == 0, err
    assert part_files(many) == [
        "confluence_page.01-checkout-part-1.html", "confluence_page.01-checkout-part-1.txt",
        "confluence_page.02-checkout-part-2.html", "confluence_page.02-checkout-part-2.txt",
        "confluence_page.03-login.html", "confluence_page.03-login.txt"]
    assert "an index of 3 parts" in out and "confluence_page.01-checkout-part-1.txt" in out
    index = (many / "confluence_page.txt").read_text()
    assert "||Part||Open||Red||Amber||Page||" in index
    assert ("|Checkout \\(part 1\\)|2|0|2|[SRE Action Items – Checkout (part 1)] "
            "\\(paste confluence\\_page.01\\-checkout\\-part\\-1.txt\\)|") in index
    login = (many / "confluence_page.03-login.txt").read_text()
    assert login.startswith("h2. SRE Action Items\n")
    assert "Paste into the page 'SRE Action Items – Login'" in login
    assert login.count("|auth|") == 2 and "|web|" not in login
    rows = storage_format.table_rows(
        "<h2>SRE Action Items</h2>" + (many / "confluence_page.02-checkout-part-2.html")
        .read_text(), TITLE)
    assert [(r["Asset Name"], r["Task"]) for r in rows] == [  # part 1: payment-api's
        ("web", "On-call → L2"), ("web", "On-call → L3")]
    html_index = (many / "confluence_page.html").read_text()
    assert 'ri:content-title="SRE Action Items – Login"' in html_index


def test_stale_part_files_go_when_the_list_fits_again(many: Path, run, small_pages,
                                                      monkeypatch):
    run(many, "report")
    (many / "confluence_page.notes.txt").write_text("mine")
    monkeypatch.setattr(todo_parts, "PAGE_ROWS", 2000)
    code, _out, err = run(many, "report")
    assert code == 0, err
    assert part_files(many) == [] and (many / "confluence_page.notes.txt").exists()


def test_part_files_are_ignored_by_git_in_the_data_folder(many: Path, run, small_pages):
    from conftest import git
    run(many, "report")
    assert git(many, "status", "--porcelain", "--untracked-files=all").strip() == ""


# ---------------------------------------------------------------------------- on Confluence
@pytest.fixture(params=["cloud", "datacenter"])
def wiki(request, monkeypatch: pytest.MonkeyPatch):
    with FakeConfluence() as fake:
        fake.page_id = fake.add_page("SRE maturity", MAIN, version=3)
        fake.flavour = request.param
        for name, value in {**fake.settings(request.param),
                            "CONFLUENCE_PAGE_ID": fake.page_id}.items():
            monkeypatch.setenv(name, value)
        yield fake


def push(run, folder: Path, tmp_path: Path) -> tuple[int, str, str]:
    export = tmp_path / "export.csv"
    export.write_text("Formatted ID,Name,Schedule State,Notes\n", encoding="utf-8")
    return run(folder, "sync", "--from-csv", str(export))


def tasks(fake: FakeConfluence, page_id: str) -> list[tuple[str, str]]:
    return [(r["Asset Name"], r["Task"])
            for r in storage_format.table_rows(fake.body(page_id), TITLE) or []]


def index_of(fake: FakeConfluence) -> list[list[str]]:
    from sre_maturity.render import storage_page as sp
    page = sp.load(fake.body(fake.page_id))
    found = sp.locate(page, TITLE, todo_parts.either_is_ours)
    assert found.table is not None
    return [sp.cell_texts([page.markup(td) for td in tr.iterchildren()])
            for tr in found.table.iter("{*}tr")]


def test_push_creates_the_child_pages_and_the_index(many: Path, run, wiki, small_pages,
                                                    tmp_path):
    code, out, err = push(run, many, tmp_path)
    # Two creates are under way at once (push.CREATES_IN_FLIGHT): neighbours may be made in
    # either order; the index below gives the parts' order.
    kids = {k["title"]: k for k in wiki.children(wiki.page_id)}
    assert code == 0, err
    assert sorted(kids) == [
        "SRE Action Items – Checkout (part 1)", "SRE Action Items – Checkout (part 2)",
        "SRE Action Items – Login"]
    assert tasks(wiki, kids["SRE Action Items – Login"]["id"]) == [
        ("auth", "Dashboards → L2"), ("auth", "Dashboards → L3")]
    assert index_of(wiki) == [["Part", "Open", "Red", "Amber", "Page"],
                              ["Checkout (part 1)", "2", "0", "2", ""],  # payment-api
                              ["Checkout (part 2)", "2", "2", "0", ""],  # web
                              ["Login", "2", "1", "1", ""]]
    body = wiki.body(wiki.page_id)
    assert 'ri:content-title="SRE Action Items – Login"' in body
    assert body.startswith("<p>Our SRE to-do list.</p><h2>SRE Action Items</h2>")
    assert body.endswith("<h2>Notes</h2><p>keep me</p>")
    assert "3 child pages (3 created, 0 updated, 0 already up to date)" in out
    assert len(wiki.creates()) == 3


def test_a_second_push_with_nothing_new_writes_nothing(many: Path, run, wiki, small_pages,
                                                       tmp_path):
    push(run, many, tmp_path)
    posts, puts = wiki.count("POST"), wiki.count("PUT")
    code, out, _err = push(run, many, tmp_path)
    assert code == 0
    assert (wiki.count("POST"), wiki.count("PUT")) == (posts, puts)
    assert "(0 created, 0 updated, 3 already up to date); index already up to date" in out


def test_a_changed_row_updates_only_its_part_and_keeps_a_persons_column(
        many: Path, run, wiki, small_pages, tmp_path):
    push(run, many, tmp_path)
    login = wiki.page_by_title("SRE Action Items – Login")

    def add_comments(body: str) -> str:
        body = body.replace("<th><p>Category</p></th>", "<th><p>Category</p></th>"
                            "<th><p>Comments</p></th>", 1)
        return body.replace("</td></tr>", "</td><td><p>ask Ana</p></td></tr>")

    wiki.human_edit(login["id"], add_comments)
    wiki.edit_before_put(login["id"], lambda b: b.replace("Our", "Our"))  # a 409 once
    run(many, "assess", "--asset", "auth", "--capability", "Dashboards", "--level", "2")
    puts = wiki.count("PUT")
    code, out, err = push(run, many, tmp_path)
    rows = storage_format.table_rows(wiki.body(login["id"]), TITLE)
    assert code == 0, err
    assert [(r["Task"], r["Comments"]) for r in rows] == [("Dashboards → L3", "ask Ana")]
    assert "page 'SRE Action Items – Login' updated" in out
    # the Login page (409 once, then again) and the index's counts: nothing else
    assert wiki.count("PUT") - puts == 3
    assert index_of(wiki)[-1][:4] == ["Login", "1", "0", "1"]


def test_a_part_page_made_by_hand_under_the_main_page_is_taken_not_doubled(
        many: Path, run, wiki, small_pages, tmp_path):
    by_hand = wiki.add_page("SRE Action Items – Login", "<p>made by Ana</p>",
                            parent_id=wiki.page_id)
    code, _out, err = push(run, many, tmp_path)
    assert code == 0, err
    assert len(wiki.children(wiki.page_id)) == 3 and len(wiki.creates()) == 2
    assert wiki.body(by_hand).startswith("<p>made by Ana</p><h2>SRE Action Items</h2>")


def test_a_taken_title_elsewhere_in_the_space_is_one_clear_line(many: Path, run, wiki,
                                                                small_pages, tmp_path):
    other = wiki.add_page("SRE Action Items – Login", "<p>another team</p>", parent_id="1")
    code, _out, err = push(run, many, tmp_path)
    assert code == 3
    assert f"already exists elsewhere in the space (page {other})" in err
    assert f"move it under page {wiki.page_id}" in err and len(err.strip().splitlines()) == 1
    assert wiki.body(other) == "<p>another team</p>"


def test_a_create_refused_while_another_is_under_way_is_finished_by_the_next_run(
        many: Path, run, wiki, small_pages, tmp_path):
    """Two creates are under way at once (push.CREATES_IN_FLIGHT); one refused by the rate
    limit stops the run with one line and exit 3, the other still lands, and a re-run makes
    what is missing: every part once, never twice."""
    wiki.fail_next(1, status=429, retry_after=0, method="POST")
    code, _out, err = push(run, many, tmp_path)
    assert code == 3 and len(err.strip().splitlines()) == 1 and "429" in err
    made = len(wiki.children(wiki.page_id))
    assert made < 3
    code, out, err = push(run, many, tmp_path)
    assert code == 0, err
    assert sorted(k["title"] for k in wiki.children(wiki.page_id)) == [
        "SRE Action Items – Checkout (part 1)", "SRE Action Items – Checkout (part 2)",
        "SRE Action Items – Login"]
    assert f"({3 - made} created" in out  # and none twice: the three titles above, once each


def test_children_are_found_through_every_page_of_the_listing(many: Path, run, wiki,
                                                              small_pages, tmp_path):
    push(run, many, tmp_path)
    wiki.page_limit = 1
    code, _out, err = push(run, many, tmp_path)
    assert code == 0, err
    assert len(wiki.children(wiki.page_id)) == 3 and len(wiki.creates()) == 3


def test_back_to_one_page_the_index_becomes_the_table_and_children_empty(
        many: Path, run, wiki, small_pages, tmp_path, monkeypatch):
    push(run, many, tmp_path)
    monkeypatch.setattr(todo_parts, "PAGE_ROWS", 2000)
    code, out, err = push(run, many, tmp_path)
    assert code == 0, err
    assert len(tasks(wiki, wiki.page_id)) == 6
    assert "fits one page again" in out
    for kid in wiki.children(wiki.page_id):
        assert tasks(wiki, kid["id"]) == []
    puts = wiki.count("PUT")
    push(run, many, tmp_path)
    assert wiki.count("PUT") == puts


def test_a_flow_that_left_empties_its_page(many: Path, run, wiki, small_pages, tmp_path):
    push(run, many, tmp_path)
    flows = (many / "flows.csv").read_text().replace("Login,auth,Identity,3\n", "")
    (many / "flows.csv").write_text(flows)
    code, _out, err = run(many, "setup", "--from-csv")
    assert code == 0, err
    code, out, err = push(run, many, tmp_path)
    login = wiki.page_by_title("SRE Action Items – Login")
    assert code == 0, err
    assert tasks(wiki, login["id"]) == [] and "holds no part now" in out
    assert [r[0] for r in index_of(wiki)] == ["Part", "Checkout (part 1)", "Checkout (part 2)"]


def body_reads(fake: FakeConfluence, page_ids: set[str]) -> int:
    """GETs of these pages that asked for the body (v2 body-format, v1 expand=body.storage)."""
    return sum(1 for m, p, q, _b in fake.requests
               if m == "GET" and p.rsplit("/", 1)[-1] in page_ids
               and ("body-format" in q or "body.storage" in q.get("expand", "")))


def test_an_unchanged_part_page_is_not_read_in_full(many: Path, run, wiki, small_pages,
                                                    tmp_path):
    push(run, many, tmp_path)
    kids = {k["id"] for k in wiki.children(wiki.page_id)}
    before = body_reads(wiki, kids)
    push(run, many, tmp_path)
    assert body_reads(wiki, kids) == before


def test_a_run_with_nothing_new_makes_only_a_few_small_reads(many: Path, run, wiki,
                                                             small_pages, tmp_path):
    """However many parts: the main page, the listing of its children and (Cloud, whose
    listing has no versions) their versions by id; no part page is read on its own."""
    push(run, many, tmp_path)
    before = len(wiki.requests)
    code, out, err = push(run, many, tmp_path)
    assert code == 0, err
    asked = [(m, p) for m, p, _q, _b in wiki.requests[before:]]
    main, kids = wiki.page_id, [k["id"] for k in wiki.children(wiki.page_id)]
    if wiki.flavour == "cloud":
        assert asked == [("GET", f"/wiki/api/v2/pages/{main}"),
                         ("GET", f"/wiki/api/v2/pages/{main}/children"),
                         ("GET", "/wiki/api/v2/pages")]
        assert wiki.requests[-1][2]["id"] == ",".join(kids)
    else:
        assert asked == [("GET", f"/rest/api/content/{main}"),
                         ("GET", f"/rest/api/content/{main}/child/page")]
    assert "(0 created, 0 updated, 3 already up to date)" in out


def test_without_the_memo_a_page_is_read_once_and_its_fingerprint_kept(
        many: Path, run, wiki, small_pages, tmp_path):
    push(run, many, tmp_path)
    (many / ".sre-tracker.pages.json").unlink()
    kids = {k["id"] for k in wiki.children(wiki.page_id)}
    before, puts = body_reads(wiki, kids), wiki.count("PUT")
    code, _out, err = push(run, many, tmp_path)
    assert code == 0, err
    assert body_reads(wiki, kids) == before + 3 and wiki.count("PUT") == puts
    push(run, many, tmp_path)
    assert body_reads(wiki, kids) == before + 3


def test_a_persons_edit_of_a_part_page_is_read_and_the_tools_cells_restored(
        many: Path, run, wiki, small_pages, tmp_path):
    push(run, many, tmp_path)
    login = wiki.page_by_title("SRE Action Items – Login")
    wiki.human_edit(login["id"], lambda b: b.replace(">Not Started<", ">Done<", 1))
    code, _out, err = push(run, many, tmp_path)
    assert code == 0, err
    rows = storage_format.table_rows(wiki.body(login["id"]), TITLE)
    assert [r["Status"] for r in rows] == ["Not Started", "Not Started"]
    message = wiki.pages[login["id"]]["message"]
    assert message.startswith("sre-tracker: ") and "[sre-rows:" in message
    # the fingerprint in the message spares the next run the read, memo or not
    (many / ".sre-tracker.pages.json").unlink()
    before = body_reads(wiki, {login["id"]})
    push(run, many, tmp_path)
    assert body_reads(wiki, {login["id"]}) == before


# ---------------------------------------------------------------------------- sre_matrix.html
def test_a_large_matrix_is_an_overview_and_one_self_contained_file_per_flow(
        many: Path, run, monkeypatch):
    import re

    from sre_maturity.render import matrix_page
    run(many, "report")
    one = (many / "sre_matrix.html").read_text()
    monkeypatch.setattr(matrix_page, "MATRIX_BYTES", 1000)
    code, out, err = run(many, "report")
    assert code == 0, err
    files = sorted(p.name for p in many.glob("sre_matrix.*.html"))
    assert files == ["sre_matrix.01-checkout.html", "sre_matrix.02-login.html"]
    assert "each flow's heatmap in a file of its own (sre_matrix.01-checkout.html" in out
    main = (many / "sre_matrix.html").read_text()
    assert '<a href="sre_matrix.02-login.html">Login</a>' in main
    assert '<section class="flow"' not in main and "Flows at a glance" in main
    login = (many / "sre_matrix.02-login.html").read_text()
    assert login.startswith("<!DOCTYPE html>") and login.endswith("</html>\n")
    assert "<title>SRE maturity matrix: Login</title>" in login
    assert '<a href="sre_matrix.html">All flows' in login
    assert login.count('<section class="flow"') == 1 and ">auth</th>" in login
    for text in (main, login):
        assert "<script" not in text and not re.search(r'(src|href)="(https?:)?//', text)
    # the flow's section is the same as in the one-file page
    section = re.search(r'<section class="flow".*?</section>', login, re.S).group(0)
    assert section.replace('id="flow-2"', "") in one.replace('id="flow-2"', "")
    monkeypatch.setattr(matrix_page, "MATRIX_BYTES", 4 * 1024 * 1024)
    run(many, "report")
    assert sorted(p.name for p in many.glob("sre_matrix.*.html")) == []
    assert (many / "sre_matrix.html").read_text().count('<section class="flow"') == 2


def test_check_recognises_the_index_of_a_split_list(many: Path, run, wiki, small_pages,
                                                    tmp_path):
    push(run, many, tmp_path)
    code, out, err = run(many, "check")
    assert "index of the split to-do list under 'SRE Action Items': 3 parts on child pages" \
        in out, out + err

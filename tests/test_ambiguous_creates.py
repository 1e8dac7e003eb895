"""Creates whose answer is lost (gateway 5xx after the work, dropped connection, timeout) are
looked up by item key before anything is created again: one story per item, whatever happens."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from database import Database
from fake_rally import FakeRally
from sre_maturity.clients.rally import RallyClient
from sre_maturity.render import stories

CAPS = ("Dashboards", "Alerts", "On-call")  # the conftest model: five levels each


@pytest.fixture
def fake():
    with FakeRally() as server:
        yield server


def client(fake: FakeRally, **kw) -> RallyClient:
    options = {"timeout": 2.0, "retries": 2, "backoff": 0.01, "max_retry_after": 0.5}
    options.update(kw)
    return RallyClient(fake.url, fake.api_key, fake.workspace_id, fake.project_id, **options)


def payload(fake: FakeRally, tag: str, n: int) -> dict:
    return {"Name": f"story {n}", "Notes": f"<p>{stories.KEY_MARKER} asset-{n} / Alerts / 1</p>",
            "PortfolioItem": fake.feature_ref, "Project": fake.project_ref,
            "Tags": [{"_ref": tag}]}


def lookup(fake: FakeRally, rc: RallyClient, payloads: list[dict]):
    def find(indices: list[int]) -> dict[int, dict]:
        by_key = {stories.key_from_text(s.get("Notes")): s
                  for s in rc.fetch_stories("SRE-Maturity", fake.feature_ref,
                                            ["Name", "Notes"])}
        keys = {i: stories.key_from_text(payloads[i]["Notes"]) for i in indices}
        return {i: by_key[k] for i, k in keys.items() if k in by_key}
    return find


@pytest.mark.parametrize("fault", [{"status": 504}, {"status": 502}, {"status": 500},
                                   {"status": None}], ids=["504", "502", "500", "dropped"])
def test_lost_answer_to_a_batch_is_looked_up_not_repeated(fake, fault):
    with client(fake) as rc:
        tag = rc.ensure_tag("SRE-Maturity")
        sent = [payload(fake, tag, n) for n in range(5)]
        fake.serve_then_fail(1, path_contains="batch", **fault)
        seen = []
        results = rc.create_stories(sent, chunk_size=3, on_created=lambda i, o: seen.append(i),
                                    find_existing=lookup(fake, rc, sent))
    assert [r["ok"] for r in results] == [True] * 5
    assert [r["adopted"] for r in results] == [True, True, True, False, False]
    assert sorted(seen) == [0, 1, 2, 3, 4]
    assert fake.count("POST", "/batch") == 2  # the lost one was never sent again
    assert len(fake.stories_tagged("SRE-Maturity")) == 5


def test_timed_out_create_is_looked_up(fake):
    with client(fake, timeout=0.3) as rc:
        tag = rc.ensure_tag("SRE-Maturity")
        sent = [payload(fake, tag, n) for n in range(2)]
        fake.serve_then_fail(1, status=200, delay=0.6, path_contains="batch")
        results = rc.create_stories(sent, find_existing=lookup(fake, rc, sent))
    assert [r["ok"] for r in results] == [True, True]
    assert fake.count("POST", "/batch") == 1
    assert len(fake.stories_tagged("SRE-Maturity")) == 2


def test_gateway_failure_before_rally_worked_creates_what_is_missing(fake):
    with client(fake) as rc:
        tag = rc.ensure_tag("SRE-Maturity")
        sent = [payload(fake, tag, n) for n in range(3)]
        fake.fail_next(1, status=504, path_contains="batch")  # Rally never saw it
        results = rc.create_stories(sent, find_existing=lookup(fake, rc, sent))
    assert [(r["ok"], r["adopted"]) for r in results] == [(True, False)] * 3
    assert fake.count("POST", "/batch") == 2
    assert len(fake.stories_tagged("SRE-Maturity")) == 3


def test_single_creates_are_looked_up_too(fake):
    fake.disable_batch = True
    with client(fake) as rc:
        tag = rc.ensure_tag("SRE-Maturity")
        sent = [payload(fake, tag, n) for n in range(3)]
        fake.serve_then_fail(1, status=504, path_contains="hierarchicalrequirement/create")
        results = rc.create_stories(sent, find_existing=lookup(fake, rc, sent))
    assert [r["ok"] for r in results] == [True] * 3
    assert fake.count("POST", "/hierarchicalrequirement/create") == 3
    assert len(fake.stories_tagged("SRE-Maturity")) == 3


def test_a_429_to_a_create_is_still_retried(fake, sleeps):
    with client(fake) as rc:
        tag = rc.ensure_tag("SRE-Maturity")
        fake.fail_next(1, status=429, retry_after="0.1", path_contains="batch")
        results = rc.create_stories([payload(fake, tag, 0)])
    assert results[0]["ok"] and not results[0]["adopted"]
    assert fake.count("POST", "/batch") == 2 and sleeps == [0.1]


def test_persistent_gateway_gives_up_after_the_lookups_without_duplicates(fake):
    with client(fake, retries=1) as rc:
        tag = rc.ensure_tag("SRE-Maturity")
        sent = [payload(fake, tag, n) for n in range(4)]
        fake.fail_next(5, status=504, path_contains="batch")
        results = rc.create_stories(sent, chunk_size=2,
                                    find_existing=lookup(fake, rc, sent))
    assert [r["ok"] for r in results] == [False] * 4
    assert "outcome unknown" in results[0]["error"]
    assert results[2]["error"].startswith("not attempted:")
    assert fake.count("POST", "/batch") == 2 and not fake.stories_tagged("SRE-Maturity")


def test_failed_lookup_is_reported(fake):
    with client(fake, retries=1) as rc:
        tag = rc.ensure_tag("SRE-Maturity")
        sent = [payload(fake, tag, 0)]
        fake.serve_then_fail(1, status=504, path_contains="batch")
        fake.fail_next(5, status=503, path_contains="hierarchicalrequirement")
        results = rc.create_stories(sent, find_existing=lookup(fake, rc, sent))
    assert not results[0]["ok"]
    assert "looking the stories up failed too" in results[0]["error"]
    assert len(fake.stories_tagged("SRE-Maturity")) == 1  # made once; the next run adopts it


@pytest.mark.parametrize("notes", [
    "sre-tracker item: web / On-call / 2",
    "<p>sre-tracker item: web / On-call / 2</p>",
    "<div><span style=\"color:#000\">sre-tracker&nbsp;item:</span> <b>web</b> / On-call / 2"
    "<br />Reopened by jdoe</div>",
    "<p>Earlier notes</p>\n<p>sre-tracker item: web / On-call / 2</p>",
    "<p>SRE-Tracker Item:   web / On-call / 2 </p><p>more</p>",
])
def test_the_key_is_read_from_rich_text_notes(notes):
    assert stories.key_from_text(notes) == "web / On-call / 2"


def test_key_with_markup_characters_survives_rally_escaping():
    notes = stories.story_notes("R&D <api> / A & B / 3")
    assert stories.key_from_text(f"<p>{notes}</p>") == "R&D <api> / A & B / 3"
    assert stories.key_from_text(notes) == "R&D <api> / A & B / 3"


# ------------------------------------------------------------------ through the CLI
def _many_assets(folder: Path, names: list[str]) -> None:
    lines = ["Flow,Asset Name,Team,Target Level"] + [f"Bulk,{a},Team,5" for a in names]
    (folder / "flows.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = ["Asset Name,Capability,Level"] + [f"{a},{c},0" for a in names for c in CAPS]
    (folder / "assessments.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")


@pytest.mark.parametrize("fault", [{"status": 504}, {"status": 502}, {"status": None},
                                   {"status": 200}],
                         ids=["504", "502", "dropped", "200-proxy-page"])
def test_500_then_600_items_with_a_lost_answer_gives_one_story_per_item(folder, run, rally,
                                                                        fault):
    names = [f"svc-{n:02d}" for n in range(40)]  # 15 items each (levels 1-5 of 3 capabilities)
    _many_assets(folder, names[:34])  # 510 items
    assert run(folder, "setup", "--from-csv")[0] == 0
    code, out, err = run(folder, "report", "--push", "--include-amber")
    assert code == 0, err
    assert "510 stories created" in out
    _many_assets(folder, names)  # 600 items: 90 new ones
    assert run(folder, "setup", "--from-csv")[0] == 0
    rally.serve_then_fail(1, path_contains="batch", **fault)
    code, out, err = run(folder, "report", "--push", "--include-amber")
    assert code == 0, err
    assert "90 stories created, 0 existing stories adopted, 0 failed" in out
    keys = Counter(stories.key_from_text(s["Notes"]) for s in rally.stories_tagged("SRE-Maturity"))
    assert len(keys) == 600 and set(keys.values()) == {1}
    with Database(folder / "sre_data.db") as db:
        stored = {it["key"]: it["rally_oid"] for it in db.load_items()}
    assert len(stored) == 600 and all(stored.values())
    assert set(keys) == set(stored)
    # A re-run finds every story and creates nothing.
    code, out, _err = run(folder, "report", "--push", "--include-amber")
    assert code == 0 and "0 stories created" in out
    assert len(rally.stories_tagged("SRE-Maturity")) == 600

"""The Rally client against the fake WSAPI server (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import logging
import math
import socket

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from fake_rally import PARENT_AND_PI, FakeRally, QueryError, parse_query
from sre_maturity.clients.http_retry import CappedRetry
from sre_maturity.clients.rally import RallyClient, quote_query_value, short_ref, story_url
from sre_maturity.support.errors import RallyError

FIELDS = ["Name", "ScheduleState", "Notes"]


@pytest.fixture
def fake():
    with FakeRally() as server:
        yield server


def make_client(fake: FakeRally, **kw) -> RallyClient:
    options = {"timeout": 2.0, "retries": 2, "backoff": 0.01, "max_retry_after": 0.5}
    options.update(kw)
    key = options.pop("api_key", fake.api_key)
    return RallyClient(fake.url, key, fake.workspace_id, fake.project_id, **options)


@pytest.fixture
def client(fake):
    with make_client(fake) as rc:
        yield rc


def story(fake: FakeRally, tag_ref: str, n: int = 0, **extra) -> dict:
    fields = {"Name": f"[SRE] asset-{n} – Alerts L{n}", "Description": "<p>criteria</p>",
              "Notes": f"sre-tracker key: asset-{n} / Alerts / {n}",
              "PortfolioItem": fake.feature_ref, "Project": fake.project_ref,
              "Tags": [{"_ref": tag_ref}]}
    fields.update(extra)
    return fields


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- authentication and settings -----------------------------------------------------------

def test_current_user_returns_user_name(client):
    assert client.current_user() == {"UserName": "sre.bot@example.com", "DisplayName": "SRE Bot"}


def test_identification_headers_are_sent(fake, client):
    client.current_user()
    headers = {k.lower(): v for k, v in fake.last_headers.items()}
    assert headers["x-rallyintegrationname"] == "sre-tracker"
    assert headers["x-rallyintegrationlibrary"] == "requests"
    assert headers["x-rallyintegrationversion"] == "0.1.0"


def test_wrong_key_names_the_setting(fake):
    with make_client(fake, api_key="not-the-right-key") as rc, pytest.raises(RallyError) as exc:
        rc.current_user()
    assert str(exc.value) == "Rally rejected the API key (check RALLY_API_KEY)"


def test_wrong_key_on_write_mentions_read_only_keys(fake):
    with make_client(fake, api_key="not-the-right-key") as rc, pytest.raises(RallyError) as exc:
        rc.update_story(1, {"Name": "x"})
    assert "RALLY_API_KEY" in str(exc.value) and "read-only" in str(exc.value)


def test_403_ip_allow_list_is_explained(fake, client):
    fake.fail_next(1, status=403)
    with pytest.raises(RallyError, match="Your IP address, 127.0.0.1, is not within"):
        client.current_user()


def test_403_without_details_names_the_key(fake, client):
    fake.fail_next(1, status=403, body="<html>Forbidden</html>")
    with pytest.raises(RallyError, match="HTTP 403.*RALLY_API_KEY"):
        client.get_workspace()


def test_get_workspace_and_project(fake, client):
    assert client.get_workspace()["Name"] == "SRE Workspace"
    assert client.get_project()["Name"] == "SRE Platform"


def test_unknown_workspace_names_the_setting(fake):
    with (RallyClient(fake.url, fake.api_key, "999", fake.project_id) as rc,
          pytest.raises(RallyError, match="workspace 999.*RALLY_WORKSPACE_ID")):
        rc.get_workspace()


def test_unknown_project_names_the_setting(fake):
    with (RallyClient(fake.url, fake.api_key, fake.workspace_id, "998") as rc,
          pytest.raises(RallyError, match="project 998.*RALLY_PROJECT_ID")):
        rc.get_project()


def test_project_of_another_workspace_is_refused(fake, client):
    other_ws = fake._add("workspace", Name="Elsewhere")
    fake.objects["project"][int(fake.project_id)]["Workspace"] = f"/workspace/{other_ws}"
    with pytest.raises(RallyError, match="not in workspace .*RALLY_PROJECT_ID"):
        client.get_project()


def test_resolve_parent_returns_feature_ref(fake, client):
    parent = client.resolve_parent("f1")
    assert parent == {"_ref": fake.feature_ref, "ObjectID": int(fake.feature_ref.split("/")[-1]),
                      "FormattedID": "F1", "Name": "SRE maturity uplift"}


def test_unknown_parent_names_the_setting(client):
    with pytest.raises(RallyError, match="no feature F404.*RALLY_PARENT_ID"):
        client.resolve_parent("F404")


def test_404_path_names_the_setting(fake, client):
    fake.fail_next(1, status=404)
    with pytest.raises(RallyError, match="HTTP 404.*RALLY_WORKSPACE_ID"):
        client.get_workspace()


def test_redirect_is_not_followed(fake, client):
    fake.fail_next(1, status=302, headers={"Location": "https://sso.example.com/login"})
    with pytest.raises(RallyError, match="redirected .* sso.example.com.*RALLY_BASE_URL"):
        client.current_user()
    assert fake.count() == 1


def test_errors_array_on_200_is_an_error(client):
    with pytest.raises(RallyError, match="Could not parse"):
        client.query("hierarchicalrequirement", "((Name = a) AND (Name = b) AND (Name = c))",
                     ["Name"])


# --- query quoting -------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "quoted"), [
    ("SRE-Maturity", '"SRE-Maturity"'),
    ("two words", '"two words"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("a (b) c)", '"a (b) c)"'),
    ("back\\slash", '"back\\\\slash"'),
    ('\\"', '"\\\\\\""'),
    ("", '""'),
])
def test_quote_query_value(value, quoted):
    assert quote_query_value(value) == quoted


@given(st.text())
def test_quoted_values_parse_back_unchanged(value):
    assert parse_query(f"(Name = {quote_query_value(value)})") == ("cmp", "Name", "=", value)


def test_tag_with_quotes_and_parentheses_is_found(fake, client):
    odd = 'SRE "Maturity" (beta) AND x'
    fake.seed_stories(2, odd, fake.feature_ref)
    fake.seed_stories(1, "SRE", fake.feature_ref)
    assert len(client.fetch_stories(odd, fake.feature_ref, FIELDS)) == 2


# --- fetching ------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 2000, 2001, 4500])
def test_fetch_takes_one_request_per_2000_stories(fake, client, n):
    oids = fake.seed_stories(n, "SRE-Maturity", fake.feature_ref, lambda i: f"key {i}")
    before = client.request_count
    stories = client.fetch_stories("SRE-Maturity", fake.feature_ref, FIELDS)
    expected = max(1, math.ceil(n / 2000))
    assert fake.count("GET", "/hierarchicalrequirement") == expected
    assert client.request_count - before == expected
    assert [s["ObjectID"] for s in stories] == sorted(oids)


def test_fetch_asks_for_largest_page_and_named_fields_only(fake, client):
    client.fetch_stories("SRE-Maturity", fake.feature_ref, ["ScheduleState"])
    _method, _path, query = fake.requests[-1]
    assert query["pagesize"] == "2000" and query["start"] == "1"
    assert query["fetch"] == "ObjectID,FormattedID,ScheduleState"
    assert query["order"] == "ObjectID"
    assert query["workspace"] == fake.workspace_ref
    assert (query["project"], query["projectScopeDown"]) == (fake.project_ref, "true")
    assert query["query"] == (f'((Tags.Name = "SRE-Maturity") AND '
                              f'(PortfolioItem = "{fake.feature_ref}"))')


def test_fetch_returns_requested_fields(fake, client):
    fake.seed_stories(1, "SRE-Maturity", fake.feature_ref, lambda i: "the key")
    (got,) = client.fetch_stories("SRE-Maturity", fake.feature_ref, FIELDS)
    assert got["Notes"] == "the key" and got["ScheduleState"] == "Defined"
    assert got["FormattedID"].startswith("US") and got["_ref"].startswith("/hierarchicalreq")
    assert "Description" not in got


def test_fetch_filters_on_the_server(fake, client):
    wanted = fake.seed_stories(3, "SRE-Maturity", fake.feature_ref)
    wanted += fake.seed_stories(2, "SRE-Maturity", fake.feature_ref,
                                project_ref=fake.child_project_ref)
    fake.seed_stories(2, "SRE-Maturity", fake.feature_ref, project_ref=fake.other_project_ref)
    fake.seed_stories(2, "Other-Tag", fake.feature_ref)
    fake.seed_stories(2, "SRE-Maturity", fake.other_feature_ref)
    fake.seed_stories(1, "SRE-Maturity", None)
    fake.seed_stories(1, None, fake.feature_ref)
    stories = client.fetch_stories("SRE-Maturity", fake.feature_ref, FIELDS)
    assert sorted(s["ObjectID"] for s in stories) == sorted(wanted)


def test_fetch_without_parent_uses_the_tag_only(fake, client):
    fake.seed_stories(2, "SRE-Maturity", fake.feature_ref)
    fake.seed_stories(1, "SRE-Maturity", fake.other_feature_ref)
    assert len(client.fetch_stories("SRE-Maturity", None, FIELDS)) == 3


def test_fetch_sees_state_changes_made_in_rally(fake, client):
    (oid,) = fake.seed_stories(1, "SRE-Maturity", fake.feature_ref)
    fake.stories[oid]["ScheduleState"] = "Accepted"
    (got,) = client.fetch_stories("SRE-Maturity", fake.feature_ref, FIELDS)
    assert got["ScheduleState"] == "Accepted"


# --- tags ----------------------------------------------------------------------------------

def test_find_tag_returns_none_when_missing(client):
    assert client.find_tag("SRE-Maturity") is None


def test_ensure_tag_creates_once(fake, client):
    first = client.ensure_tag("SRE-Maturity")
    assert client.ensure_tag("SRE-Maturity") == first == fake.tag_ref("SRE-Maturity")
    assert fake.count("POST", "/tag/create") == 1


# --- creating ------------------------------------------------------------------------------

def test_create_stories_through_batch(fake, client):
    tag = client.ensure_tag("SRE-Maturity")
    seen = []
    results = client.create_stories([story(fake, tag, n) for n in range(5)], chunk_size=2,
                                    on_created=lambda i, obj: seen.append((i, obj["ObjectID"])))
    assert fake.count("POST", "/batch") == 3
    assert [r["ok"] for r in results] == [True] * 5
    assert seen == [(i, r["object"]["ObjectID"]) for i, r in enumerate(results)]
    for n, result in enumerate(results):
        made = fake.stories[result["object"]["ObjectID"]]
        assert made["Notes"] == f"sre-tracker key: asset-{n} / Alerts / {n}"
        assert made["Tags"] == [tag]
        assert made["PortfolioItem"] == fake.feature_ref
        assert made["Project"] == fake.project_ref
        assert made["ScheduleState"] == "Defined"
        assert result["object"]["FormattedID"] == made["FormattedID"]


def test_created_stories_are_found_by_fetch(fake, client):
    tag = client.ensure_tag("SRE-Maturity")
    client.create_stories([story(fake, tag, n) for n in range(3)])
    notes = [s["Notes"] for s in client.fetch_stories("SRE-Maturity", fake.feature_ref, FIELDS)]
    assert notes == [f"sre-tracker key: asset-{n} / Alerts / {n}" for n in range(3)]


def test_batch_refused_falls_back_to_single_creates(fake, client):
    fake.disable_batch = True
    tag = client.ensure_tag("SRE-Maturity")
    seen = []
    results = client.create_stories([story(fake, tag, n) for n in range(3)],
                                    on_created=lambda i, obj: seen.append(i))
    assert [r["ok"] for r in results] == [True, True, True]
    assert seen == [0, 1, 2]
    assert fake.count("POST", "/hierarchicalrequirement/create") == 3


def test_batch_refused_creates_every_chunk_one_by_one(fake, client):
    fake.disable_batch = True
    tag = client.ensure_tag("SRE-Maturity")
    chunks = []
    results = client.create_stories([story(fake, tag, n) for n in range(7)], chunk_size=3,
                                    on_chunk=lambda done: chunks.append([i for i, _ in done]))
    assert [r["ok"] for r in results] == [True] * 7
    assert len(fake.stories_tagged("SRE-Maturity")) == 7
    assert sorted(i for done in chunks for i in done) == list(range(7))


def test_batch_level_error_falls_back_to_single_creates(fake, client):
    fake.max_batch_entries = 2
    tag = client.ensure_tag("SRE-Maturity")
    results = client.create_stories([story(fake, tag, n) for n in range(3)], chunk_size=5)
    assert [r["ok"] for r in results] == [True, True, True]
    assert len(fake.stories_tagged("SRE-Maturity")) == 3


def test_failed_entry_is_reported_and_the_rest_created(fake, client):
    tag = client.ensure_tag("SRE-Maturity")
    (other,) = fake.seed_stories(1, None)
    stories = [story(fake, tag, 0), story(fake, tag, 1, Parent=f"/hierarchicalrequirement/{other}"),
               story(fake, tag, 2)]
    seen = []
    results = client.create_stories(stories, on_created=lambda i, obj: seen.append(i))
    assert [r["ok"] for r in results] == [True, False, True]
    assert results[1]["error"] == PARENT_AND_PI
    assert seen == [0, 2]
    assert len(fake.stories_tagged("SRE-Maturity")) == 2


def test_failed_single_create_is_reported_and_the_rest_created(fake, client):
    fake.disable_batch = True
    tag = client.ensure_tag("SRE-Maturity")
    stories = [story(fake, tag, 0, Tags={"_ref": tag}), story(fake, tag, 1)]
    results = client.create_stories(stories)
    assert [r["ok"] for r in results] == [False, True]
    assert "Tags" in results[0]["error"]


def test_server_dying_mid_push_leaves_the_rest_not_attempted(fake, client):
    tag = client.ensure_tag("SRE-Maturity")
    fake.fail_after_creates(1, status=500)
    seen = []
    results = client.create_stories([story(fake, tag, n) for n in range(5)], chunk_size=2,
                                    on_created=lambda i, obj: seen.append(i))
    assert seen == [0, 1]
    assert [r["ok"] for r in results] == [True, True, False, False, False]
    # A 500 to a create is not sent again (Rally may have made the stories) and with no
    # lookup to tell, the outcome stays unknown for the next run to settle.
    assert results[2]["error"].startswith("Rally is unavailable (HTTP 500 after 1 attempt)")
    assert "outcome unknown" in results[2]["error"]
    assert results[4]["error"].startswith("not attempted: Rally is unavailable")
    assert fake.count("POST", "/batch") == 2
    assert len(fake.stories_tagged("SRE-Maturity")) == 2


def test_timed_out_create_is_not_repeated(fake):
    with make_client(fake, timeout=0.3) as rc:
        tag = rc.ensure_tag("SRE-Maturity")
        fake.latency = 0.6
        results = rc.create_stories([story(fake, tag, 0)])
    assert fake.count("POST", "/batch") == 1
    assert not results[0]["ok"]
    assert "may still have been made" in results[0]["error"]


def test_update_story_changes_fields(fake, client):
    (oid,) = fake.seed_stories(1, "SRE-Maturity", fake.feature_ref)
    got = client.update_story(oid, {"ScheduleState": "In-Progress"})
    assert got["ObjectID"] == oid and got["ScheduleState"] == "In-Progress"
    assert fake.stories[oid]["ScheduleState"] == "In-Progress"


def test_update_of_deleted_story_says_so(fake, client):
    with pytest.raises(RallyError, match="story 4242"):
        client.update_story(4242, {"ScheduleState": "Defined"})


# --- retries, timeouts, broken answers -----------------------------------------------------

def test_429_with_retry_after_is_retried_after_that_wait(fake, client, sleeps):
    fake.fail_next(1, status=429, retry_after="1")
    assert client.current_user()["UserName"] == "sre.bot@example.com"
    assert fake.count("GET", "/user") == 2
    assert sleeps == [0.5]  # the client's max_retry_after (0.5) is below the asked 1 s


def test_short_retry_after_is_honoured(fake, sleeps):
    with make_client(fake, max_retry_after=30) as rc:
        fake.fail_next(1, status=503, retry_after="2")
        rc.current_user()
    assert sleeps == [2]


def test_huge_retry_after_is_clamped(fake, sleeps):
    with make_client(fake, max_retry_after=0.05) as rc:
        fake.fail_next(1, status=503, retry_after="9223372036854775807")
        assert rc.current_user()["UserName"] == "sre.bot@example.com"
    assert fake.count("GET", "/user") == 2
    assert sleeps == [0.05]


@pytest.mark.parametrize(("header", "expected"), [
    ("9223372036854775807", 7.0), ("3", 3.0), ("0", 0.0), ("0.25", 0.25), ("soon", 1.0),
    ("nan", 1.0), ("-2", 1.0)])
def test_retry_after_parsing_is_capped(header, expected):
    assert CappedRetry(total=1, max_retry_after=7.0).parse_retry_after(header) == expected


def test_cap_survives_retry_increments():
    retry = CappedRetry(total=3, max_retry_after=2.0).new(total=2)
    assert retry.parse_retry_after("600") == 2.0


def test_persistent_503_gives_a_clear_error(fake, client):
    fake.fail_next(10, status=503)
    with pytest.raises(RallyError) as exc:
        client.current_user()
    assert str(exc.value) == "Rally is unavailable (HTTP 503 after 3 attempts); try again later"
    assert fake.count() == 3


def test_timeout_gives_a_clear_error(fake):
    fake.latency = 0.5
    with make_client(fake, timeout=0.2, retries=1) as rc, pytest.raises(RallyError) as exc:
        rc.current_user()
    assert "did not answer GET /user within 0.2 s" in str(exc.value)
    assert "127.0.0.1" in str(exc.value)


def test_unreachable_host_gives_a_clear_error():
    port = free_port()
    with (RallyClient(f"http://127.0.0.1:{port}", "k" * 20, 1, 2, retries=1, backoff=0.01) as rc,
          pytest.raises(RallyError, match=f"cannot reach Rally at 127.0.0.1:{port}.*RALLY_BASE")):
        rc.current_user()


def test_non_json_answer_gives_a_clear_error(fake, client):
    fake.malformed_next(1)
    with pytest.raises(RallyError, match="not WSAPI JSON for GET /user"):
        client.current_user()


def test_html_page_with_200_gives_a_clear_error(fake, client):
    fake.fail_next(1, status=200, body="<html>Down for maintenance</html>")
    with pytest.raises(RallyError, match=r"not WSAPI JSON .*text/html"):
        client.get_workspace()


@pytest.fixture
def debug_log(caplog, monkeypatch):
    """Every record at DEBUG (ours and urllib3's), whatever logging set-up ran before."""
    logger = logging.getLogger("sre_tracker.rally")
    # The CLI's logging set-up may stop propagation at "sre_tracker": listen on ours directly.
    monkeypatch.setattr(logger, "propagate", False)
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sre_tracker.rally")
    yield caplog
    logger.removeHandler(caplog.handler)


def test_requests_are_logged_without_headers(fake, client, debug_log):
    client.current_user()
    assert any("GET /slm/webservice/v2.0/user -> HTTP 200" in r.getMessage()
               for r in debug_log.records)


def test_api_key_never_appears_in_messages_or_logs(debug_log):
    secret = "SECRET-rally-key-7f3a9c1e5b"
    texts: list[str] = []

    def attempt(call) -> None:
        try:
            call()
        except RallyError as exc:
            err: BaseException | None = exc
            while err is not None:
                texts.extend([str(err), repr(err)])
                err = err.__cause__ or err.__context__

    with FakeRally(api_key=secret) as fake:
        with make_client(fake, timeout=0.3, retries=1, api_key=secret) as rc:
            tag = rc.ensure_tag("SRE-Maturity")
            rc.create_stories([story(fake, tag, 0), story(fake, tag, 1, Tags="x")])
            rc.fetch_stories("SRE-Maturity", fake.feature_ref, FIELDS)
            for status, times in ((403, 1), (404, 1), (429, 2), (500, 2), (503, 2)):
                fake.fail_next(times, status=status)
                attempt(rc.current_user)
            fake.malformed_next(1)
            attempt(rc.get_project)
            attempt(lambda: rc.resolve_parent("F999"))
            attempt(lambda: rc.update_story(1, {"Name": "x"}))
            fake.latency = 0.5
            attempt(rc.current_user)
            texts.extend(str(r) for r in rc.create_stories([story(fake, tag, 2)]))
            fake.latency = 0
            texts.append(repr(rc))
        assert fake.last_headers.get("ZSESSIONID") == secret  # it was really sent
        fake.valid_keys.clear()
        with make_client(fake, api_key=secret) as rc:
            attempt(rc.current_user)
    with RallyClient(f"http://127.0.0.1:{free_port()}", secret, 1, 2, retries=0) as rc:
        attempt(rc.current_user)
    records = debug_log.records
    assert any(r.name == "sre_tracker.rally" for r in records)
    assert any(r.name.startswith("urllib3") for r in records)
    texts.extend(r.getMessage() for r in records)
    texts.extend(str(r.args) for r in records)
    assert len(texts) > 20
    assert not [t for t in texts if secret in t]


# --- small helpers -------------------------------------------------------------------------

@pytest.mark.parametrize("base", ["https://rally1.rallydev.com", "https://rally1.rallydev.com/",
                                  "https://rally1.rallydev.com/slm/webservice/v2.0"])
def test_story_url(base):
    assert story_url(base, "41529100", 702318845512) == (
        "https://rally1.rallydev.com/#/41529100/detail/userstory/702318845512")


@pytest.mark.parametrize("ref", [
    "https://rally1.rallydev.com/slm/webservice/v2.0/portfolioitem/feature/12",
    "/portfolioitem/feature/12", "portfolioitem/feature/12", "/portfolioitem/feature/12.js"])
def test_short_ref_accepts_every_form(ref):
    assert short_ref(ref) == "/portfolioitem/feature/12"


# --- the fake itself (it stands in for Rally in other tests and the benchmark) -----------------

def raw(fake: FakeRally, path: str, method: str = "GET", key: str | None = None, **kw):
    headers = {"zsessionid": key or fake.api_key}
    return requests.request(method, fake.url + "/slm/webservice/v2.0" + path, headers=headers,
                            timeout=5, **kw)


def test_fake_answers_401_with_jetty_html(fake):
    resp = raw(fake, "/hierarchicalrequirement", key="nope")
    assert resp.status_code == 401
    assert resp.headers["Content-Type"].startswith("text/html")
    assert "Full authentication is required" in resp.text


def test_fake_rejects_flat_three_term_and(fake):
    with pytest.raises(QueryError, match="Could not parse"):
        parse_query("((A = 1) AND (B = 2) AND (C = 3))")
    body = raw(fake, "/hierarchicalrequirement", params={
        "query": "((Name = a) AND (Name = b) AND (Name = c))"}).json()
    assert body["QueryResult"]["Errors"][0].startswith("Could not parse")


@pytest.mark.parametrize("form", ["full", "short", "bare"])
def test_fake_accepts_refs_in_three_forms(fake, form):
    fake.seed_stories(2, "SRE-Maturity", fake.feature_ref)
    ref = {"full": fake.full_ref(fake.feature_ref), "short": fake.feature_ref,
           "bare": fake.feature_ref.lstrip("/")}[form]
    body = raw(fake, "/HierarchicalRequirement.js", params={
        "query": f"(PortfolioItem = {ref})", "key": "None"}).json()
    assert body["QueryResult"]["TotalResultCount"] == 2


def test_fake_pages_with_default_and_capped_sizes(fake):
    fake.seed_stories(2500, "SRE-Maturity")
    default = raw(fake, "/hierarchicalrequirement").json()["QueryResult"]
    assert (default["PageSize"], len(default["Results"])) == (20, 20)
    capped = raw(fake, "/hierarchicalrequirement", params={"pagesize": 5000}).json()
    assert len(capped["QueryResult"]["Results"]) == 2000
    last = raw(fake, "/hierarchicalrequirement", params={"pagesize": 2000, "start": 2001}).json()
    assert len(last["QueryResult"]["Results"]) == 500


def test_fake_query_operators(fake):
    fake.seed_stories(3, "SRE-Maturity", fake.feature_ref, name_fn=lambda i: f"Story {i}")
    (oid, *_rest) = sorted(fake.stories)
    fake.stories[oid]["ScheduleState"] = "Completed"

    def total(query: str) -> int:
        body = raw(fake, "/hierarchicalrequirement", params={"query": query}).json()
        assert body["QueryResult"]["Errors"] == [], body
        return body["QueryResult"]["TotalResultCount"]

    assert total("(ScheduleState < Completed)") == 2
    assert total('(Name contains "story 1")') == 1
    assert total('(Name !contains "Story")') == 0
    assert total("(PortfolioItem.FormattedID = F1)") == 3
    assert total("(Parent = null)") == 3
    assert total('((Tags.Name != "SRE-Maturity") OR (ScheduleState >= Completed))') == 1


def test_fake_single_read_of_missing_object(fake):
    body = raw(fake, "/hierarchicalrequirement/1").json()
    assert body == {"OperationResult": {"_rallyAPIMajor": "2", "_rallyAPIMinor": "0",
                                        "Errors": ["Cannot find object to read"],
                                        "Warnings": []}}


def test_fake_create_validates_tags_and_parent(fake):
    tag = fake.add_tag("SRE-Maturity")
    bad_tags = raw(fake, "/hierarchicalrequirement/create", "PUT",
                   json={"hierarchicalrequirement": {"Name": "x", "Tags": {"_ref": tag}}}).json()
    assert "Tags" in bad_tags["CreateResult"]["Errors"][0]
    (other,) = fake.seed_stories(1, None)
    both = raw(fake, "/hierarchicalrequirement/create", "POST", json={"HierarchicalRequirement": {
        "Name": "x", "Parent": f"/hierarchicalrequirement/{other}",
        "PortfolioItem": fake.feature_ref}}).json()
    assert both["CreateResult"]["Errors"] == [PARENT_AND_PI]
    unknown = raw(fake, "/hierarchicalrequirement/create", "POST", json={
        "HierarchicalRequirement": {"Name": "x", "Project": "/project/1"}}).json()
    assert "Project" in unknown["CreateResult"]["Errors"][0]


def test_fake_create_numbers_stories_and_defaults_state(fake):
    made = [raw(fake, "/hierarchicalrequirement/create", "POST", json={
        "HierarchicalRequirement": {"Name": f"s{i}"}}).json()["CreateResult"]["Object"]
        for i in range(2)]
    assert [m["FormattedID"] for m in made] == ["US1", "US2"]
    assert made[0]["ScheduleState"] == "Defined"


def test_fake_tracks_concurrency(fake):
    raw(fake, "/user")
    assert fake.max_concurrent == 1

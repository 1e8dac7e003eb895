"""The Confluence client against the fake server (real HTTP on 127.0.0.1), both flavours."""

from __future__ import annotations

import base64
import email.utils
import logging
import socket
import time

import pytest
from test_storage_format import KNOWN, TITLE, TOOL_ROWS, human_table, row

from fake_confluence import GONE_TEXT, FakeConfluence
from sre_maturity.clients import confluence
from sre_maturity.render import storage_format as sf
from sre_maturity.support.errors import ConfluenceError

INTRO = ('<p>Owner: <ac:link><ri:user ri:account-id="5b10ac8d82e05b22cc7d4ef5" /></ac:link> '
         "&mdash; notes&nbsp;here</p>"
         '<ac:structured-macro ac:name="code"><ac:plain-text-body><![CDATA[a < b && "x"]]>'
         "</ac:plain-text-body></ac:structured-macro><h2>SRE Action Items</h2>")
OUTRO = "<h2>Other</h2><p>the end</p>"
FLAVOURS = ["cloud", "datacenter"]


@pytest.fixture
def fake():
    with FakeConfluence() as server:
        yield server


def make(fake: FakeConfluence, flavour: str, **kw) -> confluence.ConfluenceClient:
    options = {"timeout": 2.0, "retries": 2, "backoff": 0.01, "max_retry_after": 0.5}
    options.update(kw)
    if flavour == "cloud":
        options.setdefault("user", fake.email)
        options.setdefault("api_token", fake.api_token)
        return confluence.make_client(fake.cloud_url, api="cloud", **options)
    if "user" not in options:
        options.setdefault("pat", fake.pat)
    return confluence.make_client(fake.dc_url, api="datacenter", **options)


@pytest.fixture(params=FLAVOURS)
def flavour(request) -> str:
    return request.param


@pytest.fixture
def page(fake) -> str:
    return fake.add_page("SRE Weekly", INTRO + human_table() + OUTRO, version=17)


def secrets_of(fake: FakeConfluence) -> list[str]:
    basic = base64.b64encode(f"{fake.email}:{fake.api_token}".encode()).decode()
    return [fake.api_token, fake.pat, basic, fake.dc_password]


def assert_clean(text: str, fake: FakeConfluence, *extra: str) -> None:
    for secret in [*secrets_of(fake), *extra]:
        assert secret not in text


# --- settings -------------------------------------------------------------------------------

def test_auto_detects_cloud_and_adds_wiki():
    client = confluence.make_client("https://acme.atlassian.net/", user="a@b.c", api_token="t")
    assert client.flavour == "cloud" and client.base_url == "https://acme.atlassian.net/wiki"
    client = confluence.make_client("https://wiki.corp.example/confluence/rest/api", pat="p")
    assert client.flavour == "datacenter"
    assert client.base_url == "https://wiki.corp.example/confluence"
    assert "p" not in repr(client.session.auth).replace("_Bearer", "")
    assert repr(client) == "ConfluenceClient('https://wiki.corp.example/confluence', " \
                           "api='datacenter')"


@pytest.mark.parametrize("url,kw,match", [
    ("ftp://x", {}, "CONFLUENCE_BASE_URL must be an http"),
    (None, {}, "CONFLUENCE_BASE_URL must be an http"),
    ("https://u:pw@x.example", {}, "must not contain a user name"),
    ("https://x.example/?a=1", {}, "must not contain"),
    ("https://x.example", {"api": "v3"}, "CONFLUENCE_API must be"),
    ("https://x.atlassian.net", {"pat": "p"}, "CONFLUENCE_USER .* and CONFLUENCE_API_TOKEN"),
    ("https://x.example", {}, "needs CONFLUENCE_PAT"),
])
def test_bad_settings_name_the_setting(url, kw, match):
    with pytest.raises(ConfluenceError, match=match):
        confluence.make_client(url, **kw)


# --- reading and writing --------------------------------------------------------------------

def test_get_and_put_page(fake, page, flavour):
    with make(fake, flavour) as client:
        got = client.get_page(page)
        assert got == {"id": page, "title": "SRE Weekly", "version": 17,
                       "body": fake.body(page), "message": "",
                       "parent": "4519001" if flavour == "cloud" else "",
                       "space": "98310" if flavour == "cloud" else "SRE"}
        saved = client.put_page(page, "SRE Weekly", got["body"] + "<p>more</p>", 18, "msg")
        assert saved["version"] == 18 and fake.version(page) == 18
        assert fake.body(page).endswith("<p>more</p>")
        sent = fake.puts()[-1]
        if flavour == "cloud":
            assert set(sent) == {"id", "status", "title", "body", "version"}
            assert sent["body"]["representation"] == "storage"
            assert "minorEdit" not in sent["version"]
        else:
            assert sent["type"] == "page" and sent["version"]["minorEdit"] is True
            assert fake.pages[page]["minorEdit"] is True
        assert client.request_count == 2


def test_update_is_one_get_one_put_then_nothing(fake, flavour):
    pid = fake.add_page("SRE Weekly", INTRO + OUTRO)
    with make(fake, flavour) as client:
        result = confluence.update_todo_table(client, pid, TITLE, TOOL_ROWS)
        assert result == {"changed": True, "version": 2, "summary": "table added with 3 rows",
                          "requests": 2}
        assert (fake.count("GET"), fake.count("PUT")) == (1, 1)
        assert fake.pages[pid]["message"] == "sre-tracker: table added with 3 rows"
        sent = fake.puts()[-1]
        sent = sent["body"]["value"] if flavour == "cloud" else sent["body"]["storage"]["value"]
        assert sent.startswith(INTRO) and sent.endswith(OUTRO)
        body = fake.body(pid)
        # The server normalised what it stored; the next run still sees no change.
        assert body != INTRO + sf.render_table(TOOL_ROWS) + OUTRO
        again = confluence.update_todo_table(client, pid, TITLE, TOOL_ROWS)
        assert again == {"changed": False, "version": 2, "summary": "no changes",
                         "requests": 1}
        assert (fake.count("GET"), fake.count("PUT")) == (2, 1)
        assert len(fake.pages[pid]["history"]) == 2


def test_conflict_reapplies_on_fresh_body_keeping_the_human_edit(fake, page, flavour):
    def human(body: str) -> str:
        body = body.replace("<p>done next week</p>", "<p>done next week, says Ann</p>")
        return body.replace(OUTRO, OUTRO + "<p>Added by Ann</p>")

    fake.edit_before_put(page, human)
    rows = [row("payment-api", Status="In-Progress", _colour="Blue"), *TOOL_ROWS[1:]]
    with make(fake, flavour) as client:
        result = confluence.update_todo_table(client, page, TITLE, rows, KNOWN)
    assert result["changed"] and result["version"] == 19 and result["requests"] == 4
    assert (fake.count("GET"), fake.count("PUT")) == (2, 2)
    body = fake.body(page)
    assert body.endswith("<p>Added by Ann</p>")
    got = sf.table_rows(body, TITLE)
    assert got[0]["Status"] == "In-Progress"
    assert got[2]["Comments"] == "done next week, says Ann"
    assert [h["by"] for h in fake.pages[page]["history"]] == ["seed", "human", "api"]


def test_conflict_that_already_has_our_rows_writes_nothing(fake, page):
    rows = [row("payment-api", Priority="P2"), *TOOL_ROWS[1:]]
    fake.edit_before_put(page, lambda b: b.replace("<td><p>P1</p>", "<td><p>P2</p>", 1))
    with make(fake, "cloud") as client:
        result = confluence.update_todo_table(client, page, TITLE, rows, KNOWN)
    assert result == {"changed": False, "version": 18, "summary": "no changes", "requests": 3}


def test_endless_conflicts_give_up(fake, page):
    fake.edit_before_put(page, lambda b: b + "<p>x</p>", times=10)
    with make(fake, "datacenter") as client, pytest.raises(ConfluenceError,
                                                           match="kept changing.*3 attempts"):
        confluence.update_todo_table(client, page, TITLE, [row()], KNOWN)
    assert fake.count("PUT") == 3


@pytest.mark.parametrize("status", [500, 502, 503])
def test_put_that_landed_but_got_5xx_is_not_repeated(fake, page, flavour, status):
    fake.fail_after_put(1, status)
    with make(fake, flavour) as client:
        result = confluence.update_todo_table(client, page, TITLE, [row()], KNOWN)
    assert result["changed"] and result["version"] == 18
    assert (fake.count("GET"), fake.count("PUT")) == (2, 1)
    assert len(fake.pages[page]["history"]) == 2


def test_put_that_landed_but_timed_out_is_not_repeated(fake, page, flavour, caplog):
    fake.fail_after_put(1, 200, delay=1.0, body="{}")
    with make(fake, flavour, timeout=0.3) as client:
        result = confluence.update_todo_table(client, page, TITLE, [row()], KNOWN)
    assert result["changed"] and result["version"] == 18
    assert fake.count("PUT") == 1 and len(fake.pages[page]["history"]) == 2
    assert "did not answer PUT page" in caplog.text


def test_put_refused_with_5xx_is_sent_again(fake, page, flavour):
    fake.fail_next(1, 500, method="PUT")
    with make(fake, flavour) as client:
        result = confluence.update_todo_table(client, page, TITLE, [row()], KNOWN)
    assert result["changed"] and result["version"] == 18
    assert (fake.count("GET"), fake.count("PUT")) == (2, 2)


def test_reread_after_unknown_outcome_failing_says_so(fake, page):
    fake.fail_next(1, 503, method="PUT")
    with make(fake, "cloud", retries=0) as client:
        real_get = client.get_page
        calls = []

        def get_page(pid):
            calls.append(pid)
            if len(calls) > 1:  # the re-read after the unanswered write fails too
                fake.fail_next(1, 503, method="GET")
            return real_get(pid)

        client.get_page = get_page
        with pytest.raises(ConfluenceError, match="may or may not have been saved.*run the"):
            confluence.update_todo_table(client, page, TITLE, [row()], KNOWN)


def test_429_retry_after_is_honoured(fake, page, flavour, sleeps):
    fake.fail_next(2, 429, retry_after="0.2", method="GET")
    fake.fail_next(1, 429, retry_after=1, method="PUT")
    with make(fake, flavour, max_retry_after=0.3) as client:
        result = confluence.update_todo_table(client, page, TITLE, [row()], KNOWN)
    assert result["changed"] and result["requests"] == 2  # urllib3 retries are not counted
    assert (fake.count("GET"), fake.count("PUT")) == (3, 2)
    assert sleeps == [0.2, 0.2, 0.3]  # 0.2 + 0.2 + min(1, 0.3)
    assert len(fake.pages[page]["history"]) == 2


def test_absurd_and_date_retry_after_are_capped(fake, page, sleeps):
    fake.fail_next(1, 429, retry_after=9223372036854775807)
    fake.fail_next(1, 429, retry_after=email.utils.formatdate(time.time() + 3600, usegmt=True))
    fake.fail_next(1, 429, retry_after="soon")
    with make(fake, "cloud", retries=3, max_retry_after=0.2) as client:
        assert client.get_page(page)["version"] == 17
        assert sleeps == [0.2, 0.2, 0.2]  # every wait capped at max_retry_after


def test_429_for_ever_gives_up(fake, page, flavour):
    fake.fail_next(10, 429, retry_after=0)
    with make(fake, flavour, retries=2) as client, pytest.raises(
            ConfluenceError, match="kept answering 429 .* after 2 retries"):
        client.get_page(page)
    assert fake.count("GET") == 3


def test_5xx_on_get_is_retried_then_reported(fake, page, flavour):
    fake.fail_next(2, 500)
    with make(fake, flavour) as client:
        assert client.get_page(page)["version"] == 17
    fake.fail_next(3, 502, body="<html><body>Bad gateway</body></html>")
    with make(fake, flavour) as client, pytest.raises(ConfluenceError) as info:
        client.get_page(page)
    assert str(info.value) == (f"Confluence at {client.host} answered HTTP 502 to GET page "
                               f"{page}; try again later")


def test_child_pages_with_versions_in_a_few_reads(fake, page, flavour):
    """The versions of 260 children, for telling which part pages are as the tool left them:
    Data Center lists them with the children, Cloud reads them by id, 250 a request."""
    kids = [fake.add_page(f"child {n:03d}", "<p>x</p>", parent_id=page, version=n % 7 + 1)
            for n in range(260)]
    fake.pages[kids[5]]["message"] = "sre-tracker: 1 row added [sre-rows:abc]"
    with make(fake, flavour) as client:
        plain = client.child_pages(page)
        gets = fake.count("GET")
        listed = client.child_pages(page, versions=True)
    assert plain == [{"id": k, "title": f"child {n:03d}"} for n, k in enumerate(kids)]
    assert [(c["id"], c["version"]) for c in listed] == [
        (k, n % 7 + 1) for n, k in enumerate(kids)]
    assert listed[5]["message"] == "sre-tracker: 1 row added [sre-rows:abc]"
    assert {c["message"] for c in listed[6:]} == {""}
    # two reads of the listing (Cloud 250 a read, Data Center 200), and on Cloud two of the
    # versions (250 ids a read)
    assert fake.count("GET") - gets == (4 if flavour == "cloud" else 2)
    assert fake.count("GET", f"/{kids[0]}") == 0  # no page read one by one


def test_a_child_gone_before_its_version_is_read_is_listed_without_it():
    class Forgetful(FakeConfluence):
        """Lists the children, then no longer finds "child 1" by its id."""

        def _search(self, space: bool, query: dict) -> list[dict]:
            return [p for p in super()._search(space, query) if p["title"] != "child 1"]

    with Forgetful() as fake:
        main = fake.add_page("main", "<p>x</p>")
        for n in range(3):
            fake.add_page(f"child {n}", "<p>x</p>", parent_id=main)
        with make(fake, "cloud") as client:
            listed = client.child_pages(main, versions=True)
    assert [sorted(c) for c in listed] == [["id", "message", "title", "version"],
                                           ["id", "title"],
                                           ["id", "message", "title", "version"]]


def test_update_page_can_start_from_a_page_just_read(fake, page, flavour):
    with make(fake, flavour) as client:
        read = client.get_page(page)
        gets = fake.count("GET")
        result = confluence.update_page(client, page, lambda b: (b + "<p>more</p>", True, "x"),
                                        page=read)
    assert result["changed"] and fake.count("GET") == gets and fake.version(page) == 18


# --- errors: one line, the setting to fix, never a secret -----------------------------------

def test_401_names_the_settings_and_hides_secrets(fake, page, flavour, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "WRONG-secret-value-123"
    kw = {"api_token": wrong} if flavour == "cloud" else {"pat": wrong}
    with make(fake, flavour, **kw) as client, pytest.raises(ConfluenceError) as info:
        confluence.update_todo_table(client, page, TITLE, [row()], KNOWN)
    text = str(info.value)
    assert "\n" not in text
    assert "CONFLUENCE_USER/CONFLUENCE_API_TOKEN or CONFLUENCE_PAT" in text
    basic = base64.b64encode(f"{fake.email}:{wrong}".encode()).decode()
    assert_clean(text, fake, wrong, basic)
    assert_clean(caplog.text, fake, wrong, basic)
    assert fake.auth_headers[-1] in (f"Basic {basic}", f"Bearer {wrong}")


def test_secrets_never_logged_on_success_or_failure(fake, page, flavour, caplog):
    caplog.set_level(logging.DEBUG)
    fake.fail_next(1, 503)
    with make(fake, flavour) as client:
        confluence.update_todo_table(client, page, TITLE, [row()], KNOWN)
        with pytest.raises(ConfluenceError) as info:
            client.get_page("999")
    assert "CONFLUENCE_PAGE_ID" in str(info.value)
    assert_clean(caplog.text + str(info.value), fake)
    assert "GET /" in caplog.text  # the debug log is there, without credentials


def test_403_on_write(fake, page, flavour):
    fake.forbidden.add(page)
    with make(fake, flavour) as client, pytest.raises(ConfluenceError) as info:
        confluence.update_todo_table(client, page, TITLE, [row()], KNOWN)
    text = str(info.value)
    assert text.startswith(f"no permission for page {page} (HTTP 403: Could not update Content")
    assert "CONFLUENCE_USER/CONFLUENCE_PAT" in text and "\n" not in text
    assert_clean(text, fake)


def test_404_names_the_page_id_setting(fake, page, flavour):
    fake.hidden.add(page)
    with make(fake, flavour) as client, pytest.raises(ConfluenceError) as info:
        client.get_page(page)
    assert str(info.value) == f"page {page} not found or no permission (check CONFLUENCE_PAGE_ID)"


def test_cloud_v1_endpoint_gone_says_use_cloud_api(fake, page):
    client = confluence.make_client(fake.cloud_url, api="datacenter", user=fake.email,
                                    api_token=fake.api_token, retries=0)
    with client, pytest.raises(ConfluenceError, match="gone on Cloud: use CONFLUENCE_API=cloud"):
        client.get_page(page)
    assert GONE_TEXT  # the fake answers with the real wording


def test_wrong_api_404_and_html_pages(fake, page):
    client = confluence.make_client(fake.url + "/nowhere", api="datacenter", pat=fake.pat,
                                    retries=0)
    with client, pytest.raises(ConfluenceError, match="no such API .*CONFLUENCE_API"):
        client.get_page(page)
    assert client.current_user() is None


def test_non_json_answer(fake, page, flavour):
    fake.fail_next(1, 200, body="<html><body>Log in</body></html>", content_type="text/html")
    with make(fake, flavour) as client, pytest.raises(
            ConfluenceError, match="something other than JSON; check CONFLUENCE_BASE_URL"):
        client.get_page(page)


@pytest.mark.parametrize("payload,match", [
    ({"id": "1", "title": "t"}, "without a page version"),
    ({"id": "1", "title": "t", "version": {"number": 3}}, "came without its storage body"),
])
def test_odd_page_answers(fake, page, payload, match):
    fake.fail_next(1, 200, body=payload)
    with make(fake, "cloud") as client, pytest.raises(ConfluenceError, match=match):
        client.get_page(page)


def test_400_carries_the_servers_reason(fake, page, flavour):
    with make(fake, flavour) as client, pytest.raises(ConfluenceError) as info:
        client.put_page(page, "SRE Weekly", "<p>a<br>b</p>", 18, "m")
    text = str(info.value)
    assert text.startswith(f"Confluence refused PUT page {page} (HTTP 400): ")
    assert "Error parsing xhtml" in text and "\n" not in text


@pytest.mark.parametrize("status,payload,match", [
    (413, None, "too large"),
    (418, {"errorMessages": ["teapot"], "errors": {"x": "y"}}, "unexpected HTTP 418 .*teapot"),
    (302, None, "redirected to elsewhere.example"),
    (400, "plain reason", r"\(HTTP 400\): plain reason"),
    (409, {"errors": ["stale"]}, "changed by someone else.*stale"),
])
def test_other_statuses(fake, page, status, payload, match):
    fake.fail_next(1, status, body=payload, content_type="text/plain" if isinstance(
        payload, str) else None, headers={"Location": "https://elsewhere.example/wiki"})
    with make(fake, "cloud") as client, pytest.raises(ConfluenceError, match=match):
        client.get_page(page)


def test_long_server_text_is_cut(fake, page):
    fake.fail_next(1, 400, body={"message": "x " * 400, "reason": "Bad Request"})
    with make(fake, "datacenter") as client, pytest.raises(ConfluenceError) as info:
        client.get_page(page)
    assert str(info.value).endswith("…") and len(str(info.value)) < 400


def test_timeout(fake, page, flavour):
    fake.latency = 0.5
    with make(fake, flavour, timeout=0.2, retries=1) as client, pytest.raises(
            ConfluenceError, match=r"did not answer GET page \d+ within 0.2 s"):
        client.get_page(page)
    assert fake.count("GET") == 2


def test_connection_refused_and_tls(fake):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = confluence.make_client(f"http://127.0.0.1:{port}", pat="p", retries=0)
    with client, pytest.raises(ConfluenceError, match=r"cannot reach .*connection refused"):
        client.get_page("1")
    client = confluence.make_client(fake.url.replace("http:", "https:"), pat="p", retries=0)
    with client, pytest.raises(ConfluenceError, match="TLS verification .*REQUESTS_CA_BUNDLE"):
        client.get_page("1")


def test_helpers_classify_connection_errors():
    assert confluence._reason(Exception("NameResolutionError")) == "host name not found"
    assert confluence._reason(Exception("ProxyError")) == "proxy error"
    assert confluence._reason(Exception("odd")) == "connection failed"
    assert confluence._before_sending(Exception("NewConnectionError"))
    assert not confluence._before_sending(Exception("RemoteDisconnected"))


# --- check ----------------------------------------------------------------------------------

def test_check_page_lines(fake, page, flavour):
    bare = fake.add_page("Bare", "<h2>SRE Action Items</h2>", version=3)
    empty = fake.add_page("Empty", "<p>x</p>")
    with make(fake, flavour) as client:
        assert confluence.check_page(client, page, TITLE) == (
            "page 'SRE Weekly' v17, table 'SRE Action Items' with 3 rows")
        assert confluence.check_page(client, bare, TITLE) == (
            "page 'Bare' v3, heading 'SRE Action Items' has no table yet: the table will be "
            "added under it")
        assert confluence.check_page(client, empty, TITLE) == (
            "page 'Empty' v1, heading 'SRE Action Items' not found: the table will be appended")
        user = client.current_user()
    assert user is None if flavour == "cloud" else user["username"] == fake.dc_user


def test_check_page_wrong_pat_runs_as_anonymous(page):
    with FakeConfluence(anonymous_access=True) as fake:
        pid = fake.add_page("P", "<p/>")
        with make(fake, "datacenter", pat="stale-token") as client, pytest.raises(
                ConfluenceError, match="anonymous.*create a new CONFLUENCE_PAT"):
            confluence.check_page(client, pid, TITLE)
        # A plain read says the same instead of blaming CONFLUENCE_PAGE_ID.
        with make(fake, "datacenter", pat="stale-token") as client, pytest.raises(
                ConfluenceError, match="anonymous.*create a new CONFLUENCE_PAT"):
            confluence.update_todo_table(client, pid, TITLE, [row()], KNOWN)
        assert fake.count("PUT") == 0
        with make(fake, "datacenter") as client, pytest.raises(
                ConfluenceError, match="CONFLUENCE_PAGE_ID"):
            client.get_page("404404")
        fake.fail_next(1, 500, path_contains="/user/current")
        with make(fake, "datacenter", pat="stale-token", retries=0) as client, pytest.raises(
                ConfluenceError, match="CONFLUENCE_PAGE_ID"):
            client.get_page(pid)


def test_dc_basic_auth_and_context_path():
    with FakeConfluence(context="/confluence") as fake:
        pid = fake.add_page("P", "<p/>")
        with make(fake, "datacenter", user=fake.dc_user, api_token=fake.dc_password) as client:
            assert client.base_url.endswith("/confluence")
            assert confluence.update_todo_table(client, pid, TITLE, [row()], KNOWN)["changed"]
        assert fake.body(pid).startswith("<p/><h2>SRE Action Items</h2><table class=\"wrapped\">")

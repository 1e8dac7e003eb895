"""The evidence-source clients against their fakes: answers, paging, auth and permission errors
naming the setting, retries, timeouts, malformed bodies, and tokens kept to their own host."""

from __future__ import annotations

import pytest

import config
from fake_pagerduty import FakePagerDuty
from fake_prometheus import FakePrometheus
from fake_splunk import FakeSplunk
from fake_web import FakeWeb
from sre_maturity.clients import pagerduty, prometheus, splunk
from sre_maturity.clients.sources import flag, mask
from sre_maturity.support.errors import SourceError

FAST = {"timeout": 2.0, "retries": 2, "backoff": 0.0}


def settings_for(tmp_path, values):
    return config.load(data_dir=str(tmp_path), environ=values)


# --------------------------------------------------------------------------- Splunk
@pytest.fixture
def fake_splunk():
    with FakeSplunk() as fake:
        yield fake


@pytest.mark.parametrize("basic", [False, True])
def test_splunk_lists_every_saved_search_once(tmp_path, fake_splunk, basic):
    fake_splunk.add_alert("payment-api errors")
    fake_splunk.add_alert("web latency", disabled=True)
    fake_splunk.add_alert("auth report", scheduled=False)
    fake_splunk.add_alert("noisy", actions="")
    with splunk.client_from_settings(settings_for(tmp_path, fake_splunk.settings(basic=basic)),
                                     **FAST) as client:
        found = client.saved_searches()
    assert [(s.name, s.alerting) for s in found] == [
        ("payment-api errors", True), ("web latency", False), ("auth report", False),
        ("noisy", False)]
    assert found[0].actions == ("email", "pagerduty") and found[0].app == "search"
    assert fake_splunk.count() == 1


def test_splunk_pages_when_the_server_answers_fewer_than_all(fake_splunk):
    fake_splunk.page_cap = 2
    for n in range(5):
        fake_splunk.add_alert(f"alert {n}")
    with splunk.SplunkClient(fake_splunk.url, token=fake_splunk.token, **FAST) as client:
        assert len(client.saved_searches()) == 5
    assert fake_splunk.count() == 3


def test_splunk_export_search_rows_and_errors(fake_splunk):
    fake_splunk.results['search index=web host="a\\"b | delete" | stats count'] = [
        {"count": "3"}]
    with splunk.SplunkClient(fake_splunk.url, token=fake_splunk.token, **FAST) as client:
        assert client.export('index=web host="a\\"b | delete" | stats count') == [
            {"count": "3"}]
        assert client.export("| makeresults count=0") == []
        with pytest.raises(SourceError, match="Unbalanced quotes"):
            client.export('index=web host="a')
    assert fake_splunk.forms[0]["earliest_time"] == "-24h"


def test_splunk_before_9_uses_the_old_export_endpoint(fake_splunk):
    fake_splunk.v2 = False
    with splunk.SplunkClient(fake_splunk.url, token=fake_splunk.token, **FAST) as client:
        client.export("index=web")
        client.export("index=app")
    assert [r[1] for r in fake_splunk.requests] == [
        splunk.EXPORT_V2, splunk.EXPORT_V1, splunk.EXPORT_V1]


def test_splunk_auth_and_permission_errors_name_the_setting(fake_splunk):
    with splunk.SplunkClient(fake_splunk.url, token="wrong-token", **FAST) as client, \
            pytest.raises(SourceError) as info:
        client.saved_searches()
    assert "SPLUNK_TOKEN" in str(info.value) and "wrong-token" not in str(info.value)
    fake_splunk.may_list = False
    with splunk.SplunkClient(fake_splunk.url, token=fake_splunk.token, **FAST) as client, \
            pytest.raises(SourceError, match="HTTP 403.*list_saved_searches.*SPLUNK_TOKEN"):
        client.saved_searches()


def test_splunk_unconfigured_reasons(tmp_path):
    assert splunk.unconfigured(settings_for(tmp_path, {})) == "SPLUNK_URL is not set"
    assert "SPLUNK_TOKEN" in splunk.unconfigured(settings_for(
        tmp_path, {"SPLUNK_URL": "https://s:8089", "SPLUNK_USER": "u"}))
    assert splunk.unconfigured(settings_for(
        tmp_path, {"SPLUNK_URL": "https://s:8089", "SPLUNK_TOKEN": "t"})) is None


# --------------------------------------------------------------------------- faults, shared
@pytest.mark.parametrize("status", [500, 503, 429])
def test_5xx_and_429_are_retried_through_the_shared_policy(fake_splunk, status):
    fake_splunk.add_alert("a")
    fake_splunk.fail_next(status, times=2, headers={"Retry-After": "0"})
    with splunk.SplunkClient(fake_splunk.url, token=fake_splunk.token, **FAST) as client:
        assert len(client.saved_searches()) == 1
    assert fake_splunk.count() == 3


def test_a_lasting_5xx_is_one_line(fake_splunk):
    fake_splunk.fail_next(500, times=10, body={"messages": [{"type": "ERROR",
                                                             "text": "disk\nfull"}]})
    with splunk.SplunkClient(fake_splunk.url, token=fake_splunk.token, **FAST) as client, \
            pytest.raises(SourceError) as info:
        client.saved_searches()
    assert str(info.value) == (f"Splunk at {fake_splunk.url[7:]} answered HTTP 500 to the "
                               "saved searches: disk full; try again later")


def test_a_timeout_says_so(fake_splunk):
    fake_splunk.fail_next(200, times=10, hang=1.5)
    with splunk.SplunkClient(fake_splunk.url, token=fake_splunk.token, timeout=0.3,
                             retries=0) as client, pytest.raises(SourceError,
                                                                 match="did not answer.*0.3 s"):
        client.saved_searches()


@pytest.mark.parametrize("body", ["{not json", '{"entry": 3}'])
def test_a_malformed_body_is_one_line(fake_splunk, body):
    fake_splunk.fail_next(200, body=body)
    with splunk.SplunkClient(fake_splunk.url, token=fake_splunk.token, **FAST) as client, \
            pytest.raises(SourceError, match="SPLUNK_URL"):
        client.saved_searches()


def test_unreachable_source_names_the_url_setting():
    with FakeWeb() as web:
        url = web.url
    with splunk.SplunkClient(url, token="tok-123456", timeout=1, retries=0) as client, \
            pytest.raises(SourceError, match="cannot reach Splunk.*connection refused.*SPLUNK_URL"):
        client.saved_searches()


def test_a_token_never_follows_a_redirect_to_another_host(fake_splunk):
    with FakeWeb() as other:
        fake_splunk.fail_next(302, headers={"Location": other.url + "/steal"}, times=5)
        with splunk.SplunkClient(fake_splunk.url, token=fake_splunk.token, **FAST) as client, \
                pytest.raises(SourceError, match="redirected.*SPLUNK_URL"):
            client.saved_searches()
        assert other.count() == 0 and other.credentials_seen == []


def test_the_token_is_added_only_for_its_own_origin(fake_splunk):
    with FakeWeb() as other, splunk.SplunkClient(fake_splunk.url, token=fake_splunk.token,
                                                 **FAST) as client:
        other.page("/x")
        client.session.get(other.url + "/x", timeout=2)
        client.session.get(fake_splunk.url + splunk.SAVED, timeout=2)
        assert other.credentials_seen == []
        assert fake_splunk.requests[-1][3] == f"Bearer {fake_splunk.token}"
        assert "hidden" in repr(client.session.auth)


def test_explain_lines_mask_secrets(fake_splunk):
    with splunk.SplunkClient(fake_splunk.url, user="u", password="pw-secret", **FAST) as client:
        text = client.describe("POST", "/x", {"a": "pw-secret"}, {"search": "x"})
    assert "pw-secret" not in text and text.endswith("/x?a=<hidden> search=x")
    assert mask("abc abcd", ["abc", "abcd"]) == "<hidden> <hidden>"


@pytest.mark.parametrize(("value", "expected"), [
    (1, True), (0, False), ("1", True), ("0", False), (True, True), ("false", False),
    ("True", True), (None, False), ("maybe", None)])
def test_splunk_booleans_in_every_spelling(value, expected):
    assert flag(value) is expected


# --------------------------------------------------------------------------- Prometheus
def test_prometheus_rules_once_following_group_pages(tmp_path):
    with FakePrometheus(token="prom-token", group_page=1) as fake:
        fake.add_rule("HighErrorRate", {"service": "payment-api", "severity": "page"})
        fake.add_rule("record:x", kind="recording")
        fake.add_rule("Down", {"service": "web"}, health="err", group="other")
        client = prometheus.client_from_settings(settings_for(tmp_path, fake.settings()), **FAST)
        with client:
            rules = client.alert_rules()
        assert [(r.group, r.name, r.health) for r in rules] == [
            ("sre", "HighErrorRate", "ok"), ("other", "Down", "err")]
        assert fake.count(prometheus.RULES) == 2
        assert fake.requests[0][2]["type"] == ["alert"]


def test_prometheus_query_and_its_errors(tmp_path):
    with FakePrometheus() as fake:
        fake.series['up{job="web"}'] = [({"job": "web", "instance": "a"}, 1.0)]
        with prometheus.PrometheusClient(fake.url, **FAST) as client:
            assert client.query('up{job="web"}') == [
                prometheus.Sample({"job": "web", "instance": "a"}, 1.0)]
            assert client.query("up") == []
            with pytest.raises(SourceError, match="bad_data: .*parse error"):
                client.query('up{job="web}')
        assert prometheus.unconfigured(settings_for(tmp_path, {})) == "PROMETHEUS_URL is not set"


def test_prometheus_proxy_token_is_named_when_refused():
    with FakePrometheus(token="right") as fake, prometheus.PrometheusClient(
            fake.url, token="wrong", **FAST) as client, pytest.raises(SourceError) as info:
        client.alert_rules()
    assert "PROMETHEUS_TOKEN" in str(info.value) and "wrong" not in str(info.value)


def test_prometheus_error_envelope_with_200():
    with FakePrometheus() as fake, prometheus.PrometheusClient(fake.url, **FAST) as client:
        fake.fail_next(200, body={"status": "error", "error": "query timed out"})
        with pytest.raises(SourceError, match="query timed out"):
            client.query("up")


# --------------------------------------------------------------------------- PagerDuty
def test_pagerduty_services_paged_and_oncalls_in_batches(tmp_path):
    with FakePagerDuty() as fake:
        policies = [fake.add_service(f"svc-{n:03d}", on_call=1 if n % 3 else None)
                    for n in range(230)]
        fake.add_service("escalated", on_call=2)
        with pagerduty.client_from_settings(settings_for(tmp_path, fake.settings()),
                                            **FAST) as client:
            services = client.services()
            calls = client.oncalls(policies + policies[:5])
        assert len(services) == 231 and services[0].name == "svc-000"
        assert fake.count("/services") == 3
        assert fake.count("/oncalls") == 10 and all(len(b) <= 25 for b in fake.policy_batches)
        assert len(calls) == sum(1 for n in range(230) if n % 3)
        assert {c.level for c in calls} == {1}
        auth = {r[3] for r in fake.requests}
        assert auth == {f"Token token={fake.token}"}


def test_pagerduty_auth_forms_and_permission(tmp_path):
    with FakePagerDuty() as fake:
        with pagerduty.PagerDutyClient(fake.url, "bad", **FAST) as client, \
                pytest.raises(SourceError, match="HTTP 401.*PAGERDUTY_TOKEN"):
            client.services()
        fake.forbidden = True
        with pagerduty.PagerDutyClient(fake.url, fake.token, **FAST) as client, \
                pytest.raises(SourceError, match="HTTP 403: Access Denied"):
            client.services()
    assert pagerduty.unconfigured(settings_for(tmp_path, {})) == "PAGERDUTY_TOKEN is not set"


def test_pagerduty_refuses_to_page_past_its_offset_limit(monkeypatch):
    monkeypatch.setattr(pagerduty, "MAX_OFFSET", 250)
    with FakePagerDuty() as fake:
        for n in range(300):
            fake.add_service(f"s{n}")
        with pagerduty.PagerDutyClient(fake.url, fake.token, **FAST) as client, \
                pytest.raises(SourceError, match="at most 250 of the services"):
            client.services()


def test_pagerduty_walks_the_pages_when_it_gets_no_total():
    with FakePagerDuty() as fake:
        fake.totals = False
        for n in range(250):
            fake.add_service(f"s{n}")
        with pagerduty.PagerDutyClient(fake.url, fake.token, **FAST) as client:
            assert len(client.services()) == 250
        assert [r[2]["offset"] for r in fake.requests] == [["0"], ["100"], ["200"]]


def test_prometheus_stops_when_the_page_token_does_not_move():
    with FakePrometheus() as fake, prometheus.PrometheusClient(fake.url, **FAST) as client:
        fake.add_rule("A")
        stuck = {"status": "success", "data": {"groups": [], "groupNextToken": "7"}}
        fake.fail_next(200, body=stuck, times=5)
        with pytest.raises(SourceError, match="same rules page twice"):
            client.alert_rules()
        assert fake.count() == 2

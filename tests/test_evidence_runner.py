"""The check runner against the fake sources: verdicts, requests that follow sources rather than
assets (counted by the fakes), injection kept quoted, tokens kept to their hosts, untrusted
commands not run, and every way a check can fail to tell."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

import config
from fake_pagerduty import FakePagerDuty
from fake_prometheus import FakePrometheus
from fake_splunk import FakeSplunk
from fake_web import FakeWeb
from sre_maturity.clients import evidence, pagerduty, prometheus, splunk
from sre_maturity.clients.evidence import AssetScope, RunOptions
from sre_maturity.rules.checkspec import CheckRow
from sre_maturity.support import trust
from sre_maturity.support.errors import ConfigError

NOW = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)
FAST = RunOptions(timeout=3, retries=1, backoff=0, command_timeout=5)


def check(name, kind, target, *, level=1, expect="", capability="Alerts", applies=(),
          mode="gate", valid_days=7, question=1):
    return CheckRow(name, capability, level, question, kind, target, expect, valid_days,
                    tuple(applies), mode)


@pytest.fixture
def sources():
    with FakeSplunk() as s, FakePrometheus(token="prom-secret-token") as p, \
            FakePagerDuty() as d, FakeWeb() as w:
        yield s, p, d, w


def settings_of(folder: Path, *fakes, extra=None):
    values: dict[str, str] = {}
    for fake in fakes:
        values.update(fake.settings())
    values.update(extra or {})
    return config.load(data_dir=str(folder), environ=values)


def run(folder, checks, params, assets, settings, *, trusted=False, explain=True, options=FAST):
    scopes = [a if isinstance(a, AssetScope) else AssetScope(a) for a in assets]
    return evidence.run_checks(checks, params, scopes, settings, folder,
                               trust.from_run(trusted), explain, now=NOW, options=options)


def by(verdicts):
    return {(v.asset, v.check): v for v in verdicts}


# --------------------------------------------------------------------------- scale
def test_requests_follow_sources_not_assets(tmp_path, sources):
    s, p, d, w = sources
    assets = [f"svc-{n:02d}" for n in range(60)]
    params = {}
    for n, a in enumerate(assets):
        if n % 4:
            s.add_alert(f"{a} errors")
            p.add_rule("HighErrorRate", {"service": a})
        d.add_service(a, on_call=1 if n % 5 else None)
        params[a] = {"runbook_url": w.page(f"/runbooks/{a}") if n % 2 else w.url + "/missing"}
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "svc-00.md").write_text("x")
    checks = [check("alert", "splunk_alert", "{asset} *"),
              check("rule", "prometheus_rule", "{service={asset}}"),
              check("oncall", "pagerduty_oncall", "{asset}"),
              check("runbook", "http", "{runbook_url}"),
              check("doc", "file", "docs/{asset}.md")]
    verdicts = run(tmp_path, checks, params, assets, settings_of(tmp_path, s, p, d))
    assert len(verdicts) == 300
    assert s.count() == 1 and p.count() == 1
    assert d.count("/services") == 1 and d.count("/oncalls") == 3  # 60 policies, 25 a request
    assert w.count() == 31  # one per distinct URL: 30 runbooks and the shared missing one
    got = by(verdicts)
    assert got[("svc-01", "alert")].verdict == "pass"
    assert got[("svc-04", "alert")].detail == "no saved search matches 'svc-04 *'"
    assert got[("svc-01", "rule")].detail == "alerting rule HighErrorRate (group sre) has health ok"
    assert got[("svc-05", "oncall")].verdict == "fail" and got[("svc-06", "oncall")].verdict \
        == "pass"
    assert got[("svc-01", "runbook")].link == w.url + "/runbooks/svc-01"
    assert got[("svc-02", "runbook")].detail == f"HTTP 404 from {w.url}/missing (expected 2xx)"
    assert got[("svc-00", "doc")].verdict == "pass" and got[("svc-01", "doc")].verdict == "fail"
    assert [v.asset for v in verdicts[:5]] == ["svc-00"] * 5  # assets, then checks, in order


def test_identical_targets_are_fetched_once(tmp_path, sources):
    s, p, *_ = sources
    s.results["search index=web | stats count"] = [{"count": "4"}]
    checks = [check("shared", "splunk_search", "index=web | stats count", expect="count>=3"),
              check("own", "splunk_search", "index=web host={asset}"),
              check("q", "prometheus_query", "up")]
    verdicts = run(tmp_path, checks, {}, ["a", "b", "c"], settings_of(tmp_path, s, p))
    assert s.searches.count("search index=web | stats count") == 1
    assert len(s.searches) == 4 and p.count(prometheus.QUERY) == 1
    got = by(verdicts)
    assert got[("b", "shared")].detail == "count=4 (expected count>=3; 1 result)"
    assert got[("b", "own")].verdict == "fail"


# --------------------------------------------------------------------------- injection
@pytest.mark.parametrize("value", ['web" OR host="*', "web | delete", 'x\\" | sendemail to=a@b'])
def test_an_injected_quote_or_pipe_reaches_splunk_only_quoted(tmp_path, sources, value):
    s, *_ = sources
    checks = [check("errors", "splunk_search", "index=web host={splunk_host} | stats count",
                    expect="results<1")]
    verdicts = run(tmp_path, checks, {"a": {"splunk_host": value}}, ["a"], settings_of(tmp_path, s))
    quoted = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    assert s.searches == [f"search index=web host={quoted} | stats count"]
    assert verdicts[0].verdict == "pass"  # the search ran as one search for that literal host


def test_a_value_that_cannot_be_quoted_is_unconfigured_not_sent(tmp_path, sources):
    s, p, *_ = sources
    checks = [check("errors", "splunk_search", "index=web host={splunk_host}")]
    verdicts = run(tmp_path, checks, {"a": {"splunk_host": "web\n| delete"}}, ["a"],
                   settings_of(tmp_path, s))
    assert verdicts[0].verdict == "unconfigured" and "control character" in verdicts[0].detail
    assert s.count() == 0


def test_an_injected_quote_reaches_prometheus_only_quoted(tmp_path, sources):
    _, p, *_ = sources
    checks = [check("up", "prometheus_query", "up{job={job}} == 1")]
    run(tmp_path, checks, {"a": {"job": 'x"} or vector(1) #'}}, ["a"], settings_of(tmp_path, p))
    assert p.queries == ['up{job="x\\"} or vector(1) #"} == 1']


# --------------------------------------------------------------------------- tokens
def test_tokens_never_reach_another_host(tmp_path, sources):
    s, p, d, w = sources
    s.add_alert("a *")
    d.add_service("a")
    p.add_rule("A", {"service": "a"})
    probe_targets = [w.page("/x"), s.url + "/", p.url + "/", d.url + "/"]
    checks = [check("alert", "splunk_alert", "a *"), check("rule", "prometheus_rule", "A"),
              check("oncall", "pagerduty_oncall", "a")]
    checks += [check(f"probe{n}", "http", url) for n, url in enumerate(probe_targets)]
    verdicts = run(tmp_path, checks, {}, ["a"], settings_of(tmp_path, s, p, d))
    assert {v.check: v.verdict for v in verdicts}["alert"] == "pass"
    assert w.credentials_seen == []
    for fake, own in ((s, f"Bearer {s.token}"), (p, "Bearer prom-secret-token"),
                      (d, f"Token token={d.token}")):
        sent = [r[3] for r in fake.requests]
        assert own in sent and set(sent) == {own, None}  # the probe of its host sent none
    for v in verdicts:
        for secret in (s.token, "prom-secret-token", d.token):
            assert secret not in v.request + v.detail


def test_a_redirect_from_a_source_is_an_error_and_the_token_stays(tmp_path, sources):
    s, _, _, w = sources
    s.fail_next(302, headers={"Location": w.url + "/collect"}, times=3)
    verdicts = run(tmp_path, [check("alert", "splunk_alert", "x")], {}, ["a", "b"],
                   settings_of(tmp_path, s))
    assert {v.verdict for v in verdicts} == {"error"}
    assert "redirected" in verdicts[0].detail and w.count() == 0


# --------------------------------------------------------------------------- could not tell
def test_a_failing_source_errors_its_checks_only(tmp_path, sources):
    s, p, *_ = sources
    p.add_rule("A")
    s.fail_next(401, times=5)
    checks = [check("alert", "splunk_alert", "x"), check("rule", "prometheus_rule", "A")]
    got = {v.check: v for v in run(tmp_path, checks, {}, ["a"], settings_of(tmp_path, s, p))}
    assert got["alert"].verdict == "error" and "SPLUNK_TOKEN" in got["alert"].detail
    assert got["rule"].verdict == "pass"
    assert got["alert"].valid_until is None and got["rule"].valid_until == \
        "2026-12-13T09:30:00+00:00"


@pytest.mark.parametrize(("kind", "missing"), [
    ("splunk_alert", "SPLUNK_URL"), ("prometheus_rule", "PROMETHEUS_URL"),
    ("pagerduty_oncall", "PAGERDUTY_TOKEN")])
def test_a_source_without_settings_leaves_its_checks_unconfigured(tmp_path, kind, missing):
    (v,) = run(tmp_path, [check("c", kind, "x")], {}, ["a"], settings_of(tmp_path))
    assert (v.verdict, v.detail) == ("unconfigured", f"{missing} is not set")


def test_an_invalid_source_setting_is_a_configuration_error(tmp_path):
    settings = settings_of(tmp_path, extra={"SPLUNK_URL": "splunk:8089"})
    with pytest.raises(ConfigError, match="SPLUNK_URL"):
        run(tmp_path, [check("c", "splunk_alert", "x")], {}, ["a"], settings)
    # A check of another source still runs with that setting broken.
    assert run(tmp_path, [check("f", "file", "x")], {}, ["a"], settings)[0].verdict == "fail"


def test_empty_parameters_not_applicable_and_applies_to(tmp_path, sources):
    *_, w = sources
    checks = [check("runbook", "http", "{runbook_url}", capability="Runbooks"),
              check("only-web", "file", "x", applies=("team:Storefront",))]
    assets = [AssetScope("a", ("Payments",), ("Checkout",)),
              AssetScope("b", ("Storefront",), ("Login",), frozenset({"runbooks"}))]
    got = by(run(tmp_path, checks, {"a": {"runbook_url": ""}}, assets, settings_of(tmp_path)))
    assert got[("a", "runbook")].verdict == "unconfigured"
    assert "runbook_url is empty" in got[("a", "runbook")].detail
    assert got[("b", "runbook")].verdict == "not_applicable"
    assert ("a", "only-web") not in got and got[("b", "only-web")].verdict == "fail"


def test_not_applicable_wins_over_an_empty_parameter(tmp_path):
    """A capability marked Not Applicable is not_applicable even where the asset has no
    parameter for the check (it is not a configuration gap to fix)."""
    checks = [check("runbook", "http", "{runbook_url}", capability="Runbooks")]
    assets = [AssetScope("b", ("Storefront",), ("Login",), frozenset({"runbooks"}))]
    (v,) = run(tmp_path, checks, {"b": {"runbook_url": ""}}, assets, settings_of(tmp_path))
    assert v.verdict == "not_applicable" and "Not Applicable for b" in v.detail


def test_a_probe_refused_by_address_is_unconfigured(tmp_path):
    (v,) = run(tmp_path, [check("r", "http", "http://169.254.169.254/latest")], {}, ["a"],
               settings_of(tmp_path))
    assert v.verdict == "unconfigured" and "metadata" in v.detail


# --------------------------------------------------------------------------- commands
def _marker_script(folder: Path) -> str:
    path = folder / "scripts" / "drill.sh"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('#!/bin/sh\necho "$1" >> ran.txt\necho "restored $1"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return "./scripts/drill.sh {asset}"


def test_an_untrusted_command_is_not_run(tmp_path):
    command = _marker_script(tmp_path)
    (tmp_path / ".env").write_text("SRE_TRACKER_TRUST_COMMANDS=1\n")  # cannot grant trust
    (v,) = run(tmp_path, [check("drill", "command", command)], {}, ["a"], settings_of(tmp_path))
    assert v.verdict == "untrusted" and "--trust-commands" in v.detail
    assert v.request == "would run: ./scripts/drill.sh a"
    assert not (tmp_path / "ran.txt").exists()


def test_a_trusted_command_runs_once_per_distinct_command(tmp_path):
    command = _marker_script(tmp_path)
    checks = [check("drill", "command", command), check("drill2", "command", command,
                                                        expect="exit=1")]
    verdicts = run(tmp_path, checks, {}, ["a", "b"], settings_of(tmp_path), trusted=True)
    assert (tmp_path / "ran.txt").read_text() == "a\nb\n"
    got = by(verdicts)
    assert (got[("a", "drill")].verdict, got[("a", "drill")].detail) == \
        ("pass", "exit 0 (expected 0): restored a")
    assert got[("b", "drill2")].verdict == "fail"


def test_a_command_trusted_in_the_store_runs(tmp_path):
    command = _marker_script(tmp_path)
    trust.TrustStore().trust(command, tmp_path)
    (v,) = run(tmp_path, [check("drill", "command", command)], {}, ["a"], settings_of(tmp_path))
    assert v.verdict == "pass"


def test_a_command_that_overruns_is_an_error(tmp_path):
    path = tmp_path / "slow.sh"
    path.write_text("#!/bin/sh\necho started\nsleep 60\n")
    path.chmod(0o755)
    options = FAST._replace(command_timeout=0.3)
    (v,) = run(tmp_path, [check("slow", "command", "./slow.sh")], {}, ["a"],
               settings_of(tmp_path), trusted=True, options=options)
    assert v.verdict == "error" and v.detail.startswith("timed out after 0.3 s")
    assert "started" in v.detail


def test_command_output_in_the_detail_is_masked(tmp_path, sources):
    s, *_ = sources
    path = tmp_path / "leak.sh"
    path.write_text(f"#!/bin/sh\necho {s.token}\nexit 2\n")
    path.chmod(0o755)
    (v,) = run(tmp_path, [check("leak", "command", "./leak.sh")], {}, ["a"],
               settings_of(tmp_path, s), trusted=True)
    assert v.detail == "exit 2 (expected 0): <hidden>"


# --------------------------------------------------------------------------- evidence fields
def test_fingerprint_follows_the_definition_and_the_parameters_used(tmp_path):
    def fp(target, params):
        return run(tmp_path, [check("f", "file", target)], {"a": params}, ["a"],
                   settings_of(tmp_path))[0].fingerprint

    base = fp("docs/{page}.md", {"page": "one", "other": "x"})
    assert fp("docs/{page}.md", {"page": "one", "other": "y"}) == base  # unused column
    assert fp("docs/{page}.md", {"page": "two", "other": "x"}) != base
    assert fp("docs/{page}.txt", {"page": "one", "other": "x"}) != base


def test_explain_off_leaves_the_request_out(tmp_path):
    (v,) = run(tmp_path, [check("f", "file", "x")], {}, ["a"], settings_of(tmp_path),
               explain=False)
    assert v.request == "" and v.checked_at == "2026-12-06T09:30:00+00:00"


def test_search_and_query_expectations(tmp_path, sources):
    s, p, *_ = sources
    s.results["search index=web | stats count"] = [{"count": "n/a"}]
    p.series["rate(x[5m])"] = [({"job": "a"}, 0.25)]
    checks = [check("s1", "splunk_search", "index=web | stats count", expect="count>1"),
              check("s2", "splunk_search", "index=none", expect="count>1"),
              check("q1", "prometheus_query", "rate(x[5m])", expect="value<0.5"),
              check("q2", "prometheus_query", "rate(x[5m])", expect="results==0"),
              check("q3", "prometheus_query", 'up{job="x}')]
    got = {v.check: v for v in run(tmp_path, checks, {}, ["a"], settings_of(tmp_path, s, p))}
    assert (got["s1"].verdict, got["s1"].detail) == (
        "error", "count of the first result is 'n/a', not a number")
    assert got["s2"].detail == "0 results, so no count to compare"
    assert got["q1"].verdict == "pass" and got["q1"].detail.startswith("value=0.25")
    assert got["q2"].verdict == "fail"
    assert got["q3"].verdict == "error" and "parse error" in got["q3"].detail
    assert splunk.EXPORT_V2 in got["s1"].request and prometheus.QUERY in got["q1"].request


def test_pagerduty_and_rule_failures_say_what_was_seen(tmp_path, sources):
    _, p, d, _ = sources
    p.add_rule("Down", {"service": "a"}, health="err")
    d.add_service("a", on_call=2)
    checks = [check("rule", "prometheus_rule", '{service="a"}'),
              check("oncall", "pagerduty_oncall", "{asset}"),
              check("missing", "pagerduty_oncall", "nope")]
    got = {v.check: v for v in run(tmp_path, checks, {}, ["a"], settings_of(tmp_path, p, d))}
    assert got["rule"].detail == "alerting rule Down (group sre) has health err"
    assert got["oncall"].detail.startswith("nobody is on call at level 1 for a")
    assert got["missing"].detail == "no PagerDuty service named 'nope'"
    assert pagerduty.BATCH == 25


# --------------------------------------------------------------------------- check
def test_check_reaches_each_configured_source(ready, run, monkeypatch, sources):
    s, p, d, _ = sources
    s.add_alert("a")
    p.add_rule("A")
    d.add_service("svc")
    for fake in (s, p, d):
        for name, value in fake.settings().items():
            monkeypatch.setenv(name, value)
    code, out, _err = run(ready, "check")
    assert "ok    splunk: credentials accepted, 1 saved search" in out
    assert "ok    prometheus: answers, 1 alerting rule" in out
    assert "ok    pagerduty: key accepted, 1 service" in out
    monkeypatch.setenv("SPLUNK_TOKEN", "wrong-token-123")
    monkeypatch.setenv("PROMETHEUS_URL", "prometheus:9090")
    monkeypatch.delenv("PAGERDUTY_TOKEN")
    code, out, _err = run(ready, "check")
    assert code == 1
    assert ("FAIL  splunk: Splunk rejected the credentials (HTTP 401); check SPLUNK_TOKEN (or "
            "SPLUNK_USER and SPLUNK_PASSWORD)") in out
    assert "FAIL  prometheus: PROMETHEUS_URL is not a valid URL" in out
    assert "skip  pagerduty: not configured (PAGERDUTY_TOKEN is not set)" in out
    assert "wrong-token-123" not in out


def test_check_names_an_invalid_pagerduty_url_as_its_line(ready, run, monkeypatch):
    """PAGERDUTY_URL has a default, so only a token makes it read: an invalid one is the
    pagerduty line's failure, and every other line of check still shows."""
    monkeypatch.setenv("PAGERDUTY_TOKEN", "pd-token-123")
    monkeypatch.setenv("PAGERDUTY_URL", "ftp://pagerduty.example.com")
    code, out, err = run(ready, "check")
    assert code == 1 and err == ""
    assert "FAIL  pagerduty: PAGERDUTY_URL is not a valid URL" in out
    assert "ok    database:" in out and "pd-token-123" not in out


def test_check_is_silent_about_sources_nobody_uses(ready, run):
    code, out, _err = run(ready, "check")
    assert "splunk" not in out and "prometheus" not in out and "pagerduty" not in out


def test_rules_by_name_glob_and_by_selector_without_an_exact_label(tmp_path, sources):
    _, p, *_ = sources
    p.add_rule("PaymentApiDown", {"team": "payments"})
    p.add_rule("PaymentApiLatency", {"team": "payments"}, health="unknown")
    checks = [check("glob", "prometheus_rule", "paymentapi*"),
              check("regex", "prometheus_rule", '{team=~"pay.*"}'),
              check("none", "prometheus_rule", "Web*"),
              check("bad", "prometheus_rule", '{team=~"("}')]
    got = {v.check: v for v in run(tmp_path, checks, {}, ["a"], settings_of(tmp_path, p))}
    assert got["glob"].detail == "alerting rule PaymentApiDown (group sre) has health ok"
    assert got["regex"].verdict == "pass" and got["none"].verdict == "fail"
    assert got["bad"].verdict == "unconfigured" and "bad regular expression" in got["bad"].detail
    assert p.count() == 1


def test_file_checks_say_what_they_looked_for(tmp_path):
    (tmp_path / "drills").mkdir()
    for n in range(5):
        (tmp_path / "drills" / f"{n}.md").write_text("restored: yes" if n == 4 else "no")
    checks = [check("any", "file", "drills/*.md"),
              check("ok", "file", "drills/*.md", expect="contains=^restored: yes$"),
              check("never", "file", "drills/*.md", expect="contains=2027"),
              check("bad", "file", "drills/a**.md")]
    got = {v.check: v for v in run(tmp_path, checks, {}, ["a"], settings_of(tmp_path))}
    assert got["any"].detail == "found drills/0.md, drills/1.md, drills/2.md (+2)"
    assert got["ok"].detail == "drills/4.md contains /^restored: yes$/"
    assert got["never"].detail.endswith("but none contains /2027/")
    assert got["never"].request == "look for drills/*.md in the data folder, for /2027/"
    assert got["bad"].verdict == "unconfigured" and "'**' can only be" in got["bad"].detail


def test_fresh_evidence_answers_and_a_changed_parameter_or_definition_voids_it(tmp_path):
    """The runner's fingerprints are the ones the rules look for: evidence taken now answers,
    until the asset's parameter or the check's definition changes."""
    from sre_maturity.rules import evidence as rules
    from sre_maturity.rules.checkspec import EvidenceRecord

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "pay.md").write_text("x")
    doc = check("doc", "file", "docs/{page}.md", level=1)
    params = {"a": {"page": "pay"}}
    (v,) = run(tmp_path, [doc], params, ["a"], settings_of(tmp_path))
    records = {("a", "doc"): EvidenceRecord("a", "doc", v.verdict, v.detail, "", v.checked_at,
                                            v.valid_until or "", v.fingerprint)}

    def says(check_row, page, when=NOW):
        (s,) = rules.states_for("a", [], [], [check_row], {"page": page}, records, {}, when)
        return s.evidence

    assert says(doc, "pay") == "pass"
    assert says(doc, "other") is None  # the parameter changed
    assert says(check("doc", "file", "docs/{page}.txt"), "pay") is None  # the definition did
    assert says(doc, "pay", datetime(2026, 12, 13, 9, 30, tzinfo=UTC)) is None  # expired
    assert rules.states_for("a", [], [], [check("x", "file", "y", applies=("b",))], {}, records,
                            {}, NOW) == []


def test_a_search_of_raw_events_is_read_only_as_far_as_a_check_needs(tmp_path, sources,
                                                                      monkeypatch):
    s, *_ = sources
    monkeypatch.setattr(splunk, "MAX_ROWS", 5)
    s.results["search index=web"] = [{"_raw": f"event {n}"} for n in range(50)]
    checks = [check("any", "splunk_search", "index=web"),
              check("few", "splunk_search", "index=web", expect="results<3"),
              check("many", "splunk_search", "index=web", expect="results>=40")]
    got = {v.check: v for v in run(tmp_path, checks, {}, ["a"], settings_of(tmp_path, s))}
    assert (got["any"].verdict, got["any"].detail) == (
        "pass", "more than 5 results (expected results>=1)")
    assert got["few"].verdict == "fail"
    assert got["many"].verdict == "error" and "| stats count" in got["many"].detail
    assert len(s.searches) == 1

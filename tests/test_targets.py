"""Check targets: every value reaches SPL, PromQL, URLs and commands as one literal, or is
refused with the reason (SPEC §12)."""

from __future__ import annotations

import shlex
import unicodedata
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from sre_maturity.rules import targets
from sre_maturity.rules.targets import TargetRefused

# Text with the characters that break out of each language, mixed with anything else.
HOSTILE = st.text(alphabet=st.sampled_from('"\\|\n\r\t\'`{}[]()*?=~!,;&#%/ -.$ax') |
                  st.characters(codec="utf-8"), min_size=1).filter(lambda s: s.strip())


def _control(value: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in value)


def read_string(text: str, start: int, escapes: dict[str, str]) -> tuple[str, int]:
    """Read the double-quoted string starting at ``text[start]`` as the language's lexer does:
    (its value, the index just after its closing quote)."""
    assert text[start] == '"'
    out, i = [], start + 1
    while text[i] != '"':
        if text[i] == "\\":
            n = text[i + 1]
            if n == "u":
                out.append(chr(int(text[i + 2:i + 6], 16)))
                i += 6
                continue
            out.append(escapes.get(n, n))
            i += 2
            continue
        assert text[i] not in "\n\r"
        out.append(text[i])
        i += 1
    return "".join(out), i + 1


SPL = "search index=web host={asset} | stats count"
PROMQL = "up{job={asset}} == 1"


@given(HOSTILE)
def test_a_value_reaches_spl_only_as_one_quoted_string(value):
    try:
        text = targets.resolve("splunk_search", SPL, value, {}).text
    except TargetRefused as exc:
        assert _control(value) and "control character" in str(exc)
        return
    prefix, suffix = "search index=web host=", " | stats count"
    assert text.startswith(prefix) and text.endswith(suffix)
    seen, end = read_string(text, len(prefix), {})
    assert seen == value and text[end:] == suffix


@given(HOSTILE)
def test_a_value_reaches_promql_only_as_one_quoted_string(value):
    text = targets.resolve("prometheus_query", PROMQL, value, {}).text
    prefix, suffix = "up{job=", "} == 1"
    seen, end = read_string(text, len(prefix), {"n": "\n", "r": "\r", "t": "\t"})
    assert seen == value and text[end:] == suffix


@given(HOSTILE)
def test_a_regex_matcher_value_matches_only_itself(value):
    text = targets.resolve("prometheus_rule", "{service=~{asset}}", value, {}).text
    (matcher,) = targets.parse_selector(text)
    assert targets.selector_matches([matcher], {"service": value})
    assert not targets.selector_matches([matcher], {"service": value + "x"})


@given(HOSTILE)
def test_a_value_is_one_percent_encoded_url_component(value):
    text = targets.resolve("http", "https://wiki.example.com/runbooks/{asset}?v=1", value,
                           {}).text
    parts = urlsplit(text)
    assert (parts.scheme, parts.hostname, parts.query) == ("https", "wiki.example.com", "v=1")
    component = parts.path.removeprefix("/runbooks/")
    assert "/" not in component and unquote(component, errors="strict") == value


@given(HOSTILE)
def test_a_value_is_one_command_argument(value):
    try:
        resolved = targets.resolve("command", "./check-backup --service {asset} --days 90",
                                   value, {})
    except TargetRefused as exc:
        assert "\0" in value or value.startswith("-"), exc
        return
    assert resolved.argv == ("./check-backup", "--service", value, "--days", "90")
    assert shlex.split(resolved.text) == list(resolved.argv)


@given(HOSTILE)
def test_a_value_in_a_glob_matches_only_itself(value):
    try:
        pattern = targets.resolve("splunk_alert", "{asset} *errors", value, {}).text
    except TargetRefused:
        assert _control(value)
        return
    assert targets.glob_match(pattern, value + " 5xx errors")
    assume("*" not in value)
    assert not targets.glob_match(pattern, "x" + value + " errors")


@given(HOSTILE)
def test_a_file_value_stays_one_name(value):
    try:
        path = targets.resolve("file", "drills/{asset}.md", value, {}).text
    except TargetRefused:
        assert _control(value) or "/" in value or "\\" in value or value.strip() in (".", "..")
        return
    assert path.startswith("drills/") and path.count("/") == 1


def test_parameters_come_from_the_assets_columns_in_any_spelling():
    r = targets.resolve("splunk_search", "index={Splunk_Index} host={asset}", "web",
                        {"Splunk Index": "prod"})
    assert r.text == 'index="prod" host="web"'
    assert r.used == (("splunk_index", "prod"), ("asset", "web"))


def test_other_braces_are_the_targets_own():
    r = targets.resolve("prometheus_query", 'sum(rate(x{job="a"}[5m])) by ({label})', "web", {})
    assert r.text == 'sum(rate(x{job="a"}[5m])) by ({label})' and r.used == ()


@pytest.mark.parametrize(("kind", "target", "params", "reason"), [
    ("http", "{runbook_url}", {"runbook_url": ""}, "parameter runbook_url is empty"),
    ("http", "{runbook_url}", {"runbook_url": "ftp://x/y"}, "is not an http"),
    ("http", "{runbook_url}", {"runbook_url": "https://u:p@x/y"}, "user name or password"),
    ("http", "{runbook_url}", {"runbook_url": "https://x/a b"}, "space"),
    ("http", "https://{host}/health", {"host": "evil.com/x"}, "not a host name"),
    ("http", "http{s}://x/", {"s": "s"}, "scheme"),
    ("splunk_search", 'index=web host="{asset}"', {}, "inside quotes"),
    ("prometheus_query", "up{job='{asset}'}", {}, "inside quotes"),
    ("prometheus_rule", "{a=\"1\", {asset}=\"x\"}", {}, "must be a label value"),
    ("command", "{tool} --check", {"tool": "rm"}, "program to run"),
    ("command", "check 'unbalanced", {}, "cannot split"),
    ("command", "  ", {}, "empty"),
    ("file", "drills/{asset}.md", {}, "one file name"),
    ("file", "/etc/passwd", {}, "leaves the data folder"),
    ("file", "docs/../../x", {}, "leaves the data folder"),
    ("file", "~/.ssh/id_rsa", {}, "leaves the data folder"),
    ("nope", "x", {}, "unknown kind"),
])
def test_refusals_say_why(kind, target, params, reason):
    asset = "../etc" if kind == "file" else "web"
    with pytest.raises(TargetRefused, match=reason):
        targets.resolve(kind, target, asset, params)


def test_whole_url_and_host_placeholders():
    assert targets.resolve("http", "{runbook_url}", "web",
                           {"runbook_url": "https://wiki/x?a=b%20c"}).text == \
        "https://wiki/x?a=b%20c"
    assert targets.resolve("http", "https://{host}:8443/health", "web",
                           {"host": "web-1.internal"}).text == "https://web-1.internal:8443/health"


def test_names_for_pagerduty_are_plain():
    assert targets.resolve("pagerduty_oncall", "{asset} (prod)", 'a "b"', {}).text == \
        'a "b" (prod)'
    with pytest.raises(TargetRefused):
        targets.resolve("pagerduty_oncall", "{asset}", "a\nb", {})


def test_rule_name_globs_and_selectors():
    assert targets.resolve("prometheus_rule", "{asset}*", "a*b", {}).text == "a\\*b*"
    matchers = targets.parse_selector('{severity="page", team!~"db|ops", x!=`raw`}')
    assert matchers[1] == targets.Matcher("team", "!~", "db|ops")
    assert targets.selector_matches(matchers, {"severity": "page", "team": "web"})
    assert not targets.selector_matches(matchers, {"severity": "page", "team": "ops"})
    assert not targets.selector_matches(matchers, {"severity": "page", "x": "raw"})
    assert targets.parse_selector('{a="\\u00e9\\x41\\n"}')[0].value == "éA\n"
    for bad, why in (("severity=page", "written"), ("{}", "empty"), ("{a=b}", "cannot read"),
                     ('{a=~"("}', "bad regular")):
        with pytest.raises(ValueError, match=why):
            targets.parse_selector(bad)
    assert targets.glob_match("Payment \\\\ *", "payment \\ errors")


@given(st.text(alphabet="ab*\\AB", max_size=8), st.text(alphabet="abAB*\\", max_size=8))
def test_every_name_a_glob_matches_starts_with_its_prefix(pattern, name):
    if targets.glob_match(pattern, name):
        assert name.casefold().startswith(targets.glob_prefix(pattern))
    assert targets.glob_prefix("Pay\\*ment *api") == "pay*ment "

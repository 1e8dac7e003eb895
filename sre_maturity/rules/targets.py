"""What a check looks at (SPEC §12): its ``Target`` with the asset's parameters filled in, each
value made one literal of the target's language, and its ``Expect`` parsed.

Pure functions, no I/O. A value that cannot be made safe, an empty parameter, or a target
whose placeholders are written where no literal can go raises :class:`TargetRefused` with the
reason; the check is then *unconfigured* for that asset, never failed.

Placeholders are written bare: ``{asset}`` or ``{<column>}`` naming a column of ``assets.csv``
(:func:`checkspec.param_key`); any other brace is the target's own
(``{service={prometheus_service}}`` is a PromQL selector holding one placeholder). What a row
may say (kinds, ``Expect``, fingerprints) is :mod:`sre_maturity.rules.checkspec`.
"""

from __future__ import annotations

import functools
import re
import shlex
import unicodedata
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import quote, urlsplit

from sre_maturity.rules.checkspec import KINDS, param_key

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")  # as checkspec.placeholders reads them
ASSET = "asset"


class TargetRefused(ValueError):
    """The target cannot be filled in safely for this asset (the reason is the message)."""


class Resolved(NamedTuple):
    """A target filled in for one asset.

    ``text`` is what is looked at (the URL, the search, the glob, the path; for a command the
    argument list joined as a shell would read it); ``argv`` the command's arguments (empty for
    the other kinds); ``used`` the parameters the target used, ``(name, value)`` in order.
    """

    text: str
    argv: tuple[str, ...]
    used: tuple[tuple[str, str], ...]


def resolve(kind: str, target: str, asset: str, params: Mapping[str, str]) -> Resolved:
    """Fill ``target`` in for ``asset`` with its ``params`` (``assets.csv`` columns).

    :raises TargetRefused: an empty parameter, a value that cannot be one literal of the
        kind's language, or a placeholder written where no literal can go
    """
    values = {param_key(k): (v or "") for k, v in params.items()}
    values[ASSET] = asset
    spots = [(m, param_key(m.group(1))) for m in PLACEHOLDER.finditer(target)
             if param_key(m.group(1)) in values]
    used: dict[str, str] = {}
    for m, key in spots:
        value = values[key]
        if not value.strip():
            raise TargetRefused(f"parameter {m.group(1)} is empty for {asset} in assets.csv")
        _check_text(m.group(1), value)
        used[key] = value
    used_items = tuple(used.items())
    if kind == "command":
        argv = _command(target, values)
        return Resolved(shlex.join(argv), argv, used_items)
    quoter = _QUOTERS.get(kind)
    if quoter is None:
        raise TargetRefused(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    if kind == "prometheus_rule" and not is_selector(target):
        quoter = _glob_value
    out: list[str] = []
    last = 0
    for m, key in spots:
        out.append(target[last:m.start()])
        out.append(quoter(target, m, values[key]))
        last = m.end()
    out.append(target[last:])
    text = "".join(out)
    if kind == "file":
        _inside_data_folder(text)
    return Resolved(text, (), used_items)


def _check_text(name: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise TargetRefused(f"parameter {name} is not valid text") from exc


def _control(value: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in value)


# ---------------------------------------------------------------------- quoted languages
def _quoted_spans(text: str, quotes: str) -> list[tuple[int, int]]:
    """``(start, end)`` of every quoted string of ``text`` (``quotes`` open and close one; a
    backslash escapes the next character, except in back-quoted raw strings)."""
    spans = []
    i = 0
    while i < len(text):
        c = text[i]
        if c in quotes:
            j = i + 1
            while j < len(text) and text[j] != c:
                j += 2 if text[j] == "\\" and c != "`" else 1
            spans.append((i, j))
            i = j + 1
        else:
            i += 1
    return spans


def _bare(text: str, m: re.Match[str], quotes: str, language: str) -> None:
    if any(a < m.start() < b for a, b in _quoted_spans(text, quotes)):
        raise TargetRefused(f"placeholder {{{m.group(1)}}} is inside quotes; write it bare "
                            f"(the tool quotes each value as a {language} string)")


def spl_string(value: str) -> str:
    """``value`` as one double-quoted SPL string (``\\`` and ``"`` escaped).

    :raises TargetRefused: a control character (a line break would end the search)
    """
    if _control(value):
        raise TargetRefused("value holds a control character (such as a line break), which an "
                            "SPL string cannot carry")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_GO_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def promql_string(value: str) -> str:
    """``value`` as one double-quoted PromQL string (Go escapes)."""
    return '"' + "".join(_GO_ESCAPES.get(c) or (f"\\u{ord(c):04x}" if _control(c) else c)
                         for c in value) + '"'


_RE2_SPECIAL = set("\\.+*?()|[]{}^$")


def regex_literal(value: str) -> str:
    """``value`` as a regular expression matching exactly it (RE2 and Python agree)."""
    return "".join("\\" + c if c in _RE2_SPECIAL else c for c in value)


def _spl_value(target: str, m: re.Match[str], value: str) -> str:
    _bare(target, m, "\"'", "SPL")
    return spl_string(value)


def _promql_value(target: str, m: re.Match[str], value: str) -> str:
    _bare(target, m, "\"'`", "PromQL")
    if re.search(r"[=!]~\s*$", target[:m.start()]):
        value = regex_literal(value)
    return promql_string(value)


def _selector_value(target: str, m: re.Match[str], value: str) -> str:
    if not re.search(r"(=~|!~|!=|=)\s*$", target[:m.start()]):
        raise TargetRefused(f"placeholder {{{m.group(1)}}} must be a label value in the "
                            "selector, e.g. {service={prometheus_service}}")
    return _promql_value(target, m, value)


# ---------------------------------------------------------------------- globs
def glob_literal(value: str) -> str:
    """``value`` as a glob matching exactly it: ``*`` and ``\\`` escaped with ``\\``."""
    return value.replace("\\", "\\\\").replace("*", "\\*")


def _glob_value(target: str, m: re.Match[str], value: str) -> str:
    if _control(value):
        raise TargetRefused("value holds a control character, which no name can match")
    return glob_literal(value)


@functools.lru_cache(maxsize=4096)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """A name glob (``*`` any run of characters, ``\\x`` the character x, all else itself) as a
    compiled regular expression matching whole names, ignoring case."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "*" else re.escape(c))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def glob_prefix(pattern: str) -> str:
    """The literal start of a name glob (before its first ``*``), in lower case: every name
    it matches starts with it (ignoring case), so candidates can be looked up by prefix."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(pattern[i + 1])
            i += 2
            continue
        if c == "*":
            break
        out.append(c)
        i += 1
    return "".join(out).casefold()


def glob_match(pattern: str, name: str) -> bool:
    """Whether ``name`` matches the glob ``pattern`` (see :func:`glob_regex`)."""
    return glob_regex(pattern).fullmatch(name) is not None


# ---------------------------------------------------------------------- label selectors
_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*'
                      r'("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`)\s*(,|$)', re.S)


def is_selector(target: str) -> bool:
    """Whether a ``prometheus_rule`` target is a label selector (``{label op ...}``) rather
    than a rule-name glob."""
    return re.match(r"\s*\{\s*[A-Za-z_][A-Za-z0-9_]*\s*(=~|!~|!=|=)", target) is not None


class Matcher(NamedTuple):
    """One label matcher of a selector: ``label op value`` (op ``=``, ``!=``, ``=~``, ``!~``)."""

    label: str
    op: str
    value: str


def parse_selector(text: str) -> list[Matcher]:
    """``{a="x", b=~"y.*"}`` as matchers.

    :raises ValueError: not a selector (the reason says where)
    """
    body = text.strip()
    if not (body.startswith("{") and body.endswith("}")):
        raise ValueError("a label selector is written {label=\"value\", ...}")
    body = body[1:-1].strip()
    out = []
    pos = 0
    while pos < len(body):
        m = _MATCHER.match(body, pos)
        if m is None:
            raise ValueError(f"cannot read the label selector at {body[pos:pos + 20]!r}; write "
                             "label=\"value\" pairs separated by commas")
        raw = m.group(3)
        value = raw[1:-1] if raw[0] == "`" else _unquote_go(raw)
        if m.group(2) in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"label {m.group(1)}: bad regular expression ({exc})") from exc
        out.append(Matcher(m.group(1), m.group(2), value))
        pos = m.end()
    if not out:
        raise ValueError("the label selector is empty")
    return out


def _unquote_go(raw: str) -> str:
    body = raw[1:-1]
    simple = {"n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}
    out = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\" or i + 1 >= len(body):
            out.append(c)
            i += 1
            continue
        n = body[i + 1]
        if n in ("u", "x", "U"):
            width = {"x": 2, "u": 4, "U": 8}[n]
            out.append(chr(int(body[i + 2:i + 2 + width], 16)))
            i += 2 + width
            continue
        out.append(simple.get(n, n))
        i += 2
    return "".join(out)


def selector_matches(matchers: list[Matcher], labels: Mapping[str, str]) -> bool:
    """Whether every matcher holds for ``labels`` (a missing label is the empty string, and
    regular expressions match the whole value, as in Prometheus)."""
    for matcher in matchers:
        have = labels.get(matcher.label, "")
        if matcher.op in ("=", "!="):
            ok = have == matcher.value
        else:
            ok = re.fullmatch(matcher.value, have, re.S) is not None
        if ok == (matcher.op in ("!=", "!~")):
            return False
    return True


# ---------------------------------------------------------------------- URLs
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


def _url_value(target: str, m: re.Match[str], value: str) -> str:
    scheme_end = target.find("://")
    if m.start() == 0:
        return _whole_url(value)
    if scheme_end == -1 or m.start() < scheme_end:
        raise TargetRefused(f"placeholder {{{m.group(1)}}} is in the URL's scheme; start the "
                            "target with http(s):// or with a placeholder holding a whole URL")
    authority_end = len(target)
    for sep in "/?#":
        at = target.find(sep, scheme_end + 3)
        if at != -1:
            authority_end = min(authority_end, at)
    if m.start() < authority_end:
        if not _HOST.fullmatch(value):
            raise TargetRefused(f"{value!r} is not a host name (letters, digits, dots and "
                                "dashes)")
        return value
    return quote(value, safe="")


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be probed as it is (None: it can): not http(s), no host, or a user
    name or password in it (http checks send no credentials)."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s) URL"
    if "@" in parts.netloc:
        return "the URL holds a user name or password; http checks send no credentials"
    return None


def _whole_url(value: str) -> str:
    value = value.strip()
    if _control(value) or any(c.isspace() for c in value):
        raise TargetRefused("the URL holds a space or a control character")
    problem = url_problem(value)
    if problem:
        raise TargetRefused(problem)
    # Already-escaped parts stay as they are; anything else a URL cannot carry is escaped.
    return quote(value, safe=":/?#[]@!$&'()*+,;=%~")


# ---------------------------------------------------------------------- plain names, files
def _name_value(target: str, m: re.Match[str], value: str) -> str:
    if _control(value):
        raise TargetRefused("value holds a control character, which no name can hold")
    return value


def _path_value(target: str, m: re.Match[str], value: str) -> str:
    if _control(value) or "/" in value or "\\" in value or value.strip() in (".", ".."):
        raise TargetRefused(f"{value!r} cannot be one file name (it holds a slash, a "
                            "control character, or is . or ..)")
    return re.sub(r"([*?\[])", r"[\1]", value)


def _inside_data_folder(path: str) -> None:
    """Refuse a ``file`` target that leaves the data folder (absolute, ``~`` or ``..``)."""
    if path.startswith(("/", "\\", "~")) or re.match(r"[A-Za-z]:", path) or \
            ".." in re.split(r"[/\\]", path):
        raise TargetRefused(f"{path!r} leaves the data folder; give a path relative to it")


def _command(target: str, values: Mapping[str, str]) -> tuple[str, ...]:
    try:
        words = shlex.split(target, comments=False, posix=True)
    except ValueError as exc:
        raise TargetRefused(f"cannot split the command line ({exc}); check its quotes") from exc
    if not words:
        raise TargetRefused("the command line is empty")
    argv = []
    for index, word in enumerate(words):
        spots = [m for m in PLACEHOLDER.finditer(word) if param_key(m.group(1)) in values]
        if spots and index == 0:
            raise TargetRefused("the program to run cannot come from a placeholder; name it in "
                                "the target")
        out, last = [], 0
        for m in spots:
            value = values[param_key(m.group(1))]
            if "\0" in value:
                raise TargetRefused("value holds a NUL character, which no argument can carry")
            if m.start() == 0 and value.startswith("-"):
                raise TargetRefused(f"{value!r} starts with '-' and would be read as an option")
            out += [word[last:m.start()], value]
            last = m.end()
        out.append(word[last:])
        argv.append("".join(out))
    return tuple(argv)


_QUOTERS = {
    "http": _url_value,
    "splunk_alert": _glob_value,
    "splunk_search": _spl_value,
    "prometheus_rule": _selector_value,
    "prometheus_query": _promql_value,
    "pagerduty_oncall": _name_value,
    "file": _path_value,
}

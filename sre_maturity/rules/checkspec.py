"""What a row of ``checks.csv`` may say (SPEC §12), as pure functions: the kinds, the modes,
the ``Expect`` grammar of each kind, the placeholders of a ``Target`` and a definition's
fingerprint. No I/O: the CSV reader validates with these, the runner evaluates with them.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import NamedTuple

KINDS = ("http", "splunk_alert", "splunk_search", "prometheus_rule", "prometheus_query",
         "pagerduty_oncall", "file", "command")
MODES = ("gate", "advisory")
DEFAULT_VALID_DAYS = 7
# Comparison operators of ``results>=1`` / ``value<0.5`` / ``<field><op><number>``; the
# two-character ones first so ``>=`` is not read as ``>`` followed by ``=1``.
OPERATORS = (">=", "<=", "==", "!=", ">", "<", "=")

# A placeholder is a brace holding a bare name (``{asset}``, ``{runbook_url}``); any other brace
# (``{service="x"}``, ``{1,3}``) is the target's own text.
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_COMPARISON = re.compile(rf"\s*([A-Za-z_][\w.]*)\s*(>=|<=|==|!=|>|<|=)\s*({_NUMBER})\s*")


class Expect(NamedTuple):
    """A parsed ``Expect``: ``subject`` is ``default`` (the kind's own rule), ``status``,
    ``contains``, ``exit``, ``results``, ``value`` or a result field; ``op`` one of
    :data:`OPERATORS` (``=`` for ``status``/``contains``/``exit``); ``value`` the text after it."""

    subject: str
    op: str = "="
    value: str = ""

    def holds(self, number: float) -> bool:
        """True when ``number <op> value`` (the comparisons of numeric expectations)."""
        target = float(self.value)
        return {">=": number >= target, "<=": number <= target, ">": number > target,
                "<": number < target, "!=": number != target}.get(self.op, number == target)


DEFAULT = Expect("default")
# What each kind's blank Expect means, said in the words of its alternatives.
_DEFAULT_WORDS = {
    "http": "a final 2xx status",
    "splunk_alert": "an enabled, scheduled saved search with an alert action",
    "splunk_search": "results>=1",
    "prometheus_rule": "an alerting rule with health ok",
    "prometheus_query": "results>=1",
    "pagerduty_oncall": "someone on call at level 1",
    "file": "the path exists",
    "command": "exit 0",
}
_FORMS = {
    "http": "status=NNN or contains=TEXT",
    "splunk_search": "results<op>N or <field><op>N (op one of >=, <=, ==, !=, >, <)",
    "prometheus_query": "results<op>N or value<op>N (op one of >=, <=, ==, !=, >, <)",
    "file": "contains=REGEX",
    "command": "exit=N (0-255)",
}


def parse_expect(kind: str, text: str) -> Expect:
    """The ``Expect`` of a check of ``kind``; raises ValueError saying what is accepted."""
    text = text.strip()
    if not text:
        return DEFAULT
    if kind not in _FORMS:
        raise ValueError(f"a {kind} check takes no Expect (it passes on "
                         f"{_DEFAULT_WORDS[kind]}); leave it blank")
    bad = ValueError(f"{text!r} is not an Expect of a {kind} check; write {_FORMS[kind]}, "
                     f"or leave it blank for {_DEFAULT_WORDS[kind]}")
    name, eq, rest = text.partition("=")
    name = name.strip().casefold()
    if kind == "http":
        if name == "status" and eq and re.fullmatch(r"\s*[1-5]\d\d\s*", rest):
            return Expect("status", "=", rest.strip())
        if name == "contains" and eq and rest:
            return Expect("contains", "=", rest)
        raise bad
    if kind == "file":
        if name != "contains" or not eq or not rest:
            raise bad
        try:
            re.compile(rest)
        except re.error as exc:
            raise ValueError(f"contains={rest!r}: not a regular expression ({exc})") from None
        return Expect("contains", "=", rest)
    if kind == "command":
        if name == "exit" and eq and re.fullmatch(r"\s*\d{1,3}\s*", rest) and \
                int(rest) <= 255:
            return Expect("exit", "=", str(int(rest)))
        raise bad
    found = _COMPARISON.fullmatch(text)
    if found is None:
        raise bad
    subject, op, number = found.groups()
    if kind == "prometheus_query" and subject.casefold() not in ("results", "value"):
        raise bad
    if subject.casefold() in ("results", "value"):
        subject = subject.casefold()
    return Expect(subject, "==" if op == "=" else op, number)


def default_words(kind: str) -> str:
    """What a blank ``Expect`` of ``kind`` asks for, in words."""
    return _DEFAULT_WORDS[kind]


def param_key(name: str) -> str:
    """A parameter's name as stored and as placeholders match it: ``Runbook URL`` ->
    ``runbook_url``."""
    return re.sub(r"[\s_]+", "_", name.strip().casefold())


def placeholders(target: str) -> list[str]:
    """The placeholder names of ``target`` in order (``{asset}`` included), as written."""
    return _PLACEHOLDER.findall(target)


def fingerprint(capability: str, level: int, question: int, kind: str, target: str,
                expect: str) -> str:
    """A short hash of what a check looks at and what it answers: a change to any of these
    voids the evidence taken before it (Valid Days, Applies To and Mode do not)."""
    text = json.dumps([capability, level, question, kind, target, expect.strip()],
                      ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class CheckRow:
    """One check: which question it answers (``question`` is its 1-based number within the
    level), what it looks at and how long its evidence stays valid. ``applies_to`` holds
    asset names, ``team:<Team>`` and ``flow:<Flow>`` (empty: every asset). ``line`` is where
    it stands in checks.csv."""

    name: str
    capability: str
    level: int
    question: int
    kind: str
    target: str
    expect: str = ""
    valid_days: int = DEFAULT_VALID_DAYS
    applies_to: tuple[str, ...] = ()
    mode: str = "gate"
    line: int = 0

    @property
    def fingerprint(self) -> str:
        """The hash of the definition (what it looks at and what it answers)."""
        return fingerprint(self.capability, self.level, self.question, self.kind,
                           self.target, self.expect)


@dataclass(frozen=True)
class AssetParams:
    """One row of ``assets.csv``: an asset and its parameters (column key -> value, keys as
    :func:`param_key` makes them; an empty value is kept as "")."""

    asset: str
    params: dict[str, str] = field(default_factory=dict)
    line: int = 0


VERDICTS = ("pass", "fail", "error", "unconfigured", "untrusted", "not_applicable")
DEFINITIVE = ("pass", "fail")


class EvidenceRecord(NamedTuple):
    """What is stored for one asset × check: the latest definitive verdict (``verdict`` pass or
    fail, with what was seen, a link, when, until when it answers and the fingerprint of the
    definition and parameters it used; ``verdict`` "" when there was none yet) and the latest
    run when it told nothing (``last_*``: error, unconfigured, untrusted...; "" when the latest
    run was the definitive one)."""

    asset: str
    check: str
    verdict: str = ""
    detail: str = ""
    link: str = ""
    checked_at: str = ""
    valid_until: str = ""
    fingerprint: str = ""
    last_verdict: str = ""
    last_detail: str = ""
    last_checked_at: str = ""


class Override(NamedTuple):
    """A person's answer to one check for one asset, standing in for its evidence until
    ``until`` (ISO date, "" for none) or until cleared (``cleared_at`` set)."""

    asset: str
    check: str
    answer: str  # "yes" | "no"
    reason: str
    by: str
    at: str
    until: str = ""
    cleared_at: str = ""

"""The answer to a question from its checks' evidence and the person's answer (SPEC §12), as
pure functions: no I/O, times passed in.

* A check's evidence is its latest definitive verdict (``pass``/``fail``) while it is within
  its Valid Days and taken with the check's current definition and the asset's current
  parameters (the fingerprint); a later ``error`` or ``untrusted`` run does not erase it.
* An active override of a check for an asset replaces what the check says.
* Among a question's applicable gate-mode checks: any ``fail`` -> no; every one ``pass`` ->
  yes; otherwise the person's answer stands (from the latest assessment's level L: questions
  of levels up to L yes, of level L+1 no, above no).
* Levels stay cumulative (§3); where evidence and the person disagree, the evidence wins and
  the disagreement (conflict) is shown.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

from sre_maturity.rules import targets
from sre_maturity.rules.checkspec import DEFINITIVE, CheckRow, EvidenceRecord, Override

OVERRIDE_DAYS = 90
# Who a check-driven change of a level is by in the history, and its source column there: the
# person's own answer is the latest entry from any other source.
CHECKS_ASSESSOR = "sre-tracker (checks)"
CHECKS_SOURCE = "checks"


class CheckState(NamedTuple):
    """One check of a cell as the rules see it: ``evidence`` is ``pass``/``fail`` when it has
    valid evidence (else None); ``override`` the answer of an active override (else None)."""

    check: str
    level: int
    question: int
    gate: bool
    evidence: str | None
    override: bool | None

    @property
    def says(self) -> bool | None:
        """What the check answers: the override, else its valid evidence, else None."""
        if self.override is not None:
            return self.override
        return None if self.evidence is None else self.evidence == "pass"


class Answer(NamedTuple):
    """The answer to one question: ``value`` (None: unknown), where it came from (``override``,
    ``evidence``, ``person`` or None), whether evidence and the person disagree, and the
    checks that answered no."""

    value: bool | None
    source: str | None
    conflict: bool
    failed: tuple[str, ...]


class Cell(NamedTuple):
    """A cell's level from evidence and the person's answers. ``level`` is None when nothing
    answers level 1; ``answers`` maps ``(level, question)`` to its :class:`Answer`;
    ``rests_on`` the sources the reached level and the first missing one rest on."""

    level: int | None
    answers: dict[tuple[int, int], Answer]
    conflict: bool
    rests_on: frozenset[str]


# ---------------------------------------------------------------------------- times
def _instant(text: str, end_of_day: bool = False) -> datetime:
    """An ISO date or date-time as an aware UTC datetime (a date alone: its start, or with
    ``end_of_day`` its last moment)."""
    if len(text) == 10:
        day = date.fromisoformat(text)
        moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return moment + timedelta(days=1, microseconds=-1) if end_of_day else moment
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def valid_until(checked_at: datetime, valid_days: int) -> datetime:
    """When evidence taken at ``checked_at`` stops answering."""
    return checked_at + timedelta(days=valid_days)


def override_until(at: datetime, until: str | None = None) -> str:
    """An override's expiry: ``until`` when given, else 90 days after it is recorded."""
    return until or (at + timedelta(days=OVERRIDE_DAYS)).date().isoformat()


# ---------------------------------------------------------------------------- fingerprints
def evidence_fingerprint(definition: str, used: Iterable[tuple[str, str]]) -> str:
    """The fingerprint evidence is taken under: the check's definition fingerprint and the
    asset parameters its target used. A change to either voids the evidence."""
    text = json.dumps([definition, sorted(used)], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# ---------------------------------------------------------------------------- one check
def valid_evidence(record: EvidenceRecord | None, fingerprint: str, now: datetime
                   ) -> str | None:
    """``pass``/``fail`` when the stored evidence still answers (definitive, taken under the
    same fingerprint, not expired), else None. A later run that told nothing is kept apart
    (``last_*``), so it never voids the evidence."""
    if record is None or record.verdict not in DEFINITIVE or not record.valid_until:
        return None
    if record.fingerprint != fingerprint or now >= _instant(record.valid_until):
        return None
    return record.verdict


def active(override: Override | None, now: datetime) -> bool:
    """Whether an override holds now (not cleared, not past its expiry day)."""
    if override is None or override.cleared_at:
        return False
    return not override.until or now <= _instant(override.until, end_of_day=True)


def applies(applies_to: Sequence[str], asset: str, teams: Iterable[str],
            flows: Iterable[str]) -> bool:
    """Whether a check's ``Applies To`` takes in the asset: blank = every asset, else any of
    its names, ``team:<Team>`` or ``flow:<Flow>`` (case-insensitive)."""
    if not applies_to:
        return True
    names = {asset.casefold()}
    names |= {f"team:{t.casefold()}" for t in teams}
    names |= {f"flow:{f.casefold()}" for f in flows}
    return any(_norm(entry) in names for entry in applies_to)


def _norm(entry: str) -> str:
    kind, sep, rest = entry.strip().partition(":")
    if sep and kind.strip().casefold() in ("team", "flow"):
        return f"{kind.strip().casefold()}:{rest.strip().casefold()}"
    return entry.strip().casefold()


def current_fingerprint(check: CheckRow, asset: str, params: Mapping[str, str]) -> str:
    """The fingerprint evidence of ``check`` on ``asset`` must carry to answer now: the check's
    definition and the parameters its target uses today (the runner takes evidence under the
    same one)."""
    try:
        used = targets.resolve(check.kind, check.target, asset, params).used
    except targets.TargetRefused:
        used = ()
    return fingerprint_for(check, used)


def fingerprint_for(check: CheckRow, used: Iterable[tuple[str, str]]) -> str:
    """The fingerprint of evidence of ``check`` taken with the parameters ``used`` (those
    its target filled in; none when it was refused)."""
    return evidence_fingerprint(check.fingerprint, used)


def states_for(asset: str, teams: Iterable[str], flows: Iterable[str],
               checks: Iterable[CheckRow], params: Mapping[str, str],
               records: Mapping[tuple[str, str], EvidenceRecord],
               overrides: Mapping[tuple[str, str], Override], now: datetime,
               fingerprints: Mapping[tuple[str, str], str] | None = None
               ) -> list[CheckState]:
    """How each check that applies to ``asset`` stands now, from the stored evidence and
    overrides (keyed by ``(asset, check name)``): what ``cell`` and ``summary`` take.
    ``fingerprints`` holds current fingerprints already known (a run's verdicts carry them),
    so their targets are not filled in again."""
    teams, flows = tuple(teams), tuple(flows)
    known = fingerprints or {}
    return [state(c, records.get((asset, c.name)),
                  known.get((asset, c.name)) or current_fingerprint(c, asset, params),
                  overrides.get((asset, c.name)), now)
            for c in checks if applies(c.applies_to, asset, teams, flows)]


def state(check: CheckRow, record: EvidenceRecord | None, fingerprint: str,
          override: Override | None, now: datetime) -> CheckState:
    """How one applicable check stands for one asset now."""
    says = override.answer.strip().casefold() == "yes" if override and active(override, now) \
        else None
    return CheckState(check.name, check.level, check.question, check.mode != "advisory",
                      valid_evidence(record, fingerprint, now), says)


# ---------------------------------------------------------------------------- questions
def person_answer(level: int | None, question_level: int) -> bool | None:
    """The person's answer to a question of ``question_level`` from the latest assessed
    ``level`` (None: not assessed): yes up to it, no above."""
    if level is None:
        return None
    return question_level <= level


def answer(states: Sequence[CheckState], person: bool | None) -> Answer:
    """The answer to one question from its checks (all of the question's applicable checks;
    advisory ones are left out here) and the person's answer."""
    gate = [s for s in states if s.gate]
    failed = tuple(s.check for s in gate if s.says is False)
    decided: bool | None = None
    if failed:
        decided = False
    elif gate and all(s.says is True for s in gate):
        decided = True
    if decided is None:
        return Answer(person, "person" if person is not None else None, False, failed)
    deciding = [s for s in gate if s.says is decided]
    by_evidence = any(s.override is None for s in deciding)
    conflict = by_evidence and person is not None and person != decided and \
        _evidence_decides(gate, decided)
    return Answer(decided, "evidence" if by_evidence else "override", conflict, failed)


def _evidence_decides(gate: Sequence[CheckState], decided: bool) -> bool:
    """Whether the evidence alone (overrides left out) reaches the same answer: a conflict
    an override has settled is not shown."""
    if not decided:
        return any(s.override is None and s.evidence == "fail" for s in gate)
    return all(s.override is None and s.evidence == "pass" for s in gate)


def cell(questions: Mapping[int, int], states: Iterable[CheckState],
         person_level: int | None) -> Cell:
    """A cell's level: ``questions`` maps each level of the capability to its number of
    questions, ``states`` are its applicable checks, ``person_level`` the latest assessed level
    (None: not assessed)."""
    by_question: dict[tuple[int, int], list[CheckState]] = {}
    for s in states:
        by_question.setdefault((s.level, s.question), []).append(s)
    answers: dict[tuple[int, int], Answer] = {}
    for level in sorted(questions):
        for q in range(1, questions[level] + 1):
            answers[(level, q)] = answer(by_question.get((level, q), []),
                                         person_answer(person_level, level))
    reached: int | None = 0
    rests_on: set[str] = set()
    for level in sorted(questions):
        values = [answers[(level, q)] for q in range(1, questions[level] + 1)]
        rests_on |= {a.source for a in values if a.source and a.value is not None}
        if all(a.value is True for a in values):
            reached = level
            continue
        if level == min(questions) and any(a.value is None for a in values) and \
                not any(a.value is False for a in values):
            reached = None
        break
    return Cell(reached, answers, any(a.conflict for a in answers.values()),
                frozenset(rests_on))


def summary(states: Sequence[CheckState], result: Cell | None = None) -> dict[str, object] | None:
    """The pinned ``evidence`` object of ``status --format json`` for a cell: None when no
    check applies, else counts of its checks by what their evidence says, the overrides, and
    whether evidence and the person disagree."""
    if not states:
        return None
    return {"checks": len(states),
            "pass": sum(1 for s in states if s.evidence == "pass"),
            "fail": sum(1 for s in states if s.evidence == "fail"),
            "unknown": sum(1 for s in states if s.evidence is None),
            "conflict": bool(result and result.conflict),
            "overrides": sum(1 for s in states if s.override is not None)}


# ---------------------------------------------------------------------------- marks
# What a cell's level rests on, as one mark after the level wherever a level shows (status,
# sre_matrix.html): a disagreement first, then an override, then evidence alone.
MARK_CONFLICT, MARK_OVERRIDE, MARK_EVIDENCE = "!", "~", "+"
MARKS = {MARK_CONFLICT: "the checks' evidence disagrees with the person's answer (the "
                        "evidence wins)",
         MARK_OVERRIDE: "a person overrides a check's verdict",
         MARK_EVIDENCE: "the level rests on checks' evidence"}
_MARK_RANK = {"": 0, MARK_EVIDENCE: 1, MARK_OVERRIDE: 2, MARK_CONFLICT: 3}


def mark(states: Sequence[CheckState], result: Cell) -> str:
    """The mark of a cell (``""``: its level rests on the person's answers alone)."""
    if result.conflict:
        return MARK_CONFLICT
    if any(s.override is not None for s in states):
        return MARK_OVERRIDE
    return MARK_EVIDENCE if "evidence" in result.rests_on else ""


def strongest(marks: Iterable[str]) -> str:
    """The mark of a group of cells (a category, a flow): the most telling of theirs."""
    return max(marks, key=_MARK_RANK.__getitem__, default="")


# A gap text quotes what a failed check saw up to this many characters (a command's output may
# be 4 KB; a to-do row or a story's Why wants the gist).
SEEN_SHOWN = 200


def says_no(failed: Iterable[tuple[str, str]]) -> str:
    """The checks that answer a question no, in words for a gap text: ``check pages says no:
    saved search 'web 5xx' is disabled`` (``failed``: ``(check, what it saw)`` pairs; an
    override's words in place of what was seen)."""
    return "; ".join(f"check {name} says no" + (f": {gist(seen)}" if seen.strip() else "")
                     for name, seen in failed)


def gist(seen: str) -> str:
    """What a check saw on one line, cut to :data:`SEEN_SHOWN` characters."""
    seen = " ".join(seen.split())
    return seen if len(seen) <= SEEN_SHOWN else seen[: SEEN_SHOWN - 1].rstrip() + "…"

"""The answer to a question from evidence and the person (SPEC §12), as pure rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sre_maturity.rules import evidence as ev
from sre_maturity.rules.checkspec import CheckRow, EvidenceRecord, Override
from sre_maturity.rules.evidence import Answer, CheckState

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
FP = "fp-1"


def evidence(verdict: str, *, days_ago: float = 1, valid_days: int = 7,
             fp: str = FP) -> EvidenceRecord:
    taken = NOW - timedelta(days=days_ago)
    return EvidenceRecord("a", "c", verdict, "seen", "", taken.isoformat(),
                          ev.valid_until(taken, valid_days).isoformat(), fp)


def st_(name: str, level: int, says: str | None, *, q: int = 1, gate: bool = True,
        override: bool | None = None) -> CheckState:
    return CheckState(name, level, q, gate, says, override)


# --------------------------------------------------------------------------- one check
def test_evidence_answers_while_valid_with_the_same_fingerprint():
    assert ev.valid_evidence(evidence("pass"), FP, NOW) == "pass"
    assert ev.valid_evidence(evidence("fail", days_ago=6.9), FP, NOW) == "fail"


def test_expired_evidence_no_longer_answers():
    assert ev.valid_evidence(evidence("pass", days_ago=7), FP, NOW) is None
    assert ev.valid_evidence(evidence("pass", days_ago=20, valid_days=30), FP, NOW) == "pass"


def test_a_changed_definition_or_parameter_voids_the_evidence():
    old = ev.evidence_fingerprint("def-1", [("runbook_url", "https://wiki/a")])
    assert ev.evidence_fingerprint("def-1", [("runbook_url", "https://wiki/a")]) == old
    assert ev.evidence_fingerprint("def-2", [("runbook_url", "https://wiki/a")]) != old
    assert ev.evidence_fingerprint("def-1", [("runbook_url", "https://wiki/b")]) != old
    assert ev.valid_evidence(evidence("pass", fp=old), "other", NOW) is None


def test_only_definitive_verdicts_are_evidence():
    assert ev.valid_evidence(None, FP, NOW) is None
    assert ev.valid_evidence(evidence("error"), FP, NOW) is None
    assert ev.valid_evidence(EvidenceRecord("a", "c"), FP, NOW) is None  # never told yet


def test_a_later_run_that_could_not_tell_keeps_the_evidence():
    kept = evidence("pass")._replace(last_verdict="error", last_detail="HTTP 503",
                                     last_checked_at=NOW.isoformat())
    assert ev.valid_evidence(kept, FP, NOW) == "pass"


def override(answer: str = "yes", **kw) -> Override:
    return Override("a", "c", answer, "vendor alerting", "jdoe", "2026-12-01", **kw)


def test_overrides_hold_until_their_day_ends_or_they_are_cleared():
    o = override(until="2026-12-06")
    assert ev.active(o, NOW)
    assert not ev.active(o, NOW + timedelta(days=1))
    assert not ev.active(o._replace(cleared_at="2026-12-05"), NOW)
    assert ev.active(o._replace(until=""), NOW) and not ev.active(None, NOW)
    assert ev.override_until(NOW) == "2027-03-06"
    assert ev.override_until(NOW, "2027-01-01") == "2027-01-01"


def test_state_of_a_check():
    check = CheckRow("runbook", "Runbooks", 2, 1, "http", "{runbook_url}", mode="advisory")
    s = ev.state(check, evidence("pass"), FP, override("no"), NOW)
    assert s == CheckState("runbook", 2, 1, False, "pass", False) and s.says is False
    assert ev.state(check, None, FP, None, NOW).says is None
    assert ev.state(check, None, FP, override("Yes"), NOW).says is True
    assert ev.state(check, None, FP, override(until="2026-11-30"), NOW).says is None


@pytest.mark.parametrize(("applies_to", "expected"), [
    ((), True), (("Payment-API",), True), (("web", "team:payments"), True),
    (("flow: checkout",), True), (("team:Identity",), False), (("flow:Login",), False),
    (("Team:PAYMENTS",), True)])
def test_applies_to(applies_to, expected):
    assert ev.applies(applies_to, "payment-api", ["Payments"], ["Checkout"]) is expected


# --------------------------------------------------------------------------- one question
def test_any_fail_is_no_and_names_the_check():
    a = ev.answer([st_("a", 2, "pass"), st_("b", 2, "fail")], True)
    assert a == Answer(False, "evidence", True, ("b",))


def test_all_pass_is_yes():
    assert ev.answer([st_("a", 2, "pass"), st_("b", 2, "pass")], True) == \
        Answer(True, "evidence", False, ())


@pytest.mark.parametrize("person", [True, False, None])
def test_without_valid_evidence_for_every_check_the_person_answers(person):
    a = ev.answer([st_("a", 2, "pass"), st_("b", 2, None)], person)
    assert a.value is person and not a.conflict
    assert a.source == ("person" if person is not None else None)


def test_advisory_checks_are_never_counted():
    assert ev.answer([st_("a", 2, "fail", gate=False)], True) == Answer(True, "person", False, ())
    assert ev.answer([st_("a", 2, "fail", gate=False), st_("b", 2, "pass")], None).value is True


def test_an_override_replaces_the_check_and_settles_the_conflict():
    a = ev.answer([st_("a", 2, "fail", override=True)], True)
    assert a == Answer(True, "override", False, ())
    b = ev.answer([st_("a", 2, "pass", override=False)], True)
    assert b == Answer(False, "override", False, ("a",))


def test_conflict_only_when_the_evidence_alone_disagrees_with_the_person():
    assert ev.answer([st_("a", 2, "pass")], False).conflict
    assert not ev.answer([st_("a", 2, "pass")], True).conflict
    assert not ev.answer([st_("a", 2, "pass")], None).conflict


# --------------------------------------------------------------------------- cells
MODEL = {1: 1, 2: 2, 3: 1, 4: 1, 5: 1}


def test_person_answer_from_the_level():
    assert [ev.person_answer(2, q) for q in (1, 2, 3, 4)] == [True, True, False, False]
    assert ev.person_answer(None, 1) is None and ev.person_answer(0, 1) is False


def test_evidence_raises_a_level_as_far_as_it_proves():
    result = ev.cell(MODEL, [st_("p3", 3, "pass")], 2)
    assert result.level == 3 and result.conflict and result.rests_on == {"person", "evidence"}
    assert result.answers[(3, 1)] == Answer(True, "evidence", True, ())
    assert result.answers[(4, 1)] == Answer(False, "person", False, ())


def test_a_failed_check_lowers_the_level_cumulatively():
    result = ev.cell(MODEL, [st_("f2", 2, "fail", q=2), st_("p4", 4, "pass")], 4)
    assert result.level == 1 and result.conflict
    assert result.answers[(2, 2)].failed == ("f2",)


def test_not_assessed_cell_answered_by_evidence():
    assert ev.cell(MODEL, [st_("p1", 1, "pass")], None).level == 1
    assert ev.cell(MODEL, [st_("f1", 1, "fail")], None).level == 0
    assert ev.cell(MODEL, [], None) == ev.Cell(None, ev.cell(MODEL, [], None).answers, False,
                                               frozenset())
    assert ev.cell(MODEL, [st_("p2", 2, "pass")], None).level is None


def test_a_question_with_two_checks_needs_both():
    states = [st_("a", 2, "pass", q=1), st_("b", 2, "pass", q=2), st_("c", 2, None, q=2)]
    assert ev.cell(MODEL, states, 1).level == 1  # q2 falls back to the person's no
    assert ev.cell(MODEL, states[:2], 1).level == 2


def test_summary_of_a_cell():
    states = [st_("a", 1, "pass"), st_("b", 2, "fail", override=True), st_("c", 3, None)]
    result = ev.cell(MODEL, states, 3)
    assert ev.summary(states, result) == {"checks": 3, "pass": 1, "fail": 1, "unknown": 1,
                                          "conflict": False, "overrides": 1}
    assert ev.summary([]) is None


@given(st.lists(st.tuples(st.integers(1, 5), st.sampled_from(["pass", "fail", None]),
                          st.sampled_from([None, True, False])), max_size=8),
       st.one_of(st.none(), st.integers(0, 5)))
def test_levels_stay_cumulative(checks, person):
    states = [st_(f"c{i}", lv, says, override=o) for i, (lv, says, o) in enumerate(checks)]
    result = ev.cell(MODEL, states, person)
    if result.level is not None:
        for level in range(1, result.level + 1):
            assert all(result.answers[(level, q)].value is True for q in range(1, MODEL[level] + 1))
        if result.level < 5:
            nxt = result.level + 1
            assert any(result.answers[(nxt, q)].value is not True for q in range(1, MODEL[nxt] + 1))
    # Unknown never counts as healthy: a level is only reached through yes answers.
    for s in states:
        if s.says is False and s.gate and result.level is not None:
            assert result.level < s.level

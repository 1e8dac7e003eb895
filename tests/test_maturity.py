"""The SPEC §3 rules, as pure functions."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sre_maturity.rules import maturity as mt
from sre_maturity.support.names import close_matches


def capability(go_live_levels=(1, 2), questions_per_level=None) -> mt.Capability:
    questions_per_level = questions_per_level or {}
    levels = {}
    for lv in range(1, 6):
        n = questions_per_level.get(lv, 1)
        levels[lv] = mt.LevelSpec(
            level=lv, criteria=f"criteria {lv}",
            questions=tuple(f"q{lv}.{i}?" for i in range(1, n + 1)),
            owner="SRE" if lv == 4 else "Asset", priority=mt.derived_priority(lv in go_live_levels),
            go_live=lv in go_live_levels, milestone="Go-Live" if lv in go_live_levels else "",
        )
    return mt.Capability("Alerts", "Alerting", levels)


def assessed(level, failed=""):
    return mt.Cell("api", "Alerts", mt.ASSESSED, level, failed_question=failed)


def test_all_yes_reaches_the_top_level():
    assert mt.level_from_answers(capability(), [True] * 5) == (5, "", 5)


def test_first_level_no_gives_zero_and_names_the_question():
    assert mt.level_from_answers(capability(), [False]) == (0, "q1.1?", 1)


def test_a_level_counts_only_when_all_its_questions_are_yes():
    cap = capability(questions_per_level={2: 2})
    assert mt.level_from_answers(cap, [True, True, False]) == (1, "q2.2?", 3)


def test_answers_ending_too_early_are_refused():
    with pytest.raises(ValueError, match="needs an answer"):
        mt.level_from_answers(capability(), [True, True])


@given(st.lists(st.integers(min_value=1, max_value=3), min_size=5, max_size=5),
       st.lists(st.booleans(), min_size=15, max_size=15))
def test_level_is_highest_fully_answered_yes_level(counts, pool):
    cap = capability(questions_per_level=dict(enumerate(counts, 1)))
    asked = cap.questions()
    answers = pool[: len(asked)]
    if not all(answers):
        answers = answers[: answers.index(False) + 1]
    level, failed, used = mt.level_from_answers(cap, answers)
    yes_by_level = {lv: all(a for (qlv, _q), a in zip(asked, answers, strict=False) if qlv == lv)
                    and sum(1 for (qlv, _q) in asked[: len(answers)] if qlv == lv)
                    == counts[lv - 1] for lv in range(1, 6)}
    expected = 0
    for lv in range(1, 6):
        if not yes_by_level[lv]:
            break
        expected = lv
    assert (level, used, bool(failed)) == (expected, len(answers), not all(answers))


def test_go_live_level_is_highest_required_level():
    assert (capability((1, 2, 3)).go_live_level, capability(()).go_live_level) == (3, 0)


def test_items_cover_missing_levels_up_to_target_or_go_live():
    items = mt.items_for_cell(capability((1, 2, 3)), assessed(1, "q2.1?"), target=2)
    assert [(i.level, i.rag, i.key) for i in items] == [
        (2, mt.RED, "api / Alerts / 2"), (3, mt.RED, "api / Alerts / 3")]


def test_items_carry_the_level_attributes_and_why():
    item = mt.items_for_cell(capability(), assessed(3, "q4.1?"), target=4)[0]
    assert (item.owner, item.priority, item.go_live, item.criteria, item.why) == (
        "SRE", "P3", False, "criteria 4", "Answered no: q4.1? — L4 means: criteria 4")


def test_higher_items_say_the_lower_level_comes_first():
    items = mt.items_for_cell(capability(), assessed(1, "q2.1?"), target=4)
    assert items[-1].why.startswith("Needs L2 first (currently L1)")


def test_not_assessed_and_not_applicable_cells_have_no_items():
    cap = capability()
    na = mt.Cell("api", "Alerts", mt.NOT_APPLICABLE, None, na_reason="batch")
    assert mt.items_for_cell(cap, mt.Cell("api", "Alerts"), 5) == \
        mt.items_for_cell(cap, na, 5) == []


def test_at_or_above_target_no_items():
    assert mt.items_for_cell(capability(), assessed(4), target=3) == []


def test_expired_not_applicable_counts_as_not_assessed():
    na = mt.Cell("api", "Alerts", mt.NOT_APPLICABLE, None, na_reason="x", na_until="2026-01-31")
    assert (mt.effective_cell(na, "2026-02-01").state, mt.effective_cell(na, "2026-01-31").state) \
        == (mt.NOT_ASSESSED, mt.NOT_APPLICABLE)


@pytest.mark.parametrize(("rags", "expected"), [
    ([], mt.GREEN), ([mt.AMBER], mt.AMBER), ([mt.AMBER, mt.RED], mt.RED)])
def test_cell_rag_is_the_worst_open_item(rags, expected):
    assert mt.cell_rag(assessed(2), rags) == expected


def test_cell_rag_is_none_unless_assessed():
    assert mt.cell_rag(mt.Cell("api", "Alerts"), [mt.RED]) is None


def test_rollup_takes_the_weakest_assessed_asset():
    entries = [(assessed(3), mt.GREEN), (assessed(1), mt.RED),
               (mt.Cell("b", "Alerts"), None),
               (mt.Cell("c", "Alerts", mt.NOT_APPLICABLE, None), None)]
    assert mt.rollup(entries) == (1, mt.RED, 1)


def test_rollup_with_nothing_assessed_is_null():
    assert mt.rollup([(mt.Cell("b", "Alerts"), None)]) == (None, None, 1)


def test_asset_in_several_flows_takes_the_highest_target():
    assert (mt.asset_target([2, 4, 3]), mt.asset_target([])) == (4, mt.DEFAULT_TARGET)


def test_merge_level_rows_folds_several_questions():
    spec = mt.merge_level_rows([
        {"level": 2, "criteria": "c", "question": "a?", "owner": "", "priority": "",
         "go_live": 0, "milestone": ""},
        {"level": 2, "criteria": "c", "question": "b?", "owner": "SRE", "priority": "",
         "go_live": 1, "milestone": "M1"},
    ])
    assert (spec.questions, spec.owner, spec.go_live, spec.priority, spec.milestone,
            spec.criteria) == (("a?", "b?"), "SRE", True, "P1", "M1", "c")


# ---------------------------------------------------------------- item lifecycle
def spec(level: int) -> mt.ItemSpec:
    cap = capability()
    return mt.items_for_cell(cap, assessed(level - 1), target=5)[0]


def test_reconcile_opens_new_items():
    s = spec(3)
    changes = mt.reconcile({}, {s.key: s}, {("api", "Alerts"): 2})
    assert [(c.key, c.new_state, c.work_status) for c in changes] == \
        [(s.key, mt.OPEN, mt.NOT_STARTED)]


def test_reconcile_verifies_items_the_level_now_reaches():
    rec = mt.ItemRecord("api / Alerts / 3", mt.DONE, "Completed", "Completed", "9")
    changes = mt.reconcile({rec.key: rec}, {}, {("api", "Alerts"): 3})
    assert [(c.new_state, c.reason) for c in changes] == [(mt.VERIFIED, "verified")]


def test_reconcile_archives_items_no_longer_wanted():
    rec = mt.ItemRecord("api / Alerts / 3")
    changes = mt.reconcile({rec.key: rec}, {}, {("api", "Alerts"): None})
    assert [c.new_state for c in changes] == [mt.ARCHIVED]


def test_reconcile_reopens_verified_item_after_lower_assessment():
    s = spec(3)
    rec = mt.ItemRecord(s.key, mt.VERIFIED, "Accepted", "Accepted", "9")
    changes = mt.reconcile({s.key: rec}, {s.key: s}, {("api", "Alerts"): 2})
    assert [(c.new_state, c.work_status) for c in changes] == [(mt.OPEN, mt.REOPENED)]


def test_reconcile_reopens_done_item_only_when_reassessed():
    s = spec(3)
    rec = mt.ItemRecord(s.key, mt.DONE, "Completed", "Completed", "9")
    later = mt.reconcile({s.key: rec}, {s.key: s}, {("api", "Alerts"): 2})
    now = mt.reconcile({s.key: rec}, {s.key: s}, {("api", "Alerts"): 2},
                       reassessed={("api", "Alerts")})
    assert (later, [c.new_state for c in now]) == ([], [mt.OPEN])


def test_reconcile_respects_scope():
    rec = mt.ItemRecord("api / Alerts / 3")
    assert mt.reconcile({rec.key: rec}, {}, {}, scope={("web", "Alerts")}) == []


@pytest.mark.parametrize(("state", "rally", "expected_state", "expected_status"), [
    (mt.OPEN, "In-Progress", mt.OPEN, "In-Progress"),
    (mt.OPEN, "Completed", mt.DONE, "Completed"),
    (mt.OPEN, "Accepted", mt.DONE, "Accepted"),
    (mt.DONE, "In-Progress", mt.OPEN, "In-Progress"),
    (mt.OPEN, None, mt.OPEN, mt.MISSING_IN_RALLY),
    (mt.VERIFIED, "Accepted", mt.VERIFIED, "Accepted"),
])
def test_story_states_drive_the_work_status(state, rally, expected_state, expected_status):
    rec = mt.apply_story_state(mt.ItemRecord("k", state, "Defined", "Defined", "1"), rally)
    assert (rec.state, rec.work_status) == (expected_state, expected_status)


def test_reopened_item_ignores_an_unchanged_done_story():
    rec = mt.ItemRecord("k", mt.OPEN, mt.REOPENED, "Accepted", "1")
    assert mt.apply_story_state(rec, "Accepted") == rec


def test_key_round_trip():
    assert mt.split_key(mt.item_key("a-b", "Cap x", 4)) == ("a-b", "Cap x", 4)


def test_display_and_colour_of_done_items():
    assert (mt.display_status("Completed", mt.DONE), mt.status_colour("Completed", mt.DONE),
            mt.status_colour(mt.MISSING_IN_RALLY, mt.OPEN)) == (
        "Completed – awaiting re-assessment", "Green", "Red")


def test_close_matches_suggests_similar_names_each_once():
    assert close_matches("paymnt-api", ["payment-api", "web", "auth"]) == ["payment-api"]
    assert close_matches("login", ["Login", "Logout", "web"]) == ["Login", "Logout"]
    assert close_matches("backups", ["Backups", "Rollback", "backup-db"]).count("Backups") == 1


# --- the terminal matrix's numbers agree with the matrix entries ----------------------------
_GRID_CAPS = (("Alerts", "Alerting"), ("Paging", "Alerting"), ("Dashboards", "Monitoring"),
              ("Backups", "Recovery"))
_GRID_ASSETS = ("api", "web", "db", "cache")
_GRID_FLOWS = ("Checkout", "Login", "Search")


@st.composite
def grid_data(draw):
    """A model, assets in flows, recorded cells (some of assets or capabilities no longer
    shown, some Not Applicable marks expired) and open-item counts."""
    caps = draw(st.lists(st.sampled_from(_GRID_CAPS), unique=True))
    model = {name: mt.Capability(name, category, {
        lv: mt.LevelSpec(lv, f"c{lv}", (f"q{lv}?",), go_live=lv <= go_live)
        for lv in range(1, 6)})
        for (name, category), go_live in zip(
            caps, draw(st.lists(st.integers(0, 5), min_size=len(caps), max_size=len(caps))),
            strict=True)}
    names = draw(st.lists(st.sampled_from(_GRID_ASSETS), unique=True))
    assets = {a: SimpleNamespace(flows=draw(st.lists(st.sampled_from(_GRID_FLOWS), max_size=3)),
                                 target=draw(st.integers(1, 5)), team="t")
              for a in names}
    keys = [(a, c) for a in (*names, "gone") for c, _cat in (*caps, ("Retired", "Alerting"))]
    cells, counts = {}, {}
    for key in draw(st.lists(st.sampled_from(keys), unique=True)):
        if draw(st.booleans()):
            cells[key] = (*key, mt.ASSESSED, draw(st.integers(0, 5)), "", "", "me", "2026-11-01",
                          "")
            n = draw(st.integers(0, 3))
            if n:
                counts[key] = (n, draw(st.integers(0, n)))
        else:
            until = draw(st.sampled_from(["", "2026-11-30", "2026-12-01", "2026-12-02"]))
            cells[key] = (*key, mt.NOT_APPLICABLE, None, "why not", until, "me", "2026-11-01",
                          "")
    return model, assets, cells, counts


@given(grid_data())
def test_category_grid_is_what_the_matrix_entries_add_up_to(data):
    model, assets, cells, counts = data
    entries, flows = mt.matrix_view(model, assets, cells, (), "2026-12-01", counts=counts)
    grid, flow_grid = mt.category_grid(
        model, assets, [(c[0], c[1], c[2], c[3], c[5]) for c in cells.values()], "2026-12-01",
        counts)

    expected = {}
    for e in entries:
        target, own_flows, cats = expected.setdefault(e["asset"], (e["target_level"],
                                                                    e["flows"], {}))
        cats.setdefault(e["category"], []).append(e)
    for asset, (target, own_flows, cats) in expected.items():
        assert grid[asset][:2] == (target, own_flows)
        for category, of_category in cats.items():
            done = [e for e in of_category if e["state"] == mt.ASSESSED]
            assert grid[asset][2][category] == (
                len(of_category), len(done),
                sum(e["state"] == mt.NOT_APPLICABLE for e in of_category),
                min((e["level"] for e in done), default=None), mt.worst_rag(e["rag"] for e in done))
    assert list(grid) == list(expected)
    by_flow = {}
    for f in flows:
        by_flow.setdefault(f["flow"], {}).setdefault(f["category"], []).append(f)
    assert flow_grid == {
        flow: {category: (min((f["level"] for f in of if f["level"] is not None), default=None),
                          mt.worst_rag(f["rag"] for f in of),
                          any(f["not_assessed"] for f in of))
               for category, of in cats.items()}
        for flow, cats in by_flow.items()}

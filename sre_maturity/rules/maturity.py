"""The maturity rules of SPEC §3 as pure functions: no I/O, no pandas, no sqlite.

Levels from answers, go-live levels, action items with their RAG, the flow roll-up and the
work-status lifecycle of an item.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, NamedTuple, cast

ASSESSED = "Assessed"
NOT_ASSESSED = "Not Assessed"
NOT_APPLICABLE = "Not Applicable"

RED, AMBER, GREEN = "Red", "Amber", "Green"
_RAG_ORDER = {GREEN: 0, AMBER: 1, RED: 2}

# Item lifecycle states (stored) and work statuses (shown).
OPEN, DONE, VERIFIED, ARCHIVED = "open", "done", "verified", "archived"
NOT_STARTED = "Not Started"
MISSING_IN_RALLY = "Missing in Rally"
REOPENED = "Reopened"
RALLY_STATES = ("Defined", "In-Progress", "Completed", "Accepted")
# Custom states after Accepted (commonly "Released") count as done too.
RALLY_DONE_STATES = frozenset({"Completed", "Accepted", "Released"})

OWNERS = ("Asset", "SRE", "Support")
PRIORITIES = ("P1", "P2", "P3", "P4")
DEFAULT_TARGET = 3
MAX_LEVEL = 5


@dataclass(frozen=True)
class LevelSpec:
    """What one level of a capability asks and what its uplift item carries."""

    level: int
    criteria: str
    questions: tuple[str, ...]
    owner: str = "Asset"
    priority: str = "P3"
    go_live: bool = False
    milestone: str = ""


@dataclass(frozen=True)
class Capability:
    """A capability of the model with its levels 1..5."""

    name: str
    category: str
    levels: Mapping[int, LevelSpec]

    @cached_property
    def go_live_level(self) -> int:
        """The highest level with a question required for go live (0 if none)."""
        return max((lv for lv, spec in self.levels.items() if spec.go_live), default=0)

    @property
    def max_level(self) -> int:
        return max(self.levels, default=0)

    def questions(self) -> list[tuple[int, str]]:
        """Every question in asking order: (level, question)."""
        return [(lv, q) for lv in sorted(self.levels) for q in self.levels[lv].questions]


@dataclass(frozen=True)
class Cell:
    """The recorded state of one asset x capability."""

    asset: str
    capability: str
    state: str = NOT_ASSESSED
    level: int | None = None
    na_reason: str = ""
    na_until: str = ""
    assessed_by: str = ""
    assessed_at: str = ""
    failed_question: str = ""


@dataclass(frozen=True)
class ItemSpec:
    """An action item the rules ask for: one missing level of one asset's capability."""

    key: str
    asset: str
    capability: str
    category: str
    level: int
    criteria: str
    owner: str
    priority: str
    go_live: bool
    milestone: str
    why: str

    @property
    def rag(self) -> str:
        return RED if self.go_live else AMBER

    @property
    def task(self) -> str:
        return task_name(self.capability, self.level)


@dataclass(frozen=True)
class ItemRecord:
    """The stored lifecycle of an item (what the database remembers)."""

    key: str
    state: str = OPEN
    work_status: str = NOT_STARTED
    rally_state: str = ""
    rally_oid: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)


def item_key(asset: str, capability: str, level: int) -> str:
    """The stable key of an item: ``asset / capability / level``."""
    return f"{asset} / {capability} / {level}"


def task_name(capability: str, level: int) -> str:
    return f"{capability} → L{level}"


def derived_priority(go_live: bool) -> str:
    return "P1" if go_live else "P3"


def merge_level_rows(rows: Sequence[Mapping[str, object]]) -> LevelSpec:
    """Fold the question rows of one level into a LevelSpec.

    Rows carry ``level, criteria, question, owner, priority, go_live, milestone``; the level is
    go-live if any question is, its priority the most urgent given, criteria the distinct texts.
    """
    level = int(cast("int | str", rows[0]["level"]))
    criteria: list[str] = []
    for r in rows:
        c = str(r.get("criteria") or "").strip()
        if c and c not in criteria:
            criteria.append(c)
    go_live = any(bool(r.get("go_live")) for r in rows)
    priorities = sorted(str(r["priority"]) for r in rows if r.get("priority"))
    owner = next((str(r["owner"]) for r in rows if r.get("owner")), "Asset")
    milestone = next((str(r["milestone"]) for r in rows if r.get("milestone")), "")
    return LevelSpec(
        level=level,
        criteria="; ".join(criteria),
        questions=tuple(str(r["question"]) for r in rows),
        owner=owner,
        priority=priorities[0] if priorities else derived_priority(go_live),
        go_live=go_live,
        milestone=milestone,
    )


def level_from_answers(
    capability: Capability, answers: Sequence[bool]
) -> tuple[int, str, int]:
    """Level reached given answers to the questions in asking order.

    Returns ``(level, failed_question, used)``: the highest level L such that every question of
    levels 1..L was answered yes, the first question answered no ('' if none), and how many
    answers were consumed (asking stops at the first no).

    Raises ValueError when the answers stop before the first no and before the last question.
    """
    asked = capability.questions()
    reached = 0
    for i, (lv, question) in enumerate(asked):
        if i >= len(answers):
            raise ValueError(
                f"{len(answers)} answers given; {capability.name} needs an answer for every "
                f"question up to the first 'no' (next: L{lv} {question!r})"
            )
        if not answers[i]:
            return reached, question, i + 1
        last_of_level = i + 1 == len(asked) or asked[i + 1][0] != lv
        if last_of_level:
            reached = lv
    return reached, "", len(asked)


def effective_cell(cell: Cell, today: str) -> Cell:
    """The cell as it counts today: an expired Not Applicable mark counts as Not Assessed."""
    if cell.state == NOT_APPLICABLE and not not_applicable_now(cell.state, cell.na_until, today):
        return Cell(asset=cell.asset, capability=cell.capability)
    return cell


def not_applicable_now(state: str, na_until: str, today: str) -> bool:
    """Whether a cell in ``state`` with this expiry is Not Applicable today."""
    return state == NOT_APPLICABLE and not (na_until and na_until < today)


def asset_target(targets: Iterable[int]) -> int:
    """An asset listed in several flows takes the highest Target Level."""
    return max(targets, default=DEFAULT_TARGET)


def gap_reason(capability: Capability, cell: Cell, level: int) -> str:
    """Words saying why an item exists: the question answered no and the missing criteria."""
    spec = capability.levels.get(level)
    criteria = spec.criteria if spec else ""
    current = cell.level or 0
    if level == current + 1:
        if cell.failed_question:
            why = f"Answered no: {cell.failed_question}"
        elif spec and spec.questions:
            why = f"Not yet confirmed: {spec.questions[0]}"
        else:
            why = f"Level {level} not reached"
    else:
        why = f"Needs L{current + 1} first (currently L{current})"
    return why + _criteria_note(level, criteria) if criteria else why


def _criteria_note(level: int, criteria: str) -> str:
    return f" — L{level} means: {criteria}"


def reason_beside_criteria(why: str, level: int, criteria: str) -> str:
    """A gap reason (:func:`gap_reason`) for a place that shows the level's criteria next to
    it already (the to-do table's Description, a story's Criteria line): without the note
    that repeats them."""
    note = _criteria_note(level, criteria)
    return why[: -len(note)] if criteria and why.endswith(note) else why


def items_for_cell(capability: Capability, cell: Cell, target: int) -> list[ItemSpec]:
    """Action items for one assessed cell: levels L+1..max(target, go-live level)."""
    if cell.state != ASSESSED or cell.level is None:
        return []
    top = min(max(target, capability.go_live_level), capability.max_level)
    items = []
    for lv in range(cell.level + 1, top + 1):
        spec = capability.levels.get(lv)
        if spec is None:
            continue
        items.append(
            ItemSpec(
                key=item_key(cell.asset, capability.name, lv),
                asset=cell.asset,
                capability=capability.name,
                category=capability.category,
                level=lv,
                criteria=spec.criteria,
                owner=spec.owner,
                priority=spec.priority,
                go_live=spec.go_live,
                milestone=spec.milestone,
                why=gap_reason(capability, cell, lv),
            )
        )
    return items


def worst_rag(rags: Iterable[str | None]) -> str | None:
    """The worst of several RAG values (None when there is none)."""
    present = [r for r in rags if r]
    return max(present, key=_RAG_ORDER.__getitem__) if present else None


def cell_rag(cell: Cell, open_item_rags: Iterable[str]) -> str | None:
    """A capability's RAG for an asset: Red/Amber if any open item is, else Green.

    None unless the cell is Assessed.
    """
    if cell.state != ASSESSED:
        return None
    return worst_rag(open_item_rags) or GREEN


def rollup(entries: Iterable[tuple[Cell, str | None]]) -> tuple[int | None, str | None, int]:
    """Weakest-link roll-up of a flow's cells for one capability.

    ``entries`` are (cell, rag) of every asset of the flow. Returns (level, rag, not_assessed):
    the lowest level and worst RAG among Assessed cells (None when none is assessed) and how many
    cells are Not Assessed. Not Applicable cells are left out.
    """
    levels: list[int] = []
    rags: list[str | None] = []
    not_assessed = 0
    for cell, rag in entries:
        if cell.state == ASSESSED and cell.level is not None:
            levels.append(cell.level)
            rags.append(rag)
        elif cell.state == NOT_ASSESSED:
            not_assessed += 1
    return (min(levels) if levels else None), worst_rag(rags), not_assessed


def flow_rag_shown(rag: str | None, not_assessed: bool) -> str | None:
    """The RAG a flow's weakest-link cell shows: its worst RAG, except that a cell with a Not
    Assessed asset is never Green (what nobody assessed is not known to be on target)."""
    return None if not_assessed and rag == GREEN else rag


def is_open(state: str) -> bool:
    """Open and done-awaiting-re-assessment items still count as gaps."""
    return state in (OPEN, DONE)


@dataclass(frozen=True)
class ItemChange:
    """A change of one item's stored lifecycle."""

    key: str
    old_state: str | None
    new_state: str
    work_status: str
    reason: str


def reconcile(
    existing: Mapping[str, ItemRecord],
    desired: Mapping[str, ItemSpec],
    levels: Mapping[tuple[str, str], int | None],
    reassessed: frozenset[tuple[str, str]] | set[tuple[str, str]] = frozenset(),
    scope: set[tuple[str, str]] | None = None,
) -> list[ItemChange]:
    """Compare stored items with what the rules ask for; return the changes to make.

    - a desired item not stored opens (``Not Started``);
    - a stored verified/archived item that is desired again reopens;
    - a done item (story completed) reopens when its cell was just re-assessed below its level;
    - a stored open/done item no longer desired is ``verified`` when the cell's assessed level
      reaches it, else ``archived`` (target lowered, Not Applicable, asset or model row gone).

    ``levels`` maps (asset, capability) to the assessed level (None if not assessed);
    ``scope`` limits the comparison to those cells (None: everything).
    """
    changes: list[ItemChange] = []

    def in_scope(asset: str, capability: str) -> bool:
        return scope is None or (asset, capability) in scope

    for key, spec in desired.items():
        if not in_scope(spec.asset, spec.capability):
            continue
        rec = existing.get(key)
        if rec is None:
            changes.append(ItemChange(key, None, OPEN, NOT_STARTED, "opened"))
        elif rec.state in (VERIFIED, ARCHIVED):
            changes.append(ItemChange(key, rec.state, OPEN, _reopened_status(rec), "reopened"))
        elif rec.state == DONE and (spec.asset, spec.capability) in reassessed:
            changes.append(ItemChange(key, DONE, OPEN, _reopened_status(rec), "reopened"))
    for key, rec in existing.items():
        if key in desired or not is_open(rec.state):
            continue
        asset, capability, level = split_key(key)
        if not in_scope(asset, capability):
            continue
        reached = levels.get((asset, capability))
        if reached is not None and reached >= level:
            changes.append(ItemChange(key, rec.state, VERIFIED, rec.work_status, "verified"))
        else:
            changes.append(ItemChange(key, rec.state, ARCHIVED, rec.work_status, "archived"))
    return changes


def _reopened_status(rec: ItemRecord) -> str:
    if not rec.rally_oid:
        return NOT_STARTED
    if rec.rally_state in RALLY_DONE_STATES:
        return REOPENED
    return rec.work_status


def split_key(key: str) -> tuple[str, str, int]:
    """Inverse of :func:`item_key` (asset and capability names may not contain ' / ')."""
    asset, capability, level = key.rsplit(" / ", 2)
    return asset, capability, int(level)


def apply_story_state(rec: ItemRecord, rally_state: str | None) -> ItemRecord:
    """The item after Rally reports its story in ``rally_state`` (None: story gone).

    A story moving into Completed/Accepted marks an open item done (awaiting re-assessment); a
    story moved back out of those reopens it. A story still Completed/Accepted after the item was
    reopened by a lower re-assessment does not mark it done again: the team has to move it.
    """
    if rally_state is None:
        return replace(rec, work_status=MISSING_IN_RALLY)
    if rec.work_status == REOPENED and rally_state == rec.rally_state:
        return rec
    state = rec.state
    if state == OPEN and rally_state in RALLY_DONE_STATES:
        state = DONE
    elif state == DONE and rally_state not in RALLY_DONE_STATES:
        state = OPEN
    return replace(rec, state=state, work_status=rally_state, rally_state=rally_state)


def status_colour(work_status: str, state: str) -> str:
    """Colour of the status lozenge on the page."""
    if state == DONE:
        return "Green"
    return {
        "In-Progress": "Blue",
        "Completed": "Green",
        "Accepted": "Green",
        MISSING_IN_RALLY: "Red",
        REOPENED: "Yellow",
    }.get(work_status, "Grey")


def display_status(work_status: str, state: str) -> str:
    """The Status text shown for an item."""
    if state == DONE:
        return f"{work_status} – awaiting re-assessment"
    return work_status


@dataclass(frozen=True)
class Gate:
    """The go-live gate of a scope (a flow, or one asset): what keeps it closed.

    ``blocking``: the open go-live-required items (open, or done awaiting re-assessment);
    ``unassessed``: (asset, capability, go-live level) of every capability with a go-live level
    that is Not Assessed on an asset of the scope; ``allowed``: how many of those
    ``--allow-unassessed`` left out (they are then not in ``unassessed``).
    """

    blocking: tuple[Mapping[str, Any], ...] = ()
    unassessed: tuple[tuple[str, str, int], ...] = ()
    allowed: int = 0

    @property
    def closed(self) -> bool:
        """Closed while a go-live item is open or a go-live capability is not assessed."""
        return bool(self.blocking or self.unassessed)


def go_live_gate(rows: Iterable[MatrixRow], items: Iterable[Mapping[str, Any]], *,
                 allow_unassessed: bool = False) -> Gate:
    """The go-live gate of the assets whose matrix ``rows`` are given: the one decision that
    ``gate`` and every page showing "ready" or "blocked" make.

    ``rows`` are the scope's :class:`MatrixRow` entries (their ``state`` already today's: a
    Not Applicable mark past its expiry is Not Assessed); ``items`` the scope's items (only
    go-live-required ones that are open or done awaiting re-assessment count). A capability
    whose go-live level is 1 or more and that is Not Assessed closes the gate unless
    ``allow_unassessed``; so does every open go-live item.
    """
    blocking = tuple(it for it in items if it["go_live"] and is_open(str(it["state"])))
    unassessed = tuple(sorted(((r.asset, r.capability, r.go_live_level) for r in rows
                               if r.go_live_level >= 1 and r.state == NOT_ASSESSED),
                              key=lambda u: u[0]))  # by asset, model order within one
    if allow_unassessed:
        return Gate(blocking, (), len(unassessed))
    return Gate(blocking, unassessed, 0)


def flow_gates(rows: Iterable[MatrixRow], items: Iterable[Mapping[str, Any]]
               ) -> dict[str, Gate]:
    """:func:`go_live_gate` of every flow of ``rows`` (an asset in two flows counts in both),
    by flow name; ``items`` carry their ``asset``."""
    rows_of: dict[str, list[MatrixRow]] = {}
    flows_of: dict[str, list[str]] = {}
    for r in rows:
        for flow in r.flows:
            rows_of.setdefault(flow, []).append(r)
        flows_of.setdefault(r.asset, r.flows)
    items_of: dict[str, list[Mapping[str, Any]]] = {flow: [] for flow in rows_of}
    for it in items:
        for flow in flows_of.get(str(it["asset"]), ()):
            items_of[flow].append(it)
    return {flow: go_live_gate(rows_of[flow], items_of[flow]) for flow in sorted(rows_of)}


class MatrixRow(NamedTuple):
    """One asset x capability of the matrix: the fields of a ``status --format json`` entry
    in its order, then ``why`` (the question answered no, which the JSON and CSV leave out:
    it stays last). A tuple costs a fraction of a dict per entry."""

    asset: str
    flows: list[str]
    team: str
    category: str
    capability: str
    state: str
    level: int | None
    target_level: int
    go_live_level: int
    rag: str | None
    open_items: int
    assessed_by: str | None
    assessed_at: str | None
    not_applicable_reason: str | None
    not_applicable_until: str | None
    why: str | None


MATRIX_FIELDS = MatrixRow._fields


def matrix_view(
    model: Mapping[str, Capability],
    assets: Mapping[str, object],
    cells: Mapping[tuple[str, str], Sequence],
    open_items: Iterable[Mapping[str, object]],
    today: str,
    *,
    counts: Mapping[tuple[str, str], tuple[int, int]] | None = None,
) -> tuple[list[dict], list[dict]]:
    """The matrix and the flow roll-up, as the entries of ``status --format json``.

    ``assets`` maps names to objects with ``flows`` (list), ``target`` (int) and ``team``;
    ``cells`` map (asset, capability) to the recorded cell as a tuple of :class:`Cell`'s
    fields in order (plain tuples: a dataclass per cell would cost more than the matrix);
    ``open_items`` are item rows (``asset``, ``capability``, ``go_live``) still open or done,
    or, given ``counts`` instead ((asset, capability) → (open items, of which Red)), ignored.
    Returns (matrix entries, flow entries), each a list of plain dicts.
    """
    if counts is None:
        tally: dict[tuple[str, str], list[int]] = {}
        for it in open_items:
            tallied = tally.setdefault((str(it["asset"]), str(it["capability"])), [0, 0])
            tallied[0] += 1
            tallied[1] += 1 if it["go_live"] else 0
        counts = {k: (v[0], v[1]) for k, v in tally.items()}
    rows, flows = matrix_rows(model, assets, cells, today, counts)
    # Keys written out (MATRIX_FIELDS in order): a dict display is built faster than zip().
    return [{"asset": asset, "flows": flow_names, "team": team, "category": category,
             "capability": capability, "state": state, "level": level, "target_level": target,
             "go_live_level": go_live, "rag": rag, "open_items": n, "assessed_by": by,
             "assessed_at": at, "not_applicable_reason": reason, "not_applicable_until": until,
             "why": why}
            for (asset, flow_names, team, category, capability, state, level, target, go_live,
                 rag, n, by, at, reason, until, why) in rows], flows


def matrix_rows(
    model: Mapping[str, Capability],
    assets: Mapping[str, object],
    cells: Mapping[tuple[str, str], Sequence],
    today: str,
    counts: Mapping[tuple[str, str], tuple[int, int]],
) -> tuple[list[MatrixRow], list[dict]]:
    """As :func:`matrix_view` given ``counts``, the matrix entries as :class:`MatrixRow`
    tuples (a tuple costs a fraction of a dict: the JSON and CSV are written straight from
    them, the pages read their fields by name). The entries of one asset are consecutive and
    share one ``flows`` list."""
    caps = [(cap.name, cap.category, cap.go_live_level) for cap in model.values()]
    matrix: list[MatrixRow] = []
    # (flow, capability) -> [lowest level, worst RAG rank, not assessed]; -1: none yet.
    per_flow: dict[tuple[str, str], list[int]] = {}
    no_items = (0, 0)
    unassessed = (NOT_ASSESSED, None, None, None, None, None, None)
    # Per set of flows, per capability: the accumulators of those flows (assets share sets).
    accs_of: dict[tuple[str, ...], list[list[list[int]]]] = {}
    for asset, info in assets.items():
        flows = sorted(set(info.flows))  # type: ignore[attr-defined]
        team, target = info.team, info.target  # type: ignore[attr-defined]
        accs = accs_of.get(tuple(flows))
        if accs is None:
            accs = accs_of[tuple(flows)] = [
                [per_flow.setdefault((flow, name), [-1, -1, 0]) for flow in flows]
                for name, _category, _go_live in caps]
        for (name, category, go_live_level), acc_of_flows in zip(caps, accs, strict=True):
            cell = cells.get((asset, name))
            if cell is None:
                state, level, by, at, reason, until, why = unassessed
            else:
                _a, _c, state, level, reason, until, by, at, why = cell
                if state == NOT_APPLICABLE and until and until < today:  # expired: unassessed
                    state, level, by, at, reason, until, why = unassessed
                else:
                    by, at, reason, until, why = (by or None, at or None, reason or None,
                                                  until or None, why or None)
            if state == ASSESSED:
                n, red = counts.get((asset, name), no_items)
                rag = RED if red else AMBER if n else GREEN
                if level is not None:
                    rank = _RAG_ORDER[rag]
                    for acc in acc_of_flows:
                        if acc[0] < 0 or level < acc[0]:
                            acc[0] = level
                        if rank > acc[1]:
                            acc[1] = rank
            else:
                n, rag, level = 0, None, None
                if state == NOT_ASSESSED:
                    for acc in acc_of_flows:
                        acc[2] += 1
            matrix.append(MatrixRow(asset, flows, team, category, name, state, level, target,
                                    go_live_level, rag, n, by, at, reason, until, why))
    rag_names = {rank: rag for rag, rank in _RAG_ORDER.items()}
    flow_names = sorted({f for info in assets.values() for f in info.flows})  # type: ignore
    flows_out: list[dict] = []
    for flow in flow_names:
        for name, category, _go_live in caps:
            low, worst, not_assessed = per_flow.get((flow, name), (-1, -1, 0))
            flows_out.append({
                "flow": flow, "category": category, "capability": name,
                "level": low if low >= 0 else None, "rag": rag_names.get(worst),
                "not_assessed": not_assessed,
            })
    return matrix, flows_out


def category_grid(
    model: Mapping[str, Capability],
    assets: Mapping[str, object],
    cells: Iterable[Sequence],
    today: str,
    counts: Mapping[tuple[str, str], tuple[int, int]],
) -> tuple[dict[str, tuple[int, list[str], dict[str, tuple]]],
           dict[str, dict[str, tuple]]]:
    """The terminal matrix's numbers: per asset and category, what :func:`matrix_rows` says
    of its capabilities, without an entry per asset x capability.

    ``cells`` are the recorded cells as ``(asset, capability, state, level, na_until)``, in
    any order (others than ``assets``' and the model's are left out); ``counts`` as for
    :func:`matrix_view`. Returns ``(assets, flows)``: ``{asset: (target, flows, {category:
    (capabilities, assessed, not applicable, lowest level, worst RAG)})}`` in ``assets`` and
    model order (``flows`` sorted), and ``{flow: {category: (lowest level, worst RAG, some
    capability Not Assessed on some asset)}}`` (the weakest link of the flow's assets) by flow
    name; a lowest level and worst RAG are None when no capability counted is assessed.
    """
    if not model:  # no capability: no entry, so no asset and no flow either
        return {}, {}
    category_of = {cap.name: cap.category for cap in model.values()}
    sizes: dict[str, int] = {}
    for name in category_of.values():
        sizes[name] = sizes.get(name, 0) + 1
    # [assessed, not applicable, lowest level, worst RAG rank]; -1: none yet.
    grid = {asset: {category: [0, 0, -1, -1] for category in sizes} for asset in assets}
    no_items = (0, 0)
    for asset, capability, state, level, until in cells:
        of_asset = grid.get(asset)
        in_category = category_of.get(capability)
        if of_asset is None or in_category is None:
            continue
        acc = of_asset[in_category]
        if state == ASSESSED:
            acc[0] += 1
            if level is not None:
                if acc[2] < 0 or level < acc[2]:
                    acc[2] = level
                n, red = counts.get((asset, capability), no_items)
                rank = 2 if red else 1 if n else 0  # _RAG_ORDER of Red, Amber, Green
                if rank > acc[3]:
                    acc[3] = rank
        elif state == NOT_APPLICABLE and not (until and until < today):  # not yet expired
            acc[1] += 1
    rag_names = {rank: rag for rag, rank in _RAG_ORDER.items()}
    per_flow: dict[str, dict[str, list[int]]] = {}
    out: dict[str, tuple[int, list[str], dict[str, tuple]]] = {}
    for asset, info in assets.items():
        of_asset = grid[asset]
        flows = sorted(set(info.flows))  # type: ignore[attr-defined]
        flow_accs = [per_flow.setdefault(flow, {category: [-1, -1, 0] for category in sizes})
                     for flow in flows]
        for category, (assessed, na, low, worst) in of_asset.items():
            if assessed + na < sizes[category]:  # some capability Not Assessed
                for flow_acc in flow_accs:
                    flow_acc[category][2] = 1
            if low < 0:
                continue
            for flow_acc in flow_accs:
                acc = flow_acc[category]
                if acc[0] < 0 or low < acc[0]:
                    acc[0] = low
                if worst > acc[1]:
                    acc[1] = worst
        out[asset] = (info.target, flows, {  # type: ignore[attr-defined]
            category: (sizes[category], assessed, na, low if low >= 0 else None,
                       rag_names.get(worst))
            for category, (assessed, na, low, worst) in of_asset.items()})
    return out, {flow: {category: (low if low >= 0 else None, rag_names.get(worst), bool(na))
                        for category, (low, worst, na) in per_flow[flow].items()}
                 for flow in sorted(per_flow)}

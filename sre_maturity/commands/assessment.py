"""``assess``: the guided assessment, interactive (menus, questions) or from flags.

The rules (levels, items) come from :mod:`maturity`; this module only asks, shows and records.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from database import DB_FILE, MATRIX_FILE, Database
from sre_maturity.rules import maturity as mt
from sre_maturity.rules.views import update_matrix_file
from sre_maturity.store.csvfiles import parse_until
from sre_maturity.support.context import CommandOptions, Context
from sre_maturity.support.errors import EXIT_OK, InputError
from sre_maturity.support.names import resolve
from sre_maturity.support.prompts import Back, Prompter, Quit

HELP = ("answer y (yes), n (no), ? (show the criteria), b (back), na (not applicable), "
        "s (skip this capability), q (quit)")


@dataclass
class Outcome:
    """What an assessment found for one capability."""

    state: str
    level: int | None
    answers: list[dict] = field(default_factory=list)
    failed_question: str = ""
    na_reason: str = ""
    na_until: str = ""
    notes: str = ""


SKIP = Outcome("skipped", None)  # what ask_questions returns when the user types s


def parse_answers(text: str) -> list[bool]:
    """``yes,yes,no`` -> [True, True, False]; names the bad position."""
    out = []
    for i, token in enumerate(text.split(","), 1):
        t = token.strip().casefold()
        if t in ("y", "yes", "true", "1"):
            out.append(True)
        elif t in ("n", "no", "false", "0"):
            out.append(False)
        else:
            raise InputError(f"--answers: {token.strip()!r} (answer {i}) is not yes or no")
    return out


def outcome_from_answers(cap: mt.Capability, answers: list[bool]) -> Outcome:
    try:
        level, failed, used = mt.level_from_answers(cap, answers)
    except ValueError as exc:
        raise InputError(f"--answers: {exc}") from None
    if used < len(answers):
        why = (f"asking stops after {used} (the first 'no')" if failed else
               f"{cap.name} has only {used} questions, all answered yes")
        raise InputError(f"--answers: {len(answers)} answers given but {why}; remove the "
                         "extra ones")
    asked = cap.questions()[:used]
    return Outcome(
        mt.ASSESSED, level,
        answers=[{"level": lv, "question": q, "answer": a}
                 for (lv, q), a in zip(asked, answers, strict=False)],
        failed_question=failed,
    )


def ask_questions(p: Prompter, cap: mt.Capability, today: str,
                  known: Mapping[tuple[int, int], tuple[bool, str]] | None = None
                  ) -> Outcome | None:
    """Ask level by level, stopping at the first level not met. None: the user quit;
    ``SKIP``: the user skipped this capability (with --all, the walk goes on). ``known``:
    answers the checks settle, by (level, question number), with the words shown for them:
    shown, not asked."""
    known = known or {}
    asked = cap.questions()
    numbers = [sum(1 for lv2, _q in asked[:k] if lv2 == lv) + 1
               for k, (lv, _q) in enumerate(asked)]
    answers: list[bool] = []
    by_person: list[int] = []  # where the person answered (b goes back to the last one)
    i = 0
    while i < len(asked):
        lv, question = asked[i]
        settled = known.get((lv, numbers[i]))
        if settled is not None:
            p.write(f"  L{lv} [{i + 1}/{len(asked)}] {question} "
                    f"{'yes' if settled[0] else 'no'} ({settled[1]})")
            answers.append(settled[0])
            if not settled[0]:
                break
            i += 1
            continue
        reply = p.ask(f"  L{lv} [{i + 1}/{len(asked)}] {question} [y/n/?/b/na/s/q] "
                      ).casefold()
        if reply in ("y", "yes"):
            answers.append(True)
            by_person.append(i)
            i += 1
        elif reply in ("n", "no"):
            answers.append(False)
            break
        elif reply == "?":
            p.write(f"    L{lv} means: {cap.levels[lv].criteria}")
        elif reply == "b":
            if not by_person:
                p.write("    this is the first question")
            else:
                i = by_person.pop()
                del answers[i:]
        elif reply == "na":
            return ask_not_applicable(p, today)
        elif reply == "s":
            return SKIP
        elif reply == "q":
            return None
        else:
            p.write(f"    {HELP}")
    outcome = outcome_from_answers(cap, answers)
    for k, entry in enumerate(outcome.answers):
        settled = known.get((asked[k][0], numbers[k]))
        entry["source"] = settled[1] if settled else "person"
    return outcome


def ask_not_applicable(p: Prompter, today: str) -> Outcome:
    reason = ""
    while not reason:
        reason = p.ask("    why is it not applicable? (required) ")
    while True:
        until = p.ask("    until when? (YYYY-MM-DD, empty: no expiry) ")
        try:
            return Outcome(mt.NOT_APPLICABLE, None, na_reason=reason,
                           na_until=parse_until(until, today))
        except InputError as exc:
            p.write(f"    {str(exc).replace('--until ', '')}")


def item_preview(cap: mt.Capability, old: mt.Cell, new: mt.Cell, target: int) -> list[str]:
    """Lines saying which items open and which close with this assessment."""
    before = {s.key: s for s in mt.items_for_cell(cap, old, target)}
    after = {s.key: s for s in mt.items_for_cell(cap, new, target)}
    lines = []
    for key in sorted(set(after) - set(before)):
        s = after[key]
        lines.append(f"  opens  {s.task} ({s.rag}, {s.priority}): {s.criteria}")
    for key in sorted(set(before) - set(after)):
        s = before[key]
        verb = "closes (verified)" if (new.level or 0) >= s.level else "closes"
        lines.append(f"  {verb} {s.task}")
    for key in sorted(set(after) & set(before)):
        lines.append(f"  stays  {after[key].task} ({after[key].rag})")
    return lines


def level_label(cell: mt.Cell) -> str:
    if cell.state == mt.NOT_APPLICABLE:
        return "N/A"
    if cell.state != mt.ASSESSED:
        return "none"
    return str(cell.level)


@dataclass(frozen=True)
class AssessOptions(CommandOptions):
    """What ``assess`` was asked to do (its flags; None where not given)."""

    flow: str | None = None
    asset: str | None = None
    capability: str | None = None
    all: bool = False
    answers: str | None = None
    level: int | None = None
    not_applicable: str | None = None
    until: str | None = None
    notes: str | None = None
    assessor: str | None = None
    yes: bool = False

    @property
    def flag_outcome(self) -> bool:
        """The outcome comes from a flag (no questions asked)."""
        return self.answers is not None or self.level is not None or \
            self.not_applicable is not None


def run(opts: AssessOptions, ctx: Context) -> int:
    """The ``assess`` command."""
    from database import now_iso
    from sre_maturity.git import gitops

    interactive = sys.stdin.isatty()
    flag_outcome = opts.flag_outcome
    if opts.until and opts.not_applicable is None:
        raise InputError("--until goes with --not-applicable REASON")
    if opts.all and flag_outcome:
        raise InputError("--all walks every capability interactively; use it without "
                         "--answers/--level/--not-applicable")
    ctx.require_identity()
    # A prompting session writes to the terminal; a run from flags reports on stdout (-q: not).
    shown = ctx.term if interactive and not flag_outcome else ctx.out
    p = Prompter(write=lambda text: print(text, file=shown, flush=True))
    today = now_iso()[:10]
    assessor = opts.assessor or gitops.user_name(ctx.data_dir)
    saved: list[str] = []
    db = ctx.open_db()
    try:
        model, assets = db.load_model(), db.load_assets()
        try:
            picked_in = None
            while True:  # b at the category menu goes back to the asset menu
                asset, picked_in = _pick_asset(p, opts, assets, interactive, db, len(model),
                                               picked_in)
                try:
                    caps = _pick_capabilities(p, opts, model, db, asset, interactive)
                    break
                except Back:
                    continue
            for cap in caps:
                line = _assess_one(p, ctx, db, opts, cap, asset, assets[asset].target,
                                   interactive, flag_outcome, today, assessor)
                if line:
                    saved.append(line)
        except Quit:
            p.write("quit: nothing more written")
    finally:
        db.close()
        # Confirmed capabilities stay saved (and committed) even if a later prompt is
        # interrupted.
        if saved:
            flows = "/".join([assets[asset].flow_label]) if assets else ""
            who = f"({assessor})"
            if len(saved) == 1:
                message = f"assess: {flows}/{asset} {saved[0]} {who}"
            else:
                message = f"assess: {flows}/{asset} {len(saved)} capabilities {who}\n\n" + \
                    "\n".join(saved)
            with ctx.writing():
                ctx.commit([DB_FILE, MATRIX_FILE], message)
    return EXIT_OK


def _changed_meanwhile(db: Database, asset: str, capability: str,
                       recorded: mt.Cell | None) -> str:
    """Why the cell may not be saved now (empty: it may): it was assessed since the questions
    began, or its asset or capability left the CSVs."""
    now = db.load_cells({(asset, capability)}).get((asset, capability))
    if now != recorded and now is not None:
        return (f"{asset} / {capability} was assessed meanwhile by {now.assessed_by or '?'} "
                f"at {now.assessed_at} (now {level_label(now)})")
    if asset not in db.load_assets():
        return f"asset {asset} was archived meanwhile (it left flows.csv)"
    if capability not in db.load_model():
        return f"capability {capability} was archived meanwhile (it left maturity_model.csv)"
    return ""


def _pick_asset(p: Prompter, opts: AssessOptions, assets, interactive: bool,
                db: Database, capabilities: int, at_flow: str | None = None
                ) -> tuple[str, str | None]:
    """The asset to assess and the flow it was picked in (None when --asset named it);
    ``at_flow``: open the menus at that flow's asset menu (coming back from the category
    menu)."""
    flows = sorted({f for info in assets.values() for f in info.flows})
    flow = opts.flow
    if flow is not None:  # names match case-insensitively, as everywhere (names.py)
        flow = resolve("flow", flow, flows, "see flows.csv")
    if opts.asset:
        asset = resolve("asset", opts.asset, assets, "see flows.csv")
        if flow and flow not in assets[asset].flows:
            raise InputError(f"asset {asset!r} is not in flow {flow!r} (it is in "
                             f"{assets[asset].flow_label})")
        return asset, None
    if not interactive:
        raise InputError("--asset is required when stdin is not a terminal")
    chosen = flow
    levels = _levels_by_asset(db)
    if at_flow is not None:
        flow = at_flow
    while True:
        if chosen is None and at_flow is None:
            flow = str(p.choose("Flow:", [
                (f"{f}  ({_levels_label(_merge(levels, assets, f), capabilities, per=True)})",
                 f) for f in flows]))
        names = [a for a, info in assets.items() if flow in info.flows]
        options = [(f"{a}  ({_levels_label(levels.get(a, []), capabilities)})", a)
                   for a in names]
        at_flow = None
        try:  # b at the asset menu goes back to the flow menu (unless --flow fixed it)
            return str(p.choose(f"Asset in {flow}:", options, back=chosen is None)), flow
        except Back:
            continue


def _levels_by_asset(db: Database) -> dict[str, list[int]]:
    """The assessed levels of every asset (for the menus' "where it stands" labels)."""
    out: dict[str, list[int]] = {}
    for (asset, _cap), cell in db.load_cells().items():
        if cell.state == mt.ASSESSED and cell.level is not None:
            out.setdefault(asset, []).append(cell.level)
    return out


def _merge(levels: dict[str, list[int]], assets, flow: str) -> list[int]:
    return [lv for a, info in assets.items() if flow in info.flows for lv in levels.get(a, [])]


def _category_levels(model, cells, asset: str, category: str) -> list[int]:
    found = (cells.get((asset, cap.name)) for cap in model.values() if cap.category == category)
    return [c.level for c in found
            if c is not None and c.state == mt.ASSESSED and c.level is not None]


def _levels_label(levels: list[int], total: int, *, per: bool = False) -> str:
    """``lowest L1, 3/5 assessed`` (``per``: a flow's count of assessed cells, no total)."""
    count = f"{len(levels)} assessed" if per else f"{len(levels)}/{total} assessed"
    return f"lowest L{min(levels)}, {count}" if levels else "none assessed"


def _pick_capabilities(p: Prompter, opts: AssessOptions, model, db, asset: str,
                       interactive: bool) -> list[mt.Capability]:
    if opts.all:
        if not interactive:
            raise InputError("--all asks questions; it needs a terminal")
        return list(model.values())
    if opts.capability:
        return [model[resolve("capability", opts.capability, model, "see maturity_model.csv")]]
    if not interactive:
        raise InputError("--capability is required when stdin is not a terminal")
    categories = list(dict.fromkeys(c.category for c in model.values()))
    cells = db.load_cells()
    while True:
        sizes = Counter(cap.category for cap in model.values())
        # b goes back to the asset menu when the asset came from it (raises Back).
        category = p.choose("Category:", [
            (f"{c}  ({_levels_label(_category_levels(model, cells, asset, c), sizes[c])})", c)
            for c in categories], back=opts.asset is None)
        options = []
        for cap in model.values():
            if cap.category != category:
                continue
            cell = cells.get((asset, cap.name)) or mt.Cell(asset, cap.name)
            when = f", {cell.assessed_at[:10]}" if cell.assessed_at else ""
            options.append((f"{cap.name}  (now: {level_label(cell)}{when})", cap.name))
        try:  # b at the capability menu goes back to the category menu
            return [model[str(p.choose(f"Capability in {category}:", options, back=True))]]
        except Back:
            continue


def _assess_one(p: Prompter, ctx: Context, db: Database, opts: AssessOptions,
                cap: mt.Capability, asset: str, target: int, interactive: bool,
                flag_outcome: bool, today: str, assessor: str) -> str | None:
    """Assess one capability; save it when confirmed. Returns the commit-message part."""
    from database import now_iso

    checked = None
    recorded = db.load_cells({(asset, cap.name)}).get((asset, cap.name))
    old = mt.effective_cell(recorded or mt.Cell(asset, cap.name), today)
    if flag_outcome:
        if opts.not_applicable is not None:
            if not opts.not_applicable.strip():
                raise InputError("--not-applicable needs a reason")
            outcome = Outcome(mt.NOT_APPLICABLE, None, na_reason=opts.not_applicable.strip(),
                              na_until=parse_until(opts.until, today))
        elif opts.level is not None:
            if not 0 <= opts.level <= cap.max_level:
                raise InputError(f"--level {opts.level} is out of range; {cap.name} has levels "
                                 f"0-{cap.max_level}")
            outcome = Outcome(mt.ASSESSED, opts.level)
        else:
            outcome = outcome_from_answers(cap, parse_answers(opts.answers or ""))
        outcome.notes = opts.notes or ""
    else:
        if not interactive:
            raise InputError("--answers, --level or --not-applicable is required when stdin "
                             "is not a terminal")
        p.write(f"\n{cap.category} / {cap.name} for {asset} (now: {level_label(old)}; "
                f"target {target}, go-live L{cap.go_live_level})")
        from sre_maturity.commands import cellchecks

        checked = cellchecks.run_cell(p, ctx, db, asset, cap, assessor)
        asked = ask_questions(p, cap, today, checked.known if checked else None)
        if asked is None:
            raise Quit
        if asked is SKIP:
            p.write("  skipped: nothing saved for this capability")
            return None
        outcome = asked
        if checked is not None and outcome.state == mt.ASSESSED:
            # The level the rules give from the evidence and these answers (as --auto does).
            outcome.level = checked.level(cap, outcome.level, db, asset)
        outcome.notes = opts.notes if opts.notes is not None else p.ask(
            "  notes / evidence (optional): ")

    shown = outcome.level
    if flag_outcome and outcome.state == mt.ASSESSED:
        # A level from flags is the person's answer; where the cell's valid evidence says
        # otherwise the evidence wins (SPEC §12), by the rule assess --auto uses.
        from sre_maturity.commands import cellchecks

        by_evidence = cellchecks.CellRun([], [], {}).level(cap, outcome.level, db, asset)
        shown = outcome.level if by_evidence is None else by_evidence
    new = mt.Cell(asset, cap.name, outcome.state, shown, outcome.na_reason,
                  outcome.na_until, failed_question=outcome.failed_question)
    summary = f"{cap.name} {level_label(old)}→{level_label(new)}"
    p.write(f"{asset} / {summary}" + (f" (answered no: {outcome.failed_question})"
                                      if outcome.failed_question else ""))
    if shown != outcome.level:
        p.write(f"  the checks' evidence sets {cap.name} to L{shown} (the answer given: "
                f"L{outcome.level}; it is kept in the history)")
    for line in item_preview(cap, old, new, target):
        p.write(line)
    needs_confirm = not flag_outcome and not opts.yes
    if needs_confirm and not p.confirm("save this assessment?"):
        p.write("not saved")
        return None
    # The folder's lock is taken now, to save, not while the questions waited: another
    # command may have written meanwhile (a teammate's pull, a cron sync), so the database is
    # opened again and the cell checked to be as it was when the questions began.
    # (A run from flags holds the lock from its start: nothing can have changed.)
    reopen = ctx.lock is None
    with ctx.writing():
        wdb = ctx.open_db() if reopen else db
        try:
            problem = _changed_meanwhile(wdb, asset, cap.name, recorded) if reopen else ""
            if problem:
                p.write(f"  not saved: {problem}; assess it again to answer from there")
                return None
            with wdb.transaction():
                if checked is not None:
                    wdb.record_evidence(checked.verdicts)
                    for override in checked.overrides:
                        wdb.set_override(override)
                changes = wdb.record_assessment(
                    asset, cap.name, outcome.state, outcome.level, answers=outcome.answers,
                    failed_question=outcome.failed_question, notes=outcome.notes,
                    na_reason=outcome.na_reason, na_until=outcome.na_until,
                    assessed_by=assessor, assessed_at=now_iso(),
                )
                if shown != outcome.level:
                    # The person's answer first, then the checks' entry the evidence makes.
                    _evidence_moves(wdb, cap, asset)
            update_matrix_file(ctx, wdb, {(asset, cap.name)})
        finally:
            if reopen:
                wdb.close()
    p.write("saved")
    for ch in changes or []:
        if ch.reason == "reopened" and ch.work_status == mt.REOPENED:
            p.write(f"  reopened {mt.task_name(*mt.split_key(ch.key)[1:])}: its Rally story is "
                    "done; the next report --push moves it back to Defined")
    return summary


def _evidence_moves(db: Database, cap: mt.Capability, asset: str) -> None:
    """Record, after a person's answer from flags, the level the cell's valid evidence gives
    (the one rule ``assess --auto`` and the interactive assess use)."""
    from sre_maturity.commands import autoassess

    autoassess.record_moves(db, autoassess.plan_moves(db, {cap.name: cap}, (),
                                                      cells={(asset, cap.name)}))
